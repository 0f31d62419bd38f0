//! Storing an authorised event: everything about it that readers and federation query, in
//! the transaction that holds the room's lock.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use crate::rooms::send::locks::HeldRoomLock;
use crate::streams::Reservation;
use ruma::events::TimelineEventType;
use sqlx::PgConnection;

/// Where [`persist`] put an event.
#[derive(Clone, Copy, Debug)]
pub struct Stored {
    pub event_nid: i64,
    pub state_after: i64,
    pub position: i64,
}

/// Where an event goes among the room's events and states: what its row holds beyond the PDU.
#[derive(Clone, Copy, Debug)]
pub struct RowPlacement {
    pub state_key_nid: Option<i64>,
    pub stream_position: i64,
    pub state_before: i64,
    pub state_after: i64,
}

impl<'a> db::events::NewEvent<'a> {
    /// The row of `pdu` in `room_id`, given its type as text (`kind`) and its canonical JSON.
    pub fn of(pdu: &'a Pdu, room_id: &'a str, kind: &'a str, json: &'a str, placed: RowPlacement) -> Self {
        db::events::NewEvent {
            room_id,
            event_type: kind,
            state_key_nid: placed.state_key_nid,
            sender: pdu.sender.as_str(),
            origin_server_ts: i64::from(pdu.origin_server_ts.get()),
            // A depth is a canonical JSON integer (below 2^53): this never saturates.
            depth: i64::try_from(u64::from(pdu.depth)).unwrap_or(i64::MAX),
            stream_position: placed.stream_position,
            state_before: placed.state_before,
            state_after: placed.state_after,
            json,
        }
    }
}

/// Stores an authorised event: interned id, the event row, its edges, the state after it,
/// current state and membership, the room's new forward extremity, and the client
/// transaction id of a send. `conn` is the transaction `room` was locked in.
pub async fn persist(
    conn: &mut PgConnection,
    room: &HeldRoomLock,
    reservation: &mut Reservation<'_>,
    pdu: &Pdu,
    state_before: i64,
    prev_nids: &[i64],
    transaction: Option<db::rooms::TxnKey<'_>>,
) -> Result<Stored> {
    let position = reservation.next(conn).await?;
    match persist_checked(conn, room, position, pdu, (state_before, prev_nids), None, transaction).await? {
        Checked::Stored(stored) => Ok(stored),
        Checked::SentBefore(event_id) => Err(Error::internal(format!("transaction id already used for {event_id}"))),
        Checked::TipMoved => Err(Error::internal("the room's tip moved unasked")),
    }
}

/// What [`persist_checked`] did.
pub(super) enum Checked {
    Stored(Stored),
    /// Nothing stored: the room's forward extremities are not the ones the event was built on.
    TipMoved,
    /// Nothing stored: the client transaction id was used before, for this event.
    SentBefore(String),
}

/// As [`persist`], at `position` (taken by the caller from its reservation), and only if the
/// room's forward extremities are still `tip` (sorted numbers; `None`: not checked) and the
/// client transaction id is unused: both are checked in the statement that stores the event,
/// and when either fails nothing is written.
pub(super) async fn persist_checked(
    conn: &mut PgConnection,
    room: &HeldRoomLock,
    position: i64,
    pdu: &Pdu,
    (state_before, prev_nids): (i64, &[i64]),
    tip: Option<&[i64]>,
    transaction: Option<db::rooms::TxnKey<'_>>,
) -> Result<Checked> {
    let room_id = room.room_id();
    let kind = pdu.kind.to_string();
    let state_key_nid = match &pdu.state_key {
        Some(state_key) => Some(db::state::intern_state_key(conn, &kind, state_key).await?),
        None => None,
    };
    let json = pdu.canonical_json();
    let auth_ids: Vec<String> = pdu.auth_events.iter().map(ToString::to_string).collect();
    let placed = RowPlacement { state_key_nid, stream_position: position, state_before, state_after: state_before };
    let event = db::events::NewEvent::of(pdu, room_id.as_str(), &kind, &json, placed);
    let inserted =
        db::events::insert_with_edges(conn, &event, pdu.event_id.as_str(), prev_nids, &auth_ids, tip, transaction)
            .await?;
    let (event_nid, auth_found) = match inserted {
        db::events::Inserted::Stored { event_nid, auth_found } => (event_nid, auth_found),
        db::events::Inserted::TipMoved => return Ok(Checked::TipMoved),
        db::events::Inserted::SentBefore(event_id) => return Ok(Checked::SentBefore(event_id)),
    };
    // Auth events are always stored before an event cites them; an edge lost here would
    // break the auth chains that federation serves.
    if usize::try_from(auth_found).ok() != Some(auth_ids.len()) {
        return Err(Error::internal(format!("{}: {auth_found} of its auth events are stored", pdu.event_id)));
    }
    place_in_state(conn, room, pdu, event_nid, state_key_nid, state_before, position).await.map(Checked::Stored)
}

/// Moves an event held as an outlier (stored beside the timeline, its state unknown then) into
/// the timeline, now that it is authorised against the state before it: it takes a stream
/// position and becomes a forward extremity in place of its parents, exactly as [`persist`]
/// would have stored it. Its row and edges exist already. `None` when it is no longer an
/// outlier (placed meanwhile).
pub async fn persist_outlier(
    conn: &mut PgConnection,
    room: &HeldRoomLock,
    reservation: &mut Reservation<'_>,
    pdu: &Pdu,
    event_nid: i64,
    state_before: i64,
    prev_nids: &[i64],
) -> Result<Option<Stored>> {
    let position = reservation.next(conn).await?;
    let room_id = room.room_id();
    if !db::events::place_outlier(conn, room_id.as_str(), event_nid, position, state_before, prev_nids).await? {
        return Ok(None);
    }
    let state_key_nid = match &pdu.state_key {
        Some(state_key) => Some(db::state::intern_state_key(conn, &pdu.kind.to_string(), state_key).await?),
        None => None,
    };
    place_in_state(conn, room, pdu, event_nid, state_key_nid, state_before, position).await.map(Some)
}

/// What storing an event in the timeline does beyond its row: relations, the state after it,
/// current state and membership.
async fn place_in_state(
    conn: &mut PgConnection,
    room: &HeldRoomLock,
    pdu: &Pdu,
    event_nid: i64,
    state_key_nid: Option<i64>,
    state_before: i64,
    position: i64,
) -> Result<Stored> {
    let room_id = room.room_id();
    crate::rooms::relations::record(conn, room_id, pdu, event_nid).await?;
    let mut state_after = state_before;
    if let (Some(state_key_nid), Some(state_key)) = (state_key_nid, &pdu.state_key) {
        state_after =
            db::state::create_snapshot(conn, room_id.as_str(), Some(state_before), &[(state_key_nid, event_nid)])
                .await?;
        db::events::set_state_after(conn, event_nid, state_after).await?;
        db::state::set_current_state(conn, room_id.as_str(), state_key_nid, event_nid).await?;
        if pdu.kind == TimelineEventType::RoomMember {
            let membership = pdu.content_value()["membership"].as_str().unwrap_or("leave").to_owned();
            db::rooms::set_membership(conn, room_id.as_str(), state_key, &membership, event_nid, position).await?;
        }
    }
    Ok(Stored { event_nid, state_after, position })
}
