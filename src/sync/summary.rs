//! `rooms.join.{id}.summary` (spec: "Room summary"): what a client needs to name a room that
//! has no name — up to five heroes — and its joined and invited member counts.
//!
//! Sent on an initial sync (or a new join, or `full_state`) and whenever membership, the
//! name or the canonical alias changed in the window; otherwise left out, which the spec
//! allows for unchanged fields. Read from the room as it is now: a change after the window
//! is itself in the next window, which sends the summary again.

use crate::db;
use crate::error::Result;
use crate::rooms::pdu::Pdu;
use crate::sync::room::RoomEntry;
use ruma::{RoomId, UserId};
use serde_json::{Value, json};
use sqlx::PgPool;

/// The spec suggests five heroes.
const MAX_HEROES: i64 = 5;

/// The room's summary for the user.
pub(super) async fn summary(pool: &PgPool, user: &UserId, room_id: &RoomId) -> Result<Value> {
    let (joined, invited) = db::unread::member_counts(pool, room_id.as_str()).await?;
    let mut summary = json!({ "m.joined_member_count": joined, "m.invited_member_count": invited });
    // Heroes are for rooms without a name to show (spec: required when `m.room.name` and
    // `m.room.canonical_alias` are unset or empty).
    if !has_name_or_alias(pool, room_id).await? {
        let heroes = db::unread::heroes(pool, room_id.as_str(), user.as_str(), MAX_HEROES).await?;
        summary["m.heroes"] = json!(heroes);
    }
    Ok(summary)
}

/// Whether the room has a non-empty name or canonical alias (then clients need no heroes).
async fn has_name_or_alias(pool: &PgPool, room_id: &RoomId) -> Result<bool> {
    let keys = [("m.room.name", ""), ("m.room.canonical_alias", "")];
    for entry in db::state::current_state_for_keys(pool, room_id.as_str(), &keys).await? {
        let field = if entry.event_type == "m.room.name" { "name" } else { "alias" };
        let content = Pdu::from_stored(&entry.event_id, &entry.json)?.content_value();
        if content[field].as_str().is_some_and(|text| !text.is_empty()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Adds `summary` to a joined room's entry when the client needs it: always if `full` (an
/// initial sync, a new join, `full_state`), else when the window `(after, upto]` changed it.
pub(super) async fn attach(
    pool: &PgPool,
    user: &UserId,
    room_id: &RoomId,
    entry: Option<RoomEntry>,
    full: bool,
    after: i64,
    upto: i64,
) -> Result<Option<RoomEntry>> {
    let Some(mut entry) = entry else { return Ok(None) };
    let changed = match entry.summary_changed {
        Some(changed) => changed,
        None => db::unread::summary_changed(pool, room_id.as_str(), after, upto).await?,
    };
    if full || changed {
        entry.json["summary"] = summary(pool, user, room_id).await?;
    }
    Ok(Some(entry))
}
