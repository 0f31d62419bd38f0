//! `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`: sending a redaction. Who may redact what
//! is checked on the send path (`send::redaction_auth`), so a redaction sent through `/send`
//! is held to the same rules; serving redacted events is `rooms::served`.

use crate::error::Result;
use crate::rooms::RoomCtx;
use crate::rooms::build::EventTemplate;
use crate::rooms::send::{Transaction, append};
use ruma::events::MessageLikeEventType;
use ruma::{EventId, OwnedEventId, RoomId, UserId};
use serde_json::json;

/// Sends an `m.room.redaction` of `event_id`.
pub(crate) async fn redact_event(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    sender: &UserId,
    event_id: &EventId,
    reason: Option<&str>,
    transaction: Transaction<'_>,
) -> Result<OwnedEventId> {
    // Room version 11 moved `redacts` into the content; for earlier versions the builder
    // copies it to the top level as well.
    let mut content = json!({ "redacts": event_id });
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    append(
        ctx,
        room_id,
        sender,
        EventTemplate::message(MessageLikeEventType::RoomRedaction, content),
        Some(transaction),
    )
    .await
}
