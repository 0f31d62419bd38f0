//! Storing a room this server joins through another server: the checked state and auth chain
//! as outliers (the inbound pipeline's one outlier writer: in auth order, each judged against
//! its auth events), the accepted state as a snapshot, then our join — which must pass against
//! that state — as the room's first timeline event with that state before it, committed through
//! the same path as every event, so `/sync` shows the joined room with its state.

use crate::db;
use crate::error::{Error, Result};
use crate::federation::inbound::store_outliers;
use crate::federation::membership::remote_state::CheckedRoomState;
use crate::rooms::pdu::Pdu;
use crate::rooms::send::committed::commit_events;
use crate::rooms::send::{Appended, AuthState, persist};
use crate::rooms::{RoomCtx, rules_for};
use crate::time::now_ms;
use ruma::events::TimelineEventType;
use ruma::{EventId, RoomId, RoomVersionId};
use std::collections::{HashMap, HashSet};

/// Stores `room_id` as `checked` describes it, and `join` on top; with `partial` (the servers
/// in the room, the resident first), the state lacks member events and the room is recorded
/// as partial in the same transaction.
pub(super) async fn store_joined_room(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    room_version: &RoomVersionId,
    checked: &CheckedRoomState,
    join: &Pdu,
    partial: Option<&[String]>,
) -> Result<()> {
    let mut tx = ctx.pool.begin().await?;
    let held = ctx.locks.lock_in(&mut tx, room_id).await?;
    if let Some(known) = db::rooms::version(&mut *tx, room_id.as_str()).await?
        && known != room_version.as_str()
    {
        return Err(Error::bad_gateway(format!("Room {room_id} is version {known} here, not {room_version}")));
    }
    db::rooms::insert(&mut tx, room_id.as_str(), room_version.as_str(), checked.create.sender.as_str(), now_ms())
        .await?;
    let rules = rules_for(room_version)?;
    let outliers = store_outliers(&mut tx, room_id, &rules, checked.events.clone()).await?;
    if outliers.nid_of(checked.create.event_id.as_str()).is_none() {
        return Err(Error::bad_gateway("The room's create event fails the auth rules"));
    }
    // The state: the accepted state events, the first of each `(type, state_key)` sent.
    let accepted: HashMap<&EventId, (&Pdu, i64)> =
        outliers.accepted.iter().map(|(pdu, nid)| (&*pdu.event_id, (pdu, *nid))).collect();
    let mut seen = HashSet::new();
    let state: Vec<(&Pdu, i64)> = checked
        .state
        .iter()
        .filter_map(|id| accepted.get(&**id).copied())
        .filter(|(pdu, _)| seen.insert((pdu.kind.to_string(), pdu.state_key.clone())))
        .collect();
    // The resident server accepted the join; it must also pass against the state it sent.
    AuthState::from_auth_events(state.iter().map(|(pdu, _)| (*pdu).clone()).collect()).authorize(join, &rules)?;
    let mut entries = Vec::with_capacity(state.len());
    let mut members = Vec::new();
    for (pdu, event_nid) in state {
        let Some(state_key) = &pdu.state_key else { continue };
        let state_key_nid = db::state::intern_state_key(&mut tx, &pdu.kind.to_string(), state_key).await?;
        entries.push((state_key_nid, event_nid));
        if pdu.kind == TimelineEventType::RoomMember {
            let membership = pdu.content_value()["membership"].as_str().unwrap_or("leave").to_owned();
            members.push((state_key.clone(), membership, event_nid));
        }
    }
    let state_before = db::state::create_snapshot(&mut tx, room_id.as_str(), None, &entries).await?;
    // Joined again after leaving: what this server held of the room stopped at its leave. The
    // resident server's state and tips replace it, or the room would fork here between the
    // old tips and the join (and the next local event would cite both).
    db::events::clear_forward_extremities(&mut tx, room_id.as_str()).await?;
    db::state::clear_current_state(&mut tx, room_id.as_str()).await?;
    for (state_key_nid, event_nid) in &entries {
        db::state::set_current_state(&mut tx, room_id.as_str(), *state_key_nid, *event_nid).await?;
    }

    let mut reservation = ctx.streams.reserve();
    // The join's parents are the resident server's latest events, which we do not have: their
    // ids are interned so the edges (and later backfill) can point at them.
    let prev_ids: Vec<String> = join.prev_events.iter().map(ToString::to_string).collect();
    let prev_nids = db::events::intern_event_ids(&mut tx, &prev_ids).await?;
    let stored = persist(&mut tx, &held, &mut reservation, join, state_before, &prev_nids, None).await?;
    for (user, membership, event_nid) in members.iter().filter(|(user, ..)| user != join.sender.as_str()) {
        db::rooms::set_membership(&mut tx, room_id.as_str(), user, membership, *event_nid, stored.position).await?;
    }
    if let Some(servers) = partial {
        db::partial_state::insert(&mut tx, room_id.as_str(), join.event_id.as_str(), servers, now_ms()).await?;
    }
    let appended = Appended::New { pdu: Box::new(join.clone()), stored };
    commit_events(ctx, tx, reservation, room_id, [&appended]).await
}
