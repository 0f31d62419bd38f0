//! Stripped state: the few state events that let a user see what a room is before they are in
//! it (`invite_room_state`, `knock_room_state`), as the spec's recommended list.

use crate::db;
use crate::error::Result;
use crate::rooms::pdu::Pdu;
use ruma::RoomId;
use serde_json::value::RawValue as RawJsonValue;
use serde_json::{Value, json};
use sqlx::PgPool;

/// The state types the spec recommends sharing with invitees and knockers.
const STRIPPED_STATE_TYPES: [&str; 7] = [
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// The room's current stripped state.
pub async fn current_stripped_state(pool: &PgPool, room_id: &RoomId) -> Result<Vec<Box<RawJsonValue>>> {
    let keys: Vec<(&str, &str)> = STRIPPED_STATE_TYPES.iter().map(|kind| (*kind, "")).collect();
    let entries = db::state::current_state_for_keys(pool, room_id.as_str(), &keys).await?;
    let mut stripped = Vec::with_capacity(entries.len());
    for entry in entries {
        let pdu = Pdu::from_stored(&entry.event_id, &entry.json)?;
        stripped.push(raw(&strip(&pdu))?);
    }
    Ok(stripped)
}

fn strip(pdu: &Pdu) -> Value {
    json!({
        "type": pdu.kind.to_string(),
        "state_key": pdu.state_key.clone().unwrap_or_default(),
        "content": pdu.content_value(),
        "sender": pdu.sender,
    })
}

fn raw(value: &Value) -> Result<Box<RawJsonValue>> {
    serde_json::value::to_raw_value(value).map_err(|e| crate::Error::internal(format!("serialising state: {e}")))
}
