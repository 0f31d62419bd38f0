//! Stripped state: the few state events that let a user see what a room is before they are in
//! it (`invite_room_state`, `knock_room_state`), from the spec's recommended list. Since
//! Matrix 1.16 they travel between servers as full PDUs, so the receiver can check them.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::sync::build::STRIPPED_STATE_TYPES;
use ruma::RoomId;
use ruma::api::federation::membership::RawStrippedState;
use serde_json::value::RawValue as RawJsonValue;
use serde_json::{Value, json};

/// The room's current stripped state, as the PDUs stored.
pub async fn stripped_state_pdus(pool: &Store, room_id: &RoomId) -> Result<Vec<Box<RawJsonValue>>> {
    let keys: Vec<(&str, &str)> = STRIPPED_STATE_TYPES.iter().map(|kind| (*kind, "")).collect();
    let entries = db::state::current_state_for_keys(pool, room_id.as_str(), &keys).await?;
    entries
        .into_iter()
        .map(|entry| {
            RawJsonValue::from_string(entry.json).map_err(|e| Error::internal(format!("stored event JSON: {e}")))
        })
        .collect()
}

/// Stripped state events kept from what another server sent (full PDUs since Matrix 1.16,
/// the bare form before): at most one per type of the recommended list, of this room. They
/// are only shown to the invitee (they vouch for nothing: the room's state arrives with the
/// join), so they are not checked beyond their shape.
pub fn stripped_from_remote(room_id: &RoomId, received: &[RawStrippedState]) -> Value {
    let mut kept: Vec<Value> = Vec::new();
    for entry in received {
        let Some(Ok(event)) = json_of(entry).map(serde_json::from_str::<Value>) else { continue };
        let (Some(kind), Some(state_key), Some(sender)) =
            (event["type"].as_str(), event["state_key"].as_str(), event["sender"].as_str())
        else {
            continue;
        };
        let other_room = event["room_id"].as_str().is_some_and(|id| id != room_id.as_str());
        if other_room
            || !event["content"].is_object()
            || !STRIPPED_STATE_TYPES.contains(&kind)
            || kept.iter().any(|known| known["type"] == kind)
        {
            continue;
        }
        kept.push(json!({"type": kind, "state_key": state_key, "content": event["content"], "sender": sender}));
    }
    Value::Array(kept)
}

/// The JSON of either form of a stripped state entry.
#[allow(deprecated)] // the bare form is still what older servers send
fn json_of(entry: &RawStrippedState) -> Option<&str> {
    match entry {
        RawStrippedState::Pdu(raw) => Some(raw.get()),
        RawStrippedState::Stripped(raw) => Some(raw.json().get()),
        _ => None,
    }
}
