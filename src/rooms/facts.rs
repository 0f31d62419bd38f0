//! Room facts that never change once stored, read through the process's fact cache: a room's
//! version (fixed at creation) and what a state snapshot says about history visibility
//! and a user's membership there (snapshots are immutable). Every `/sync` needs them for each
//! room with news; in a busy room thousands of syncs ask the same question of one snapshot.

use crate::cache::FactCache;
use crate::db;
use crate::db::state::StateEntry;
use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use crate::store::Store;
use ruma::events::room::history_visibility::HistoryVisibility;
use ruma::events::room::member::MembershipState;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::Value;

/// The room facts a store has read, kept in the store (see [`Store::cache`]).
struct RoomFacts {
    versions: FactCache<String, RoomVersionId>,
    history_visibility: FactCache<i64, HistoryVisibility>,
    /// Whole member events (JSON included, about 1 KB each): fewer of them.
    member_events: FactCache<(i64, String), Option<StateEntry>>,
    memberships: FactCache<(i64, OwnedUserId), Option<MembershipState>>,
}

impl Default for RoomFacts {
    fn default() -> RoomFacts {
        RoomFacts {
            versions: FactCache::new(100_000),
            history_visibility: FactCache::new(100_000),
            member_events: FactCache::new(20_000),
            memberships: FactCache::new(200_000),
        }
    }
}

/// The room's version, `None` for a room whose events this server does not have (yet).
pub(crate) async fn version(pool: &Store, room_id: &RoomId) -> Result<Option<RoomVersionId>> {
    let facts = pool.cache::<RoomFacts>();
    if let Some(version) = facts.versions.get(&room_id.to_string()) {
        return Ok(Some(version));
    }
    let Some(stored) = db::rooms::version(pool, room_id.as_str()).await? else { return Ok(None) };
    let version =
        RoomVersionId::try_from(stored.as_str()).map_err(|e| Error::internal(format!("stored room version: {e}")))?;
    facts.versions.insert(room_id.to_string(), version.clone());
    Ok(Some(version))
}

/// Learns, in one statement, the versions of those of `room_ids` not known yet (an initial
/// sync asks for every room's).
pub(crate) async fn learn_versions(pool: &Store, room_ids: &[String]) -> Result<()> {
    let facts = pool.cache::<RoomFacts>();
    let unknown: Vec<String> = room_ids.iter().filter(|room| facts.versions.get(*room).is_none()).cloned().collect();
    if unknown.is_empty() {
        return Ok(());
    }
    for (room_id, stored) in db::rooms::versions_of(pool, &unknown).await? {
        // A version this build cannot read is left to `version`, which says so.
        if let Ok(version) = RoomVersionId::try_from(stored.as_str()) {
            facts.versions.insert(room_id, version);
        }
    }
    Ok(())
}

/// The room version's rules; 404 `M_NOT_FOUND` for a room this server does not have.
pub(crate) async fn rules(pool: &Store, room_id: &RoomId) -> Result<RoomVersionRules> {
    let version = version(pool, room_id).await?.ok_or_else(|| Error::not_found(format!("Unknown room {room_id}")))?;
    crate::rooms::rules_for(&version)
}

/// The `m.room.history_visibility` setting in a state snapshot (`shared` when unset).
pub(crate) async fn history_visibility(pool: &Store, snapshot: i64) -> Result<HistoryVisibility> {
    let read = async {
        let content = snapshot_content(pool, snapshot, "m.room.history_visibility", "").await?;
        Ok::<_, Error>(
            content
                .as_ref()
                .and_then(|content| content["history_visibility"].as_str())
                .map_or(HistoryVisibility::Shared, HistoryVisibility::from),
        )
    };
    pool.cache::<RoomFacts>().history_visibility.get_or_read(&snapshot, read).await
}

