//! The requests a client sends over its WebSocket, answered by the same functions as their
//! HTTP endpoints (so rate limits, shadow bans and errors are the same).

use super::frames::Request;
use crate::error::{Error, Result};
use crate::http::client::receipts::{ReadMarkers, Receipt, post_receipt_as, set_read_markers_as, set_typing_as};
use crate::http::client::rooms::send_message_as;
use crate::rooms::typing::DEFAULT_TIMEOUT;
use crate::state::AppState;
use crate::users::Session;
use ruma::RoomId;
use ruma::events::MessageLikeEventType;
use serde_json::{Value, json};
use std::time::Duration;

/// Carries out one request; its result is what the HTTP endpoint answers with.
pub(super) async fn handle(state: &AppState, session: &Session, id: &str, request: Request) -> Result<Value> {
    match request {
        Request::Send { room_id, event_type, content, txn_id } => {
            let room_id = room(&room_id)?;
            let txn_id = txn_id.as_deref().unwrap_or(id);
            let event_type = MessageLikeEventType::from(event_type);
            let event_id =
                send_message_as(state, session, &room_id, event_type, Value::Object(content), txn_id).await?;
            Ok(json!({"event_id": event_id}))
        }
        Request::Typing { room_id, typing, timeout } => {
            let timeout = typing.then(|| timeout.map(Duration::from_millis).unwrap_or(DEFAULT_TIMEOUT));
            set_typing_as(state, session, &session.user_id, &room(&room_id)?, timeout).await?;
            Ok(json!({}))
        }
        Request::Receipt { room_id, receipt_type, event_id, thread_id } => {
            let event_id = event(&event_id)?;
            let receipt = Receipt { receipt_type: &receipt_type, event_id, thread_id: thread_id.as_deref() };
            post_receipt_as(state, session, &room(&room_id)?, receipt).await?;
            Ok(json!({}))
        }
        Request::ReadMarkers { room_id, fully_read, read, read_private } => {
            let markers = ReadMarkers {
                fully_read: fully_read.as_deref().map(event).transpose()?,
                read: read.as_deref().map(event).transpose()?,
                read_private: read_private.as_deref().map(event).transpose()?,
            };
            set_read_markers_as(state, session, &room(&room_id)?, markers).await?;
            Ok(json!({}))
        }
        Request::Ping => Ok(json!({})),
    }
}

fn room(room_id: &str) -> Result<ruma::OwnedRoomId> {
    RoomId::parse(room_id).map_err(|error| Error::invalid_param(format!("Bad room id {room_id:?}: {error}")))
}

/// An event id as the HTTP endpoints accept them (ruma's parsing): `M_INVALID_PARAM` if not.
fn event(event_id: &str) -> Result<&str> {
    <&ruma::EventId>::try_from(event_id)
        .map(|_| event_id)
        .map_err(|error| Error::invalid_param(format!("Bad event id {event_id:?}: {error}")))
}
