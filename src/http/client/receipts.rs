//! Typing notifications, read receipts and read markers.

use crate::error::Result;
use crate::http::body_defaults::parse_with_defaults;
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::rooms::shadow_ban::is_shadow_banned;
use crate::rooms::{receipts, typing};
use crate::state::AppState;
use axum::Router;
use axum::extract::{Request, State};
use ruma::api::client::read_marker::set_read_marker;
use ruma::api::client::receipt::create_receipt;
use ruma::api::client::receipt::create_receipt::v3::ReceiptType;
use ruma::api::client::typing::create_typing_event;
use serde_json::Value;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
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
    if is_shadow_banned(&state.pool, &request.session.user_id).await? {
        return Ok(create_typing_event::v3::Response::new().into());
    }
    let timeout = match &body.state {
        create_typing_event::v3::Typing::Yes(info) => Some(info.timeout),
        _ => None,
    };
    typing::set_typing(&state.pool, &state.streams, &request.session.user_id, &body.user_id, &body.room_id, timeout)
        .await?;
    Ok(create_typing_event::v3::Response::new().into())
}

/// `POST /_matrix/client/*/rooms/{roomId}/receipt/{receiptType}/{eventId}`: send a receipt event to a room.
async fn post_receipt(
    State(state): State<AppState>,
    request: Authed<create_receipt::v3::Request>,
) -> Result<RumaResponse<create_receipt::v3::Response>> {
    let body = &request.body;
    if body.receipt_type == ReceiptType::Read && is_shadow_banned(&state.pool, &request.session.user_id).await? {
        return Ok(create_receipt::v3::Response::new().into());
    }
    receipts::post_receipt(
        &state.pool,
        &state.streams,
        &request.session.user_id,
        &body.room_id,
        body.receipt_type.as_ref(),
        body.event_id.as_str(),
        body.thread.as_str(),
    )
    .await?;
    Ok(create_receipt::v3::Response::new().into())
}

/// `POST /_matrix/client/*/rooms/{roomId}/read_markers`:
/// sets the position of the read marker for a given room, and optionally the read receipt's location.
async fn post_read_markers(
    State(state): State<AppState>,
    request: Authed<set_read_marker::v3::Request>,
) -> Result<RumaResponse<set_read_marker::v3::Response>> {
    let body = &request.body;
    let shadow_banned = is_shadow_banned(&state.pool, &request.session.user_id).await?;
    receipts::set_read_markers(
        &state.pool,
        &state.streams,
        &request.session.user_id,
        &body.room_id,
        body.fully_read.as_ref().map(|id| id.as_str()),
        body.read_receipt.as_ref().filter(|_| !shadow_banned).map(|id| id.as_str()),
        body.private_read_receipt.as_ref().map(|id| id.as_str()),
    )
    .await?;
    Ok(set_read_marker::v3::Response::new().into())
}
