//! The frames of the WebSocket transport (docs/API.md, "WebSocket"): what a client sends (a
//! start frame, then requests with an `id`), what the server sends (sync deltas, results,
//! errors) and the close codes a client resumes from.

use crate::error::{Error, Result};
use crate::sync::response::SyncResponse;
use axum::extract::ws::{CloseFrame, Message};
use axum::response::IntoResponse;
use ruma::api::client::filter::FilterDefinition;
use ruma::presence::PresenceState;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Close codes (RFC 6455 keeps 4000-4999 for applications).
pub(super) mod close {
    /// The client left, or ended the connection itself.
    pub(crate) const NORMAL: u16 = 1000;
    /// The server is stopping: resume, on this server or another.
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// Something failed on the server: resume.
    pub(crate) const INTERNAL: u16 = 1011;
    /// The access token was refused (or the session ended): sign in again.
    pub(crate) const TOKEN: u16 = 4001;
    /// The start frame could not be used (a bad token, filter or frame): fix it, then resume.
    pub(crate) const BAD_START: u16 = 4002;
    /// The client fell behind (its send queue was full): resume from the last `next_batch`.
    pub(crate) const BEHIND: u16 = 4003;
    /// Nothing came from the client for two ping intervals.
    pub(crate) const SILENT: u16 = 4004;
}

/// The first frame: who the client is (unless its upgrade request said it) and where its sync
/// starts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Start {
    /// Only `"start"` (or nothing): a request before the start frame is a mistake.
    #[serde(default)]
    pub op: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub filter: Option<StartFilter>,
    #[serde(default)]
    pub full_state: bool,
    #[serde(default)]
    pub set_presence: Option<PresenceState>,
}

/// A filter given inline or by the id `/user/{userId}/filter` handed out.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum StartFilter {
    Id(String),
    Inline(Box<FilterDefinition>),
}

/// A request frame after the start: `{"id": "...", "op": "...", ...}`.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Request {
    /// A message event (`PUT /rooms/{roomId}/send/{type}/{txnId}`); `txn_id` defaults to the
    /// frame's `id`, so a request repeated after a reconnect is sent once.
    Send {
        room_id: String,
        #[serde(rename = "type")]
        event_type: String,
        content: Map<String, Value>,
        #[serde(default)]
        txn_id: Option<String>,
    },
    /// `PUT /rooms/{roomId}/typing/{userId}` for the socket's own user.
    Typing {
        room_id: String,
        typing: bool,
        #[serde(default)]
        timeout: Option<u64>,
    },
    /// `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`.
    Receipt {
        room_id: String,
        receipt_type: String,
        event_id: String,
        #[serde(default)]
        thread_id: Option<String>,
    },
    /// `POST /rooms/{roomId}/read_markers`.
    ReadMarkers {
        room_id: String,
        #[serde(rename = "m.fully_read", default)]
        fully_read: Option<String>,
        #[serde(rename = "m.read", default)]
        read: Option<String>,
        #[serde(rename = "m.read.private", default)]
        read_private: Option<String>,
    },
    /// Answers `{}`: a round trip through the whole connection, for clients that cannot see
    /// WebSocket pings.
    Ping,
}

/// A client frame's text as JSON: `M_NOT_JSON` when it is not JSON at all.
pub(super) fn parse_json(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|error| Error::not_json(format!("The frame is not JSON: {error}")))
}

/// A frame of the wrong shape: `M_BAD_JSON`, or `M_UNRECOGNIZED` for an operation there is none of.
pub(super) fn shape_error(error: serde_json::Error, frame: &Value) -> Error {
    let known = ["send", "typing", "receipt", "read_markers", "ping"];
    match frame.get("op").and_then(Value::as_str) {
        Some(op) if !known.contains(&op) && op != "start" => Error::unrecognized(format!("Unknown op {op:?}")),
        _ => Error::bad_json(format!("The frame does not fit: {error}")),
    }
}

/// The frame's `id`, when it has a usable one (a string of at most 255 bytes).
pub(super) fn request_id(frame: &Value) -> Option<&str> {
    frame.get("id").and_then(Value::as_str).filter(|id| id.len() <= 255)
}

/// A sync delta: the `/sync` answer as it is, rendered straight into the frame's text.
pub(super) fn sync(body: &SyncResponse) -> Result<Message> {
    #[derive(serde::Serialize)]
    struct SyncFrame<'a> {
        op: &'static str,
        sync: &'a SyncResponse,
    }
    let frame = serde_json::to_string(&SyncFrame { op: "sync", sync: body })
        .map_err(|e| Error::internal(format!("sync delta: {e}")))?;
    Ok(Message::Text(frame.into()))
}

/// A request's result: the body the HTTP endpoint answers with.
pub(super) fn result(id: &str, body: Value) -> Message {
    text(json!({"op": "result", "id": id, "result": body}))
}

/// A request's failure, or a frame's (`id: None` when it had no usable id): the status and the
/// Matrix error JSON the HTTP endpoint would have answered with.
pub(super) async fn error(id: Option<&str>, error: Error) -> Message {
    let (status, body) = error_json(error).await;
    let mut frame = json!({"op": "error", "status": status, "error": body});
    if let Some(id) = id {
        frame["op"] = json!("result");
        frame["id"] = json!(id);
    }
    text(frame)
}

/// The status and body the HTTP layer answers an error with (one mapping for every transport).
async fn error_json(error: Error) -> (u16, Value) {
    let response = error.into_response();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({"errcode": "M_UNKNOWN", "error": "Internal server error"}));
    (status, body)
}

/// A close frame whose reason (at most 123 bytes) is JSON: the errcode when the close is an
/// error, and the token to resume from when the server knows one.
pub(super) fn close_frame(code: u16, errcode: Option<&str>, resume: Option<&str>) -> CloseFrame {
    let mut reason = Map::new();
    if let Some(errcode) = errcode {
        reason.insert("errcode".to_owned(), json!(errcode));
    }
    if let Some(token) = resume.filter(|token| token.len() <= 64) {
        reason.insert("next_batch".to_owned(), json!(token));
    }
    CloseFrame { code, reason: Value::Object(reason).to_string().into() }
}

fn text(frame: Value) -> Message {
    Message::Text(frame.to_string().into())
}
