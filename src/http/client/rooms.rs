//! Rooms: creation, sending, state, single events, history.

use crate::error::{Error, Result};
use crate::federation::backfill;
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::rooms::aliases;
use crate::rooms::build::EventTemplate;
use crate::rooms::create::{CreateRoom, Preset, create_room};
use crate::rooms::filter::EventFilter;
use crate::rooms::{read, send_state_event, transaction_ids};
use crate::state::AppState;
use crate::users::Session;
use axum::Router;
use axum::extract::State;
use ruma::api::Direction;
use ruma::api::client::message::{get_message_events, send_message_event};
use ruma::api::client::room::{Visibility, create_room, get_room_event};
use ruma::api::client::state::{get_state_event_for_key, get_state_events, send_state_event};
use ruma::events::{MessageLikeEventType, StateEventType};
use ruma::serde::Raw;
use ruma::{OwnedEventId, RoomId};
use serde_json::Value;

pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<create_room::v3::Request, _, _>(create)
        .ruma_guest::<send_message_event::v3::Request, _, _>(send_message)
        .ruma::<send_state_event::v3::Request, _, _>(send_state)
        .ruma_guest::<get_state_events::v3::Request, _, _>(get_state)
        .ruma_guest::<get_state_event_for_key::v3::Request, _, _>(get_state_event)
        .ruma_guest::<get_room_event::v3::Request, _, _>(get_event)
        .ruma_guest::<get_message_events::v3::Request, _, _>(messages)
}

fn json<T>(raw: &Raw<T>) -> Result<Value> {
    serde_json::from_str(raw.json().get()).map_err(|error| Error::bad_json(format!("Invalid JSON: {error}")))
}

fn raw<T>(value: &Value) -> Result<Raw<T>> {
    let json = serde_json::value::to_raw_value(value).map_err(|error| Error::internal(error.to_string()))?;
    Ok(Raw::from_json(json))
}

/// `POST /_matrix/client/*/createRoom`: create a new room.
async fn create(
    State(state): State<AppState>,
    request: Authed<create_room::v3::Request>,
) -> Result<RumaResponse<create_room::v3::Response>> {
    let body = &request.body;
    let alias =
        body.room_alias_name.as_deref().map(|name| aliases::alias_from_name(&state.server_name, name)).transpose()?;
    if !body.invite_3pid.is_empty() {
        return Err(Error::unknown("Third-party invites are not supported"));
    }
    let preset = match body.preset.as_ref().map(|preset| preset.as_str()) {
        None => None,
        Some("private_chat") => Some(Preset::PrivateChat),
        Some("trusted_private_chat") => Some(Preset::TrustedPrivateChat),
        Some("public_chat") => Some(Preset::PublicChat),
        Some(other) => return Err(Error::bad_json(format!("Unknown preset {other:?}"))),
    };
    let mut initial_state = Vec::new();
    for event in &body.initial_state {
        let event = json(event)?;
        let kind = event["type"].as_str().ok_or_else(|| Error::bad_json("initial_state events need a type"))?;
        let state_key = event["state_key"].as_str().unwrap_or("");
        initial_state.push((kind.to_owned(), state_key.to_owned(), event["content"].clone()));
    }
    let create = CreateRoom {
        version: body.room_version.clone(),
        preset,
        public: body.visibility == Visibility::Public,
        name: body.name.clone(),
        topic: body.topic.clone(),
        invite: body.invite.clone(),
        is_direct: body.is_direct,
        initial_state,
        power_level_content_override: body.power_level_content_override.as_ref().map(json).transpose()?,
        creation_content: body.creation_content.as_ref().map(json).transpose()?,
        alias,
        first_message: None,
        lean: false,
    };
    let creator = &request.session.user_id;
    let room_id = create_room(state.rooms(), &state.default_room_version, creator, create).await?;
    let invite_remote = crate::federation::membership::invite::invite_remote_after_creation;
    invite_remote(state.fed(), &room_id, creator, &body.invite, body.is_direct).await;
    Ok(create_room::v3::Response::new(room_id).into())
}

/// `PUT /_matrix/client/*/rooms/{roomId}/send/{eventType}/{txnId}`: send a message event to a room.
async fn send_message(
    State(state): State<AppState>,
    request: Authed<send_message_event::v3::Request>,
) -> Result<RumaResponse<send_message_event::v3::Response>> {
    let body = &request.body;
    let content = json(&body.body)?;
    let event_id = send_message_as(
        &state,
        &request.session,
        &body.room_id,
        body.event_type.clone(),
        content,
        body.txn_id.as_str(),
    )
    .await?;
    Ok(send_message_event::v3::Response::new(event_id).into())
}

