//! Stripped state: the few state events that let a user see what a room is before they are in
//! it (`invite_room_state`, `knock_room_state`), from the spec's recommended list. Since
//! Matrix 1.16 they travel between servers as full PDUs, so the receiver can check them.

use crate::db;
use crate::error::{Error, Result};
use crate::sync::build::STRIPPED_STATE_TYPES;
use ruma::RoomId;
use serde_json::value::RawValue as RawJsonValue;
use sqlx::PgPool;

/// The room's current stripped state, as the PDUs stored.
pub async fn stripped_state_pdus(pool: &PgPool, room_id: &RoomId) -> Result<Vec<Box<RawJsonValue>>> {
    let keys: Vec<(&str, &str)> = STRIPPED_STATE_TYPES.iter().map(|kind| (*kind, "")).collect();
    let entries = db::state::current_state_for_keys(pool, room_id.as_str(), &keys).await?;
    entries
        .into_iter()
        .map(|entry| {
            RawJsonValue::from_string(entry.json).map_err(|e| Error::internal(format!("stored event JSON: {e}")))
        })
        .collect()
}
