//! Typing notifications, read receipts and read markers.

use crate::error::Result;
use crate::http::body_defaults::parse_with_defaults;
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::rooms::shadow_ban::is_shadow_banned;
use crate::rooms::{receipts, typing};
use crate::state::AppState;
use crate::users::Session;
use axum::Router;
use axum::extract::{Request, State};
use ruma::api::client::read_marker::set_read_marker;
use ruma::api::client::receipt::create_receipt;
use ruma::api::client::receipt::create_receipt::v3::ReceiptType;
use ruma::api::client::typing::create_typing_event;
use ruma::{RoomId, UserId};
use serde_json::Value;
use std::time::Duration;

pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    // Guests may use all three (spec: "Guest access").
    router
        .ruma_guest::<create_typing_event::v3::Request, _, _>(put_typing)
        .ruma_guest::<create_receipt::v3::Request, _, _>(post_receipt)
        .ruma_guest::<set_read_marker::v3::Request, _, _>(post_read_markers)
}

/// `PUT /_matrix/client/*/rooms/{roomId}/typing/{userId}`: send a typing event to a room.
async fn put_typing(
    State(state): State<AppState>,
    request: Request,
) -> Result<RumaResponse<create_typing_event::v3::Response>> {
    // The spec makes `timeout` optional; ruma's request type requires it while typing.
    let request: Authed<create_typing_event::v3::Request> = parse_with_defaults(request, &state, |body| {
        if body.get("typing") == Some(&Value::Bool(true)) && !body.contains_key("timeout") {
            body.insert("timeout".to_owned(), Value::from(typing::DEFAULT_TIMEOUT.as_millis() as u64));
        }
    })
    .await?;
    let body = &request.body;
    let timeout = match &body.state {
        create_typing_event::v3::Typing::Yes(info) => Some(info.timeout),
        _ => None,
    };
    set_typing_as(&state, &request.session, &body.user_id, &body.room_id, timeout).await?;
    Ok(create_typing_event::v3::Response::new().into())
}

/// A client's typing notice (`timeout: None` stops typing), from `PUT /typing` or the
/// WebSocket: a shadow-banned user's notice is accepted and dropped.
pub(crate) async fn set_typing_as(
    state: &AppState,
    session: &Session,
    user_id: &UserId,
    room_id: &RoomId,
    timeout: Option<Duration>,
) -> Result<()> {
    if is_shadow_banned(&state.pool, &session.user_id).await? {
        return Ok(());
    }
    typing::set_typing(&state.pool, &state.streams, &session.user_id, user_id, room_id, timeout).await
}

/// `POST /_matrix/client/*/rooms/{roomId}/receipt/{receiptType}/{eventId}`: send a receipt event to a room.
async fn post_receipt(
    State(state): State<AppState>,
    request: Authed<create_receipt::v3::Request>,
) -> Result<RumaResponse<create_receipt::v3::Response>> {
    let body = &request.body;
    let receipt = Receipt {
        receipt_type: body.receipt_type.as_ref(),
        event_id: body.event_id.as_str(),
        thread_id: body.thread.as_str(),
    };
    post_receipt_as(&state, &request.session, &body.room_id, receipt).await?;
    Ok(create_receipt::v3::Response::new().into())
}

/// A receipt a client posts.
pub(crate) struct Receipt<'a> {
    pub receipt_type: &'a str,
    pub event_id: &'a str,
    pub thread_id: Option<&'a str>,
}

/// A client's receipt, from `POST /receipt` or the WebSocket: a shadow-banned user's public
/// read receipt is accepted and dropped.
pub(crate) async fn post_receipt_as(
    state: &AppState,
    session: &Session,
    room_id: &RoomId,
    receipt: Receipt<'_>,
) -> Result<()> {
    let user = &session.user_id;
    if receipt.receipt_type == ReceiptType::Read.as_ref() && is_shadow_banned(&state.pool, user).await? {
        return Ok(());
    }
    let Receipt { receipt_type, event_id, thread_id } = receipt;
    receipts::post_receipt(&state.pool, &state.streams, user, room_id, receipt_type, event_id, thread_id).await
}

/// `POST /_matrix/client/*/rooms/{roomId}/read_markers`:
/// sets the position of the read marker for a given room, and optionally the read receipt's location.
async fn post_read_markers(
    State(state): State<AppState>,
    request: Authed<set_read_marker::v3::Request>,
) -> Result<RumaResponse<set_read_marker::v3::Response>> {
    let body = &request.body;
    let markers = ReadMarkers {
        fully_read: body.fully_read.as_ref().map(|id| id.as_str()),
        read: body.read_receipt.as_ref().map(|id| id.as_str()),
        read_private: body.private_read_receipt.as_ref().map(|id| id.as_str()),
    };
    set_read_markers_as(&state, &request.session, &body.room_id, markers).await?;
    Ok(set_read_marker::v3::Response::new().into())
}

/// The read markers a client moves: `m.fully_read`, `m.read`, `m.read.private`.
pub(crate) struct ReadMarkers<'a> {
    pub fully_read: Option<&'a str>,
    pub read: Option<&'a str>,
    pub read_private: Option<&'a str>,
}

/// A client's read markers, from `POST /read_markers` or the WebSocket: a shadow-banned user's
/// public read receipt is dropped, the rest is kept.
pub(crate) async fn set_read_markers_as(
    state: &AppState,
    session: &Session,
    room_id: &RoomId,
    markers: ReadMarkers<'_>,
) -> Result<()> {
    let user = &session.user_id;
    let shadow_banned = is_shadow_banned(&state.pool, user).await?;
    let read = markers.read.filter(|_| !shadow_banned);
    let (pool, streams) = (&state.pool, &state.streams);
    receipts::set_read_markers(pool, streams, user, room_id, markers.fully_read, read, markers.read_private).await
}
