//! `rooms.join.{id}.summary` (spec: "Room summary"): what a client needs to name a room that
//! has no name — up to five heroes — and its joined and invited member counts.
//!
//! Sent on an initial sync (or a new join, or `full_state`) and whenever membership, the
//! name or the canonical alias changed in the window; otherwise left out, which the spec
//! allows for unchanged fields. Read from the room as it is now: a change after the window
//! is itself in the next window, which sends the summary again.

use crate::db;
use crate::error::Result;
use crate::store::Store;
use crate::sync::response::RoomSummary;
use crate::sync::types::RoomEntry;
use ruma::{RoomId, UserId};

/// The spec suggests five heroes.
pub(super) const MAX_HEROES: i64 = 5;

/// The room's summary for the user.
pub(super) async fn summary(pool: &Store, user: &UserId, room_id: &RoomId) -> Result<RoomSummary> {
    let facts = db::unread::summary_facts(pool, room_id.as_str(), user.as_str(), MAX_HEROES).await?;
    Ok(of_facts(facts))
}

/// The summary the facts make.
fn of_facts(facts: db::unread::SummaryFacts) -> RoomSummary {
    RoomSummary {
        // Heroes are for rooms without a name to show (spec: required when `m.room.name` and
        // `m.room.canonical_alias` are unset or empty).
        heroes: (!facts.named).then_some(facts.heroes),
        joined_member_count: facts.joined,
        invited_member_count: facts.invited,
    }
}

/// Adds `summary` to a joined room's entry when the client needs it: always if `full` (an
/// initial sync, a new join, `full_state`), else when the window `(after, upto]` changed it;
/// from `known` facts when they were read already (an initial sync reads every room's at once).
pub(super) async fn attach(
    (pool, user, room_id): (&Store, &UserId, &RoomId),
    entry: Option<RoomEntry>,
    (full, after, upto): (bool, i64, i64),
    known: Option<db::unread::SummaryFacts>,
) -> Result<Option<RoomEntry>> {
    let Some(mut entry) = entry else { return Ok(None) };
    let changed = async || match entry.summary_changed {
        Some(changed) => Ok::<bool, crate::error::Error>(changed),
        None => Ok(db::unread::summary_changed(pool, room_id.as_str(), after, upto).await?),
    };
    if full || changed().await? {
        entry.room.summary = Some(match known {
            Some(facts) => of_facts(facts),
            None => summary(pool, user, room_id).await?,
        });
    }
    Ok(Some(entry))
}
