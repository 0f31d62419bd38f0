//! `GET /_hearth/client/v1/ws`: `/sync` and the live requests of a chat (messages, typing,
//! receipts, read markers) over one WebSocket (docs/API.md, "WebSocket"). The deltas come from
//! `sync::stream` (the same long-poll and wake-ups as `/sync`, so the same exactly-once
//! invariant), the requests from the same functions as their HTTP endpoints.

mod connection;
mod frames;
mod outbox;
mod requests;

use crate::error::{Error, Result};
use crate::http::plain::route;
use crate::http::ruma::{access_token, client_info};
use crate::state::AppState;
use crate::users::sessions;
use axum::Router;
use axum::extract::{FromRequestParts, Request, State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use http::Method;

/// What the socket reads at once. It is kept for the connection's life, idle or not: 4 KiB
/// was 15 % of an idle connection (tungstenite's default, 128 KiB, would be most of it). A
/// client's request frames are a few hundred bytes; a larger frame is still read whole (its
/// header says how long it is, and room for all of it is made at once), in more reads.
const READ_BUFFER: usize = 512;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    route(router, "/_hearth/client/v1/ws", &[Method::GET], get(upgrade))
}

/// Upgrades the request to a WebSocket. A token in the request (header or query) is checked
/// before the upgrade, so a bad one is an ordinary 401; without one, the start frame must
/// carry it (browsers cannot set headers on a WebSocket).
async fn upgrade(State(state): State<AppState>, request: Request) -> Result<Response> {
    let (mut parts, _body) = request.into_parts();
    let client = client_info(&parts);
    let token = access_token(&parts)?;
    if let Some(token) = &token {
        sessions::authenticate(&state.pool, token, &client).await?;
    }
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state)
        .await
        .map_err(|rejection| Error::invalid_param(format!("This endpoint speaks WebSocket only: {rejection}")))?;
    let max_frame = state.config.limits.max_request_size;
    let caller = connection::Caller { token, client };
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        // Each frame goes out as it is queued: deltas are latency-bound, and the queue
        // already bounds what one connection holds.
        .write_buffer_size(0)
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .on_upgrade(move |socket| connection::run(socket, state, caller)))
}
