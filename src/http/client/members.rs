//! Member lists, forgetting rooms, knocking, and reports.

use crate::error::{Error, Result};
use crate::federation;
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::rooms::members::{self, MemberFilter};
use crate::rooms::reports;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::client::knock::knock_room;
use ruma::api::client::membership::{forget_room, get_member_events};
use ruma::api::client::reporting::report_user;
use ruma::api::client::room::{report_content, report_room};
use ruma::serde::Raw;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma_guest::<get_member_events::v3::Request, _, _>(member_list)
        .ruma::<forget_room::v3::Request, _, _>(forget)
        .ruma::<knock_room::v3::Request, _, _>(knock)
        .ruma::<report_content::v3::Request, _, _>(report_event)
        .ruma::<report_room::v3::Request, _, _>(report_a_room)
        .ruma::<report_user::v3::Request, _, _>(report_a_user)
}

/// `GET /_matrix/client/*/rooms/{roomId}/members`: get membership events for a room.
async fn member_list(
    State(state): State<AppState>,
    request: Authed<get_member_events::v3::Request>,
) -> Result<RumaResponse<get_member_events::v3::Response>> {
    let body = &request.body;
    let membership = body.membership.as_ref().map(|m| m.as_str().to_owned());
    let not_membership = body.not_membership.as_ref().map(|m| m.as_str().to_owned());
    let filter = MemberFilter {
        at: body.at.as_deref(),
        membership: membership.as_deref(),
        not_membership: not_membership.as_deref(),
    };
    // A room joined with a partial state lists its members once they are all known.
    if body.at.is_none() {
        state
            .partial_state
            .wait_until_full(&state.pool, &body.room_id, federation::partial_state::MEMBERS_WAIT)
            .await?;
    }
    let events = members::members(&state.pool, &request.session.user_id, &body.room_id, filter).await?;
    let chunk = events
        .iter()
        .map(|event| serde_json::value::to_raw_value(event).map(Raw::from_json))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Error::internal(error.to_string()))?;
    Ok(get_member_events::v3::Response::new(chunk).into())
}

/// `POST /_matrix/client/*/rooms/{roomId}/forget`: forget a room.
async fn forget(
    State(state): State<AppState>,
    request: Authed<forget_room::v3::Request>,
) -> Result<RumaResponse<forget_room::v3::Response>> {
    members::forget(&state.pool, &request.session.user_id, &request.body.room_id).await?;
    Ok(forget_room::v3::Response::new().into())
}

/// `POST /_matrix/client/*/knock/{roomIdOrAlias}`: knock on a room.
async fn knock(
    State(state): State<AppState>,
    request: Authed<knock_room::v3::Request>,
) -> Result<RumaResponse<knock_room::v3::Response>> {
    let body = &request.body;
    let (user, reason) = (&request.session.user_id, body.reason.as_deref());
    let room_id = federation::membership::knock(state.fed(), user, &body.room_id_or_alias, &body.via, reason).await?;
    Ok(knock_room::v3::Response::new(room_id).into())
}

/// `POST /_matrix/client/*/rooms/{roomId}/report/{eventId}`: report content as inappropriate.
async fn report_event(
    State(state): State<AppState>,
    request: Authed<report_content::v3::Request>,
) -> Result<RumaResponse<report_content::v3::Response>> {
    let body = &request.body;
    reports::report_event(
        &state.pool,
        &request.session.user_id,
        &body.room_id,
        body.event_id.as_str(),
        body.reason.as_deref(),
        None,
    )
    .await?;
    Ok(report_content::v3::Response::new().into())
}

/// `POST /_matrix/client/*/rooms/{roomId}/report`: report a room as inappropriate.
async fn report_a_room(
    State(state): State<AppState>,
    request: Authed<report_room::v3::Request>,
) -> Result<RumaResponse<report_room::v3::Response>> {
    let body = &request.body;
    reports::report_room(&state.pool, &request.session.user_id, &body.room_id, Some(&body.reason)).await?;
    Ok(report_room::v3::Response::new().into())
}

/// `POST /_matrix/client/*/users/{userId}/report`: report a user as inappropriate.
async fn report_a_user(
    State(state): State<AppState>,
    request: Authed<report_user::v3::Request>,
) -> Result<RumaResponse<report_user::v3::Response>> {
    let body = &request.body;
    reports::report_user(&state.pool, &request.session.user_id, &body.user_id, Some(&body.reason)).await?;
    Ok(report_user::v3::Response::new().into())
}
