//! State sent again unchanged. Clients re-apply settings (a topic, power levels, a ban) and
//! expect nothing to happen when nothing changes; Synapse answers such a request with the
//! event that stands instead of appending a copy (`deduplicate_state_event`, and the same
//! check in `update_membership`), and so does Hearth.
//!
//! The check reads the current state before the room's lock is taken: a concurrent change can
//! only make it miss, and then the request appends as it would have without it.

use crate::db;
use crate::error::Result;
use crate::rooms::pdu::Pdu;
use crate::store::Store;
use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::Value;

/// The current state event at `(kind, state_key)`, if `sender` sent it with exactly `content`
/// and it has not been redacted since (a redacted event no longer says what it said).
pub(crate) async fn standing_event(
    pool: &Store,
    room_id: &RoomId,
    sender: &UserId,
    (kind, state_key): (&str, &str),
    content: &Value,
) -> Result<Option<OwnedEventId>> {
    let Some(entry) = db::state::current_state_event(pool, room_id.as_str(), kind, state_key).await? else {
        return Ok(None);
    };
    let pdu = Pdu::from_stored(&entry.event_id, &entry.json)?;
    if pdu.sender != sender || pdu.content_value() != *content {
        return Ok(None);
    }
    if !db::relations::redactions_of(pool, &[entry.event_nid]).await?.is_empty() {
        return Ok(None);
    }
    Ok(Some(pdu.event_id.clone()))
}
