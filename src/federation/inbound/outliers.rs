//! Events fetched from another server whose place in the room's timeline is not known — the
//! state and auth chain a `send_join` answers with, or an event's auth events — stored as
//! outliers: checked against their own auth events, kept for the DAG, never served to clients.

use crate::db;
use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::federation::inbound::check::CheckedPdu;
use crate::rooms::pdu::Pdu;
use crate::rooms::send::AuthState;
use crate::rooms::{rules_for, served};
use ruma::{OwnedEventId, RoomId};
use std::collections::{HashMap, HashSet};

/// Stores `pdus` (checked already, all of `room_id`) as outliers, each only when its auth
/// events (stored before, or among `pdus`) allow it. Returns the ids of those stored (or
/// stored before); the others are refused and left out.
pub async fn store_outliers(ctx: FedCtx<'_>, room_id: &RoomId, pdus: Vec<CheckedPdu>) -> Result<Vec<OwnedEventId>> {
    let mut pending: Vec<CheckedPdu> = Vec::with_capacity(pdus.len());
    for checked in pdus {
        let in_room = checked.pdu.room_id.as_deref().map_or_else(
            // A v12 create event carries no room id: its id is the room's.
            || room_id.as_str()[1..] == checked.pdu.event_id.as_str()[1..],
            |own| own == room_id,
        );
        if !in_room {
            return Err(Error::bad_json(format!("{} is not an event of {room_id}", checked.pdu.event_id)));
        }
        pending.push(checked);
    }
    let Some(first) = pending.first() else { return Ok(Vec::new()) };
    let rules = rules_for(&first.room_version)?;
    let mut tx = ctx.rooms.pool.begin().await?;
    // Those authorised so far (stored before or now), as the auth rules see them.
    let mut authorised: HashMap<OwnedEventId, Pdu> = HashMap::new();
    let all_auth: Vec<String> = pending
        .iter()
        .flat_map(|c| c.pdu.auth_events.iter().map(ToString::to_string))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut known = Vec::new();
    for event in db::federation_inbound::known_events(&mut *tx, &all_auth).await?.into_iter().filter(|e| !e.rejected) {
        known.push((event.event_nid, Pdu::from_stored(&event.event_id, &event.json)?));
    }
    for served in served::apply(&mut *tx, &rules.redaction, known).await? {
        authorised.insert(served.pdu.event_id.clone(), served.pdu);
    }
    let create_id: Option<OwnedEventId> = rules
        .authorization
        .room_create_event_id_as_room_id
        .then(|| ruma::EventId::parse(format!("${}", &room_id.as_str()[1..])).ok())
        .flatten();

    // Auth events first: take whatever has all its auth events authorised, until nothing moves.
    let mut stored = Vec::new();
    loop {
        let (ready, rest): (Vec<CheckedPdu>, Vec<CheckedPdu>) =
            pending.into_iter().partition(|c| c.pdu.auth_events.iter().all(|id| authorised.contains_key(id)));
        pending = rest;
        if ready.is_empty() {
            break;
        }
        for checked in ready {
            let pdu = checked.pdu;
            let mut auth: Vec<Pdu> = pdu.auth_events.iter().filter_map(|id| authorised.get(id).cloned()).collect();
            if let Some(create) =
                create_id.as_ref().filter(|id| !pdu.auth_events.contains(id)).and_then(|id| authorised.get(id))
            {
                auth.push(create.clone());
            }
            if let Err(error) = AuthState::from_auth_events(auth).authorize(&pdu, &rules) {
                tracing::info!(event_id = %pdu.event_id, %error, "an outlier failed auth; not stored");
                continue;
            }
            store_unplaced(&mut tx, room_id, &pdu, Unplaced::Outlier).await?;
            stored.push(pdu.event_id.clone());
            authorised.insert(pdu.event_id.clone(), pdu);
        }
    }
    for left in &pending {
        tracing::info!(event_id = %left.pdu.event_id, "an outlier's auth events are unknown; not stored");
    }
    tx.commit().await?;
    Ok(stored)
}

/// How an event is stored beside the timeline.
pub(super) enum Unplaced {
    /// Its state is unknown.
    Outlier,
    /// Allowed by the state before it (known), not by the current state.
    SoftFailed { state_before: i64 },
}

/// Stores an event beside the timeline (no stream position, not a forward extremity), with
/// its edges and, for a soft-failed state event, the state after it (later events may name it
/// as a parent).
pub(super) async fn store_unplaced(
    conn: &mut sqlx::PgConnection,
    room_id: &RoomId,
    pdu: &Pdu,
    how: Unplaced,
) -> Result<()> {
    let kind = pdu.kind.to_string();
    let state_key_nid = match &pdu.state_key {
        Some(state_key) => Some(db::state::intern_state_key(conn, &kind, state_key).await?),
        None => None,
    };
    let state_before = match how {
        Unplaced::Outlier => None,
        Unplaced::SoftFailed { state_before } => Some(state_before),
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
        outlier: state_before.is_none(),
        soft_failed: state_before.is_some(),
        state_before,
        state_after: state_before,
        json: &json,
        prev_event_ids: &prev_ids,
        auth_event_ids: &auth_ids,
    };
    let event_nid = db::federation_inbound::insert_unplaced(conn, &row).await?;
    if let (Some(state_before), Some(state_key_nid)) = (state_before, state_key_nid) {
        let after =
            db::state::create_snapshot(conn, room_id.as_str(), Some(state_before), &[(state_key_nid, event_nid)])
                .await?;
        db::events::set_state_after(conn, event_nid, after).await?;
    }
    Ok(())
}
