//! Membership over federation, served: `make_join`/`send_join` (v2), `make_leave`/`send_leave`
//! (v2), `make_knock`/`send_knock`. Thin: the domain is `federation::membership`.

use crate::error::Result;
use crate::federation::membership::{
    self, RemoteMembership, make_membership, receive_invite, send_membership, stripped,
};
use crate::http::federation::auth::Federated;
use crate::http::ruma::{RumaResponse, RumaRouter};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::federation::membership::{
    RawStrippedState, create_invite, create_join_event, create_knock_event, create_leave_event, prepare_join_event,
    prepare_knock_event, prepare_leave_event,
};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<prepare_join_event::v1::Request, _, _>(make_join)
        .ruma::<create_join_event::v2::Request, _, _>(send_join)
        .ruma::<prepare_leave_event::v1::Request, _, _>(make_leave)
        .ruma::<create_leave_event::v2::Request, _, _>(send_leave)
        .ruma::<prepare_knock_event::v1::Request, _, _>(make_knock)
        .ruma::<create_knock_event::v1::Request, _, _>(send_knock)
        .ruma::<create_invite::v2::Request, _, _>(invite)
}

/// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`
async fn invite(
    State(state): State<AppState>,
    request: Federated<create_invite::v2::Request>,
) -> Result<RumaResponse<create_invite::v2::Response>> {
    let body = &request.body;
    let ids = (&*body.room_id, &*body.event_id);
    let event = (&*body.event, &*body.invite_room_state);
    let event = receive_invite(state.fed(), &request.origin, ids, &body.room_version, event).await?;
    Ok(create_invite::v2::Response::new(event).into())
}

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`
async fn make_join(
    State(state): State<AppState>,
    request: Federated<prepare_join_event::v1::Request>,
) -> Result<RumaResponse<prepare_join_event::v1::Response>> {
    let body = &request.body;
    let made = make_membership(
        state.rooms(),
        &request.origin,
        &body.room_id,
        &body.user_id,
        RemoteMembership::Join,
        Some(&body.ver),
    )
    .await?;
    let mut response = prepare_join_event::v1::Response::new(made.event);
    response.room_version = Some(made.room_version);
    Ok(response.into())
}

/// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`
async fn send_join(
    State(state): State<AppState>,
    request: Federated<create_join_event::v2::Request>,
) -> Result<RumaResponse<create_join_event::v2::Response>> {
    let body = &request.body;
    let ids = (&*body.room_id, &*body.event_id);
    let joined =
        membership::send_join(state.rooms(), &state.key_ring, &request.origin, ids, &body.pdu, body.omit_members)
            .await?;
    let mut room_state = create_join_event::v2::RoomState::new();
    room_state.state = joined.state;
    room_state.auth_chain = joined.auth_chain;
    room_state.event = joined.event;
    room_state.servers_in_room = Some(joined.servers_in_room);
    room_state.members_omitted = joined.members_omitted;
    Ok(create_join_event::v2::Response::new(room_state).into())
}

/// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`
async fn make_leave(
    State(state): State<AppState>,
    request: Federated<prepare_leave_event::v1::Request>,
) -> Result<RumaResponse<prepare_leave_event::v1::Response>> {
    let body = &request.body;
    let made =
        make_membership(state.rooms(), &request.origin, &body.room_id, &body.user_id, RemoteMembership::Leave, None)
            .await?;
    Ok(prepare_leave_event::v1::Response::new(Some(made.room_version), made.event).into())
}

/// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`
async fn send_leave(
    State(state): State<AppState>,
    request: Federated<create_leave_event::v2::Request>,
) -> Result<RumaResponse<create_leave_event::v2::Response>> {
    let body = &request.body;
    let ids = (&*body.room_id, &*body.event_id);
    send_membership(state.rooms(), &state.key_ring, &request.origin, ids, &body.pdu, RemoteMembership::Leave).await?;
    Ok(create_leave_event::v2::Response::new().into())
}

/// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}`
async fn make_knock(
    State(state): State<AppState>,
    request: Federated<prepare_knock_event::v1::Request>,
) -> Result<RumaResponse<prepare_knock_event::v1::Response>> {
    let body = &request.body;
    let made = make_membership(
        state.rooms(),
        &request.origin,
        &body.room_id,
        &body.user_id,
        RemoteMembership::Knock,
        Some(&body.ver),
    )
    .await?;
    Ok(prepare_knock_event::v1::Response::new(made.room_version, made.event).into())
}

/// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`
async fn send_knock(
    State(state): State<AppState>,
    request: Federated<create_knock_event::v1::Request>,
) -> Result<RumaResponse<create_knock_event::v1::Response>> {
    let body = &request.body;
    let ids = (&*body.room_id, &*body.event_id);
    send_membership(state.rooms(), &state.key_ring, &request.origin, ids, &body.pdu, RemoteMembership::Knock).await?;
    let room_state = stripped::stripped_state_pdus(&state.pool, &body.room_id)
        .await?
        .into_iter()
        .map(RawStrippedState::Pdu)
        .collect();
    Ok(create_knock_event::v1::Response::new(room_state).into())
}
