//! Putting a partial room's full state in place, in one transaction under the room's lock:
//! the state before our join becomes what its servers said (all of it stored by now), and the
//! join and every timeline event after it are placed again on that state in stream order —
//! each one's state before resolved over its parents' new states and checked against it (the
//! spec's re-check: an event that fails is marked rejected, changes no state and authorises
//! nothing, though clients saw it), its state after derived from that. The current state and
//! membership then become the resolution of the room's tips, and the partial flag is cleared.

use crate::db;
use crate::db::partial_state::PartialStateRoom;
use crate::error::{Error, Result};
use crate::federation::inbound::accept::state_of;
use crate::rooms::current_state::adopt_snapshot;
use crate::rooms::pdu::Pdu;
use crate::rooms::send::AuthState;
use crate::rooms::{RoomCtx, rules_for};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedEventId, OwnedRoomId, RoomId, RoomVersionId};
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};

/// Replaces the partial state of `room_id` by `state_before_join` (ids of stored events).
pub(super) async fn replace_state(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    room: &PartialStateRoom,
    version: &RoomVersionId,
    state_before_join: &[OwnedEventId],
) -> Result<()> {
    let rules = rules_for(version)?;
    let room_id: OwnedRoomId = room_id.to_owned();
    let mut tx = ctx.pool.begin().await?;
    let _held = ctx.locks.lock_in(&mut tx, &room_id).await?;
    let join = db::events::by_id(&mut *tx, &room.join_event_id)
        .await?
        .and_then(|join| join.stream_position)
        .ok_or_else(|| Error::internal(format!("the join {} is not in the timeline", room.join_event_id)))?;

    // The state before the join cannot hold the join (a server may answer the state after it).
    let ids: Vec<String> =
        state_before_join.iter().map(ToString::to_string).filter(|id| *id != room.join_event_id).collect();
    let mut keys = HashSet::new();
    let entries: Vec<(i64, i64)> = db::federation_inbound::state_entries_of(&mut *tx, &ids)
        .await?
        .into_iter()
        .filter(|entry| keys.insert(entry.state_key_nid))
        .map(|entry| (entry.state_key_nid, entry.event_nid))
        .collect();
    let full_before_join = db::state::create_snapshot(&mut tx, room_id.as_str(), None, &entries).await?;

    let placed = db::partial_state::timeline_from(&mut *tx, room_id.as_str(), join).await?;
    let mut state_after: HashMap<OwnedEventId, i64> = HashMap::with_capacity(placed.len());
    let mut rejected = 0;
    for event in placed {
        let pdu = Pdu::from_stored(&event.event_id, &event.json)?;
        let before = match pdu.event_id.as_str() == room.join_event_id {
            true => full_before_join,
            false => match state_before(&mut tx, &room_id, &rules, &pdu, &state_after).await? {
                Some(before) => before,
                // Placed on events outside the room's timeline here: left as it was.
                None => continue,
            },
        };
        let after = match AuthState::load_for_pdu(&mut tx, before, &pdu, &rules).await?.authorize_by_state(&pdu, &rules)
        {
            Ok(()) => state_with(&mut tx, &room_id, before, &pdu, event.event_nid).await?,
            Err(reason) => {
                tracing::warn!(%room_id, event_id = %pdu.event_id, %reason, "partial state: rejected on the full state");
                db::partial_state::reject(&mut tx, event.event_nid, &reason.to_string()).await?;
                rejected += 1;
                before
            }
        };
        db::partial_state::set_states(&mut tx, event.event_nid, before, after).await?;
        state_after.insert(pdu.event_id.clone(), after);
    }

    let tips = db::events::forward_extremities(&mut *tx, room_id.as_str()).await?;
    let current = state_of(&mut tx, &room_id, &rules, tips.iter().map(|tip| tip.state_after).collect()).await?;
    let mut reservation = ctx.streams.reserve();
    let position = reservation.next(&mut tx).await?;
    adopt_snapshot(&mut tx, &room_id, current, position).await?;
    if !db::partial_state::remove(&mut tx, room_id.as_str(), &room.join_event_id).await? {
        // Joined again (partially) meanwhile: that join's resync puts its state in place.
        return Ok(());
    }
    // Clients that left the room out of their syncs while it was partial get it whole now.
    db::partial_state::record_completion(&mut tx, room_id.as_str(), position).await?;
    tx.commit().await?;
    reservation.committed_for(vec![room_id.to_string()]).await?;
    tracing::info!(%room_id, state = entries.len(), rejected, "partial state: replaced by the full state");
    Ok(())
}

/// The state before `pdu`: its parents' states (as placed again, or as stored for parents
/// before the join) resolved; `None` when no parent has one.
async fn state_before(
    conn: &mut PgConnection,
    room_id: &OwnedRoomId,
    rules: &RoomVersionRules,
    pdu: &Pdu,
    placed_again: &HashMap<OwnedEventId, i64>,
) -> Result<Option<i64>> {
    let mut parents: Vec<i64> = pdu.prev_events.iter().filter_map(|id| placed_again.get(id).copied()).collect();
    let elsewhere: Vec<String> =
        pdu.prev_events.iter().filter(|id| !placed_again.contains_key(*id)).map(ToString::to_string).collect();
    if !elsewhere.is_empty() {
        let known = db::federation_inbound::known_events(&mut *conn, &elsewhere).await?;
        parents.extend(known.iter().filter_map(|parent| parent.state_after));
    }
    if parents.is_empty() {
        return Ok(None);
    }
    Ok(Some(state_of(conn, room_id, rules, parents).await?))
}

/// The state after the accepted `pdu` (stored as `event_nid`) on `before`.
async fn state_with(conn: &mut PgConnection, room_id: &RoomId, before: i64, pdu: &Pdu, event_nid: i64) -> Result<i64> {
    let Some(state_key) = &pdu.state_key else { return Ok(before) };
    let key_nid = db::state::intern_state_key(conn, &pdu.kind.to_string(), state_key).await?;
    Ok(db::state::create_snapshot(conn, room_id.as_str(), Some(before), &[(key_nid, event_nid)]).await?)
}
