//! Storing a room this server joins through another server: the checked state and auth chain
//! as outliers (in auth order, so every auth edge finds its event), the state as a snapshot,
//! then our join as the room's first timeline event with that state before it — committed
//! through the same path as every event, so `/sync` shows the joined room with its state.

use crate::db;
use crate::error::{Error, Result};
use crate::federation::membership::remote_state::CheckedRoomState;
use crate::rooms::RoomCtx;
use crate::rooms::pdu::Pdu;
use crate::rooms::send::committed::commit_events;
use crate::rooms::send::{Appended, persist};
use crate::time::now_ms;
use ruma::events::TimelineEventType;
use ruma::{RoomId, RoomVersionId};
use sqlx::PgConnection;
use std::collections::HashMap;

/// Stores `room_id` as `checked` describes it, and `join` on top.
pub async fn store_joined_room(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    room_version: &RoomVersionId,
    checked: &CheckedRoomState,
    join: &Pdu,
) -> Result<()> {
    let mut tx = ctx.pool.begin().await?;
    let held = ctx.locks.lock_in(&mut tx, room_id).await?;
    if let Some(known) = db::rooms::version(&mut *tx, room_id.as_str()).await?
        && known != room_version.as_str()
    {
        return Err(Error::bad_json(format!("Room {room_id} is version {known} here, not {room_version}")));
    }
    db::rooms::insert(&mut tx, room_id.as_str(), room_version.as_str(), checked.create.sender.as_str(), now_ms())
        .await?;
    let mut nids: HashMap<&str, i64> = HashMap::new();
    for pdu in &checked.in_auth_order {
        let event_nid = store_outlier(&mut tx, room_id, pdu).await?;
        nids.insert(pdu.event_id.as_str(), event_nid);
    }
    let mut entries = Vec::with_capacity(checked.state.len());
    let mut members = Vec::new();
    for pdu in checked.in_auth_order.iter().filter(|pdu| checked.state.contains(&pdu.event_id)) {
        let (Some(state_key), Some(&event_nid)) = (&pdu.state_key, nids.get(pdu.event_id.as_str())) else {
            continue;
        };
        let state_key_nid = db::state::intern_state_key(&mut tx, &pdu.kind.to_string(), state_key).await?;
        entries.push((state_key_nid, event_nid));
        if pdu.kind == TimelineEventType::RoomMember {
            let membership = pdu.content_value()["membership"].as_str().unwrap_or("leave").to_owned();
            members.push((state_key.clone(), membership, event_nid));
        }
    }
    let state_before = db::state::create_snapshot(&mut tx, room_id.as_str(), None, &entries).await?;
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
    let appended = Appended::New { pdu: Box::new(join.clone()), stored };
    commit_events(ctx, tx, reservation, room_id, [&appended]).await
}

/// Stores `pdu` beside the timeline: its state is unknown here.
pub(super) async fn store_outlier(conn: &mut PgConnection, room_id: &RoomId, pdu: &Pdu) -> Result<i64> {
    let kind = pdu.kind.to_string();
    let state_key_nid = match &pdu.state_key {
        Some(state_key) => Some(db::state::intern_state_key(conn, &kind, state_key).await?),
        None => None,
    };
    let json = pdu.canonical_json();
    let prev_ids: Vec<String> = pdu.prev_events.iter().map(ToString::to_string).collect();
    let auth_ids: Vec<String> = pdu.auth_events.iter().map(ToString::to_string).collect();
    let row = db::federation_inbound::UnplacedEvent {
        event_id: pdu.event_id.as_str(),
        room_id: room_id.as_str(),
        event_type: &kind,
        state_key_nid,
        sender: pdu.sender.as_str(),
        origin_server_ts: i64::from(pdu.origin_server_ts.get()),
        depth: i64::try_from(u64::from(pdu.depth)).unwrap_or(i64::MAX),
        outlier: true,
        soft_failed: false,
        state_before: None,
        state_after: None,
        json: &json,
        prev_event_ids: &prev_ids,
        auth_event_ids: &auth_ids,
    };
    Ok(db::federation_inbound::insert_unplaced(conn, &row).await?)
}