/// A client's message event, from `PUT /send` or the WebSocket's `send` frame, through the
/// domain's `send_message` (rate limit, shadow ban, append under the device's transaction id).
pub(crate) async fn send_message_as(
    state: &AppState,
    session: &Session,
    room_id: &RoomId,
    event_type: MessageLikeEventType,
    content: Value,
    txn_id: &str,
) -> Result<OwnedEventId> {
    let template = EventTemplate::message(event_type, content);
    crate::rooms::send::send_message(state.rooms(), &state.rate_limits, session, room_id, template, Some(txn_id)).await
}

/// `PUT /_matrix/client/*/rooms/{roomId}/state/{eventType}/{stateKey}`:
/// send a state event to a room associated with a given state key.
async fn send_state(
    State(state): State<AppState>,
    request: Authed<send_state_event::v3::Request>,
) -> Result<RumaResponse<send_state_event::v3::Response>> {
    let body = &request.body;
    let content = json(&body.body)?;
    let sender = &request.session.user_id;
    state.rate_limits.check_message(&request.session)?;
    if body.event_type != StateEventType::RoomMember
        && let Some(event_id) = crate::rooms::shadow_ban::fake_event_id(&request.session)?
    {
        return Ok(send_state_event::v3::Response::new(event_id).into());
    }
    let event_id =
        send_state_event(state.rooms(), &body.room_id, sender, &body.event_type, &body.state_key, content).await?;
    Ok(send_state_event::v3::Response::new(event_id).into())
}

/// `GET /_matrix/client/*/rooms/{roomId}/state`: get state events for a room.
async fn get_state(
    State(state): State<AppState>,
    request: Authed<get_state_events::v3::Request>,
) -> Result<RumaResponse<get_state_events::v3::Response>> {
    let events = read::state(&state.pool, &request.session.user_id, &request.body.room_id).await?;
    let events = events.iter().map(raw).collect::<Result<Vec<_>>>()?;
    Ok(get_state_events::v3::Response::new(events).into())
}

/// `GET /_matrix/client/*/rooms/{roomId}/state/{eventType}/{stateKey}`: get state events associated with a given key.
async fn get_state_event(
    State(state): State<AppState>,
    request: Authed<get_state_event_for_key::v3::Request>,
) -> Result<RumaResponse<get_state_event_for_key::v3::Response>> {
    let body = &request.body;
    let content = read::state_event(
        &state.pool,
        &request.session.user_id,
        &body.room_id,
        &body.event_type.to_string(),
        &body.state_key,
    )
    .await?;
    let raw = serde_json::value::to_raw_value(&content).map_err(|error| Error::internal(error.to_string()))?;
    Ok(get_state_event_for_key::v3::Response::new(raw).into())
}

/// `GET /_matrix/client/*/rooms/{roomId}/event/{eventId}`: get a single event based on roomId/eventId
async fn get_event(
    State(state): State<AppState>,
    request: Authed<get_room_event::v3::Request>,
) -> Result<RumaResponse<get_room_event::v3::Response>> {
    let body = &request.body;
    let session = &request.session;
    let mut event = read::event(&state.pool, &session.user_id, &body.room_id, body.event_id.as_str()).await?;
    transaction_ids::annotate(&state.pool, &session.user_id, &session.device_id, [&mut event]).await?;
    Ok(get_room_event::v3::Response::new(raw(&event)?).into())
}

/// `GET /_matrix/client/*/rooms/{roomId}/messages`: get message events for a room.
async fn messages(
    State(state): State<AppState>,
    request: Authed<get_message_events::v3::Request>,
) -> Result<RumaResponse<get_message_events::v3::Response>> {
    let body = &request.body;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX);
    let filter = EventFilter::from_ruma(&body.filter);
    let history = read::HistoryRequest {
        from: body.from.as_deref(),
        to: body.to.as_deref(),
        backwards: body.dir == Direction::Backward,
        limit,
        filter: &filter,
    };
    let session = &request.session;
    let mut page = backfill::messages(state.fed(), &session.user_id, &body.room_id, history).await?;
    transaction_ids::annotate(&state.pool, &session.user_id, &session.device_id, &mut page.chunk).await?;
    let mut response = get_message_events::v3::Response::new();
    response.start = page.start;
    response.end = page.end;
    response.chunk = page.chunk.iter().map(raw).collect::<Result<Vec<_>>>()?;
    response.state = page.state.iter().map(raw).collect::<Result<Vec<_>>>()?;
    Ok(response.into())
}