/// The user's membership in a state snapshot, if any.
pub(crate) async fn membership_at(pool: &Store, snapshot: i64, user: &UserId) -> Result<Option<MembershipState>> {
    let read = async {
        let content = snapshot_content(pool, snapshot, "m.room.member", user.as_str()).await?;
        Ok::<_, Error>(content.as_ref().and_then(|content| content["membership"].as_str()).map(MembershipState::from))
    };
    pool.cache::<RoomFacts>().memberships.get_or_read(&(snapshot, user.to_owned()), read).await
}

/// Learns, in one statement, the history visibility of each of `snapshots` and the user's
/// membership there, where either is not known yet: what serving a timeline asks of each
/// event's snapshot (an initial sync asks it of every room's newest events).
pub(crate) async fn learn_snapshots(pool: &Store, user: &UserId, snapshots: &[i64]) -> Result<()> {
    let facts = pool.cache::<RoomFacts>();
    let unknown: Vec<i64> = snapshots
        .iter()
        .copied()
        .filter(|snapshot| {
            facts.history_visibility.get(snapshot).is_none()
                || facts.memberships.get(&(*snapshot, user.to_owned())).is_none()
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let keys = [("m.room.history_visibility", ""), ("m.room.member", user.as_str())];
    let mut visibilities = std::collections::HashMap::new();
    let mut memberships = std::collections::HashMap::new();
    for row in db::initial_reads::keyed_states_of(pool, &unknown, &keys).await? {
        let content = Pdu::from_stored(&row.entry.event_id, &row.entry.json)?.content_value();
        // The same readings as `history_visibility` and `membership_at` make of one snapshot.
        if row.entry.event_type == "m.room.history_visibility" {
            if let Some(visibility) = content["history_visibility"].as_str() {
                visibilities.insert(row.origin, HistoryVisibility::from(visibility));
            }
        } else if let Some(membership) = content["membership"].as_str() {
            memberships.insert(row.origin, MembershipState::from(membership));
        }
    }
    for snapshot in unknown {
        let visibility = visibilities.remove(&snapshot).unwrap_or(HistoryVisibility::Shared);
        facts.history_visibility.insert(snapshot, visibility);
        facts.memberships.insert((snapshot, user.to_owned()), memberships.remove(&snapshot));
    }
    Ok(())
}

/// The content of one state event of a snapshot.
async fn snapshot_content(pool: &Store, snapshot: i64, event_type: &str, state_key: &str) -> Result<Option<Value>> {
    let keys = [(event_type.to_owned(), state_key.to_owned())];
    match db::state::snapshot_state_for_keys(pool, snapshot, &keys).await?.first() {
        Some(entry) => Ok(Some(Pdu::from_stored(&entry.event_id, &entry.json)?.content_value())),
        None => Ok(None),
    }
}

/// The member events of `users` in a state snapshot (those who have one): what lazy-loading
/// sync sends for a timeline's senders again and again.
pub(crate) async fn member_events_at(pool: &Store, snapshot: i64, users: &[String]) -> Result<Vec<StateEntry>> {
    let facts = pool.cache::<RoomFacts>();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for user in users {
        match facts.member_events.get(&(snapshot, user.clone())) {
            Some(known) => found.extend(known),
            None => missing.push(("m.room.member".to_owned(), user.clone())),
        }
    }
    if missing.is_empty() {
        return Ok(found);
    }
    if let [(_, user)] = missing.as_slice() {
        // One member missing: the sender of a message the woken syncs of a room all show,
        // read once for all of them.
        let read = async {
            let entries = db::state::snapshot_state_for_keys(pool, snapshot, &missing).await?;
            Ok::<_, Error>(entries.into_iter().find(|entry| entry.state_key == *user))
        };
        found.extend(facts.member_events.get_or_read(&(snapshot, user.clone()), read).await?);
        return Ok(found);
    }
    let mut read: std::collections::HashMap<String, StateEntry> =
        db::state::snapshot_state_for_keys(pool, snapshot, &missing)
            .await?
            .into_iter()
            .map(|entry| (entry.state_key.clone(), entry))
            .collect();
    for (_, user) in missing {
        let entry = read.remove(&user);
        facts.member_events.insert((snapshot, user), entry.clone());
        found.extend(entry);
    }
    Ok(found)
}
