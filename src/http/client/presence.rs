//! `PUT/GET /presence/{userId}/status`.

use crate::error::Result;
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::state::AppState;
use crate::users::presence;
use axum::Router;
use axum::extract::State;
use ruma::api::client::presence::{get_presence, set_presence};
use ruma::presence::PresenceState;
use std::time::Duration;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma_guest::<set_presence::v3::Request, _, _>(set).ruma_guest::<get_presence::v3::Request, _, _>(get)
}

/// `PUT /_matrix/client/*/presence/{userId}/status`: set presence status for this user.
async fn set(
    State(state): State<AppState>,
    request: Authed<set_presence::v3::Request>,
) -> Result<RumaResponse<set_presence::v3::Response>> {
    let body = &request.body;
    presence::set(
        &state.pool,
        &state.streams,
        &request.session,
        &body.user_id,
        &body.presence,
        body.status_msg.as_deref(),
    )
    .await?;
    Ok(set_presence::v3::Response::new().into())
}

/// `GET /_matrix/client/*/presence/{userId}/status`: get presence status for this user.
async fn get(
    State(state): State<AppState>,
    request: Authed<get_presence::v3::Request>,
) -> Result<RumaResponse<get_presence::v3::Response>> {
    let view = presence::get(&state.pool, &request.session, &request.body.user_id).await?;
    let mut response = get_presence::v3::Response::new(PresenceState::from(view.presence.as_str()));
    response.status_msg = view.status_msg;
    response.currently_active = view.currently_active;
    response.last_active_ago = view.last_active_ago.map(|ago| Duration::from_millis(u64::try_from(ago).unwrap_or(0)));
    Ok(response.into())
}
