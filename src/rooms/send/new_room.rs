//! A new room's first events, built and authorised in memory and stored in one write.
//!
//! Nobody can see a room before its creation commits, and its creator's events form a single
//! chain from the create event: each event's parent, auth events and the state before it are
//! all among the events built before it. So there is nothing to read back between events —
//! the state is kept here as it grows — and every row of the chain (events, edges, one state
//! snapshot per state event, current state, memberships) is written in a few statements
//! whatever its length, instead of some ten per event through [`super::Appender`]. The rows
//! are the same as the appender would write, so readers and federation cannot tell the two
//! apart.

use crate::db;
use crate::db::events::NewEvent;
use crate::db::new_room::{ChainEvent, ChainMembership, ChainSnapshot, NewRoomChain};
use crate::db::state::MAX_CHAIN_LENGTH;
use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::rooms::build::{EventTemplate, Placement, build_and_sign};
use crate::rooms::pdu::Pdu;
use crate::rooms::send::auth_state::AuthState;
use crate::rooms::send::locks::HeldRoomLock;
use crate::rooms::send::persist::RowPlacement;
use crate::rooms::send::{Appended, Stored, Transaction};
use crate::streams::Reservation;
use ruma::events::TimelineEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, UserId};
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashMap};

/// The events of a room being created, in order, with the state after the last one.
pub struct NewRoomEvents<'a> {
    ctx: RoomCtx<'a>,
    room: HeldRoomLock,
    rules: RoomVersionRules,
    /// As the auth rules see it (nothing in a new room is redacted).
    state: HashMap<(String, String), Pdu>,
    events: Vec<Pdu>,
    /// The event sent with a client transaction id, and that id `(device, txn)`.
    transaction: Option<(usize, String, String)>,
}

impl<'a> NewRoomEvents<'a> {
    /// Starts the chain of the room `room` locks with its signed create event.
    pub fn new(ctx: RoomCtx<'a>, room: HeldRoomLock, rules: RoomVersionRules, create: Pdu) -> NewRoomEvents<'a> {
        let mut state = HashMap::new();
        state.insert((create.kind.to_string(), String::new()), create.clone());
        NewRoomEvents { ctx, room, rules, state, events: vec![create], transaction: None }
    }

    /// Builds, signs and authorises the next event, as [`super::Appender::append`] would.
    pub fn add(
        &mut self,
        sender: &UserId,
        template: EventTemplate,
        transaction: Option<Transaction<'_>>,
    ) -> Result<&EventId> {
        let auth_state = AuthState::from_state(&self.state, &template, sender, &self.rules)?;
        if let (Some(action), Some(target)) = (template.membership_action, &template.state_key) {
            action.check(auth_state.state_event("m.room.member", target))?;
        }
        let last = self.events.last().ok_or_else(|| Error::internal("a new room without its create event"))?;
        let prev_events = [last.event_id.clone()];
        let placement = Placement {
            room_id: Some(self.room.room_id()),
            prev_events: &prev_events,
            auth_events: &auth_state.auth_event_ids,
            depth: u64::from(last.depth) + 1,
        };
        let pdu = build_and_sign(&template, sender, &placement, &self.rules, self.ctx.server_name, self.ctx.key)?;
        auth_state.authorize(&pdu, &self.rules)?;
        if pdu.kind == TimelineEventType::RoomRedaction {
            // Redactions need the checks of `redaction_auth`, against stored events.
            return Err(Error::internal("a redaction among a new room's first events"));
        }
        if let Some(transaction) = transaction {
            if self.transaction.is_some() {
                return Err(Error::internal("two transaction ids among a new room's first events"));
            }
            let txn = (self.events.len(), transaction.device_id.to_owned(), transaction.txn_id.to_owned());
            self.transaction = Some(txn);
        }
        if let Some(state_key) = &pdu.state_key {
            self.state.insert((pdu.kind.to_string(), state_key.clone()), pdu.clone());
        }
        self.events.push(pdu);
        let added = self.events.last().ok_or_else(|| Error::internal("the event just added"))?;
        Ok(&added.event_id)
    }

    /// Stores the chain in `conn` (the transaction the room was locked in), with positions from
    /// `reservation`; what was appended, for [`super::committed::commit_events`], with the
    /// room's lock (held until that transaction ends).
    pub async fn persist(
        self,
        conn: &mut PgConnection,
        reservation: &mut Reservation<'_>,
    ) -> Result<(HeldRoomLock, Vec<Appended>)> {
        let mut rooms = persist_all(vec![self], conn, reservation).await?;
        rooms.pop().ok_or_else(|| Error::internal("a persisted room went missing"))
    }
}

/// One room's chain as text, as its rows take it.
struct ChainText {
    kinds: Vec<String>,
    ids: Vec<String>,
    json: Vec<String>,
    memberships: Vec<Option<String>>,
}

impl ChainText {
    fn of(events: &[Pdu]) -> ChainText {
        ChainText {
            kinds: events.iter().map(|pdu| pdu.kind.to_string()).collect(),
            ids: events.iter().map(|pdu| pdu.event_id.to_string()).collect(),
            json: events.iter().map(Pdu::canonical_json).collect(),
            memberships: events
                .iter()
                .map(|pdu| {
                    (pdu.kind == TimelineEventType::RoomMember)
                        .then(|| pdu.content_value()["membership"].as_str().unwrap_or("leave").to_owned())
                })
                .collect(),
        }
    }
}

/// Stores the chains of new rooms, each locked in `conn` (the transaction they were locked
/// in), with positions from `reservation`, in a handful of statements whatever their number;
/// what was appended to each room, with its lock, in the order of `rooms`.
pub async fn persist_all(
    rooms: Vec<NewRoomEvents<'_>>,
    conn: &mut PgConnection,
    reservation: &mut Reservation<'_>,
) -> Result<Vec<(HeldRoomLock, Vec<Appended>)>> {
    for room in &rooms {
        for pdu in &room.events {
            crate::rooms::relations::check_new(&mut *conn, room.room.room_id(), pdu).await?;
        }
    }
    let texts: Vec<ChainText> = rooms.iter().map(|room| ChainText::of(&room.events)).collect();
    let mut keys: Vec<(String, String)> = Vec::new();
    let mut key_index: HashMap<(&str, &str), usize> = HashMap::new();
    for (room, text) in rooms.iter().zip(&texts) {
        for (pdu, kind) in room.events.iter().zip(&text.kinds) {
            if let Some(state_key) = &pdu.state_key
                && !key_index.contains_key(&(kind.as_str(), state_key.as_str()))
            {
                key_index.insert((kind.as_str(), state_key.as_str()), keys.len());
                keys.push((kind.clone(), state_key.clone()));
            }
        }
    }
    let key_nids = db::new_room::intern_state_keys(&mut *conn, &keys).await?;
    let key_nid =
        |kind: &str, state_key: &str| key_index.get(&(kind, state_key)).and_then(|index| key_nids.get(*index)).copied();
    let event_count: usize = rooms.iter().map(|room| room.events.len()).sum();
    let state_events: usize =
        rooms.iter().map(|room| room.events.iter().filter(|pdu| pdu.state_key.is_some()).count()).sum();
    let positions = reservation.next_many(&mut *conn, event_count).await?;
    // One snapshot per state event, and each room's empty one before its create event.
    let snapshot_count = state_events + rooms.len();
    let snapshot_ids = db::new_room::allocate_snapshot_ids(&mut *conn, snapshot_count as i64).await?;
    if positions.len() != event_count || snapshot_ids.len() != snapshot_count {
        return Err(Error::internal("fewer positions or snapshot ids than asked for"));
    }

    let mut chains = Vec::with_capacity(rooms.len());
    let mut state_afters = Vec::with_capacity(rooms.len());
    let (mut positions_left, mut snapshots_left) = (positions.as_slice(), snapshot_ids.as_slice());
    for (room, text) in rooms.iter().zip(&texts) {
        let state_count = room.events.iter().filter(|pdu| pdu.state_key.is_some()).count();
        let (room_positions, rest) = positions_left.split_at(room.events.len());
        positions_left = rest;
        let (room_snapshots, rest) = snapshots_left.split_at(state_count + 1);
        snapshots_left = rest;
        let (chain, afters) = chain_rows(room, text, &key_nid, room_positions, room_snapshots)?;
        chains.push(chain);
        state_afters.push(afters);
    }
    let (nids, auth_stored) = db::new_room::insert_chains(&mut *conn, &chains).await?;
    // Every auth event is in its chain; an edge lost here would break the auth chains that
    // federation serves.
    let auth_edges: usize = chains.iter().map(|chain| chain.auth_edges.len()).sum();
    if usize::try_from(auth_stored).ok() != Some(auth_edges) {
        return Err(Error::internal(format!("{auth_stored} of {auth_edges} auth edges of new rooms are stored")));
    }
    drop(chains);
    let nids: HashMap<String, i64> = nids.into_iter().collect();

    let mut persisted = Vec::with_capacity(rooms.len());
    let mut positions_left = positions.as_slice();
    for ((room, text), afters) in rooms.into_iter().zip(&texts).zip(state_afters) {
        let room_id = room.room.room_id().to_owned();
        let (room_positions, rest) = positions_left.split_at(room.events.len());
        positions_left = rest;
        let mut appended = Vec::with_capacity(room.events.len());
        for (index, pdu) in room.events.into_iter().enumerate() {
            let event_nid =
                *nids.get(&text.ids[index]).ok_or_else(|| Error::internal("a new room's event was not stored"))?;
            crate::rooms::relations::record(&mut *conn, &room_id, &pdu, event_nid).await?;
            let stored = Stored { event_nid, state_after: afters[index], position: room_positions[index] };
            appended.push(Appended::New { pdu: Box::new(pdu), stored });
        }
        persisted.push((room.room, appended));
    }
    Ok(persisted)
}

/// One room's rows, given its events' positions and its snapshot ids (ascending, one more than
/// its state events); and the state after each event.
fn chain_rows<'c>(
    room: &'c NewRoomEvents<'_>,
    text: &'c ChainText,
    key_nid: &impl Fn(&str, &str) -> Option<i64>,
    positions: &[i64],
    snapshot_ids: &[i64],
) -> Result<(NewRoomChain<'c>, Vec<i64>)> {
    let room_id = room.room.room_id().as_str();
    let events = &room.events;
    let empty = *snapshot_ids.first().ok_or_else(|| Error::internal("a new room without snapshot ids"))?;
    // Walk the chain: the state before each event is the snapshot after the last state
    // event, from the empty one before the create event.
    let mut snapshots =
        vec![ChainSnapshot { snapshot_id: empty, parent_id: None, chain_length: 0, entries: Vec::new() }];
    let mut state: Vec<(i64, &str)> = Vec::new();
    let mut chain_events = Vec::with_capacity(events.len());
    let mut state_afters = Vec::with_capacity(events.len());
    let mut members: BTreeMap<&str, ChainMembership<'_>> = BTreeMap::new();
    let (mut prev_edges, mut auth_edges) = (Vec::new(), Vec::new());
    for (index, pdu) in events.iter().enumerate() {
        let event_id = text.ids[index].as_str();
        let position = positions[index];
        let state_before = snapshots.last().map_or(empty, |snapshot| snapshot.snapshot_id);
        let mut state_key_nid = None;
        if let Some(state_key) = &pdu.state_key {
            let nid =
                key_nid(&text.kinds[index], state_key).ok_or_else(|| Error::internal("an uninterned state key"))?;
            state_key_nid = Some(nid);
            match state.iter_mut().find(|(key, _)| *key == nid) {
                Some(entry) => entry.1 = event_id,
                None => state.push((nid, event_id)),
            }
            let parent = snapshots.last().map(|snapshot| (snapshot.snapshot_id, snapshot.chain_length));
            let snapshot_id =
                *snapshot_ids.get(snapshots.len()).ok_or_else(|| Error::internal("too few snapshot ids"))?;
            // As `db::state::create_snapshot`: a delta while the chain is short, else whole.
            let snapshot = match parent {
                Some((parent, length)) if length < MAX_CHAIN_LENGTH => ChainSnapshot {
                    snapshot_id,
                    parent_id: Some(parent),
                    chain_length: length + 1,
                    entries: vec![(nid, event_id)],
                },
                _ => ChainSnapshot { snapshot_id, parent_id: None, chain_length: 0, entries: state.clone() },
            };
            snapshots.push(snapshot);
            if let (Some(membership), Ok(user)) = (&text.memberships[index], <&UserId>::try_from(state_key.as_str())) {
                let joined = (membership == "join").then_some(position);
                let earlier_join = members.get(user.as_str()).and_then(|member| member.joined_position);
                members.insert(
                    user.as_str(),
                    ChainMembership {
                        user_id: user.as_str(),
                        membership,
                        event_id,
                        stream_position: position,
                        joined_position: joined.or(earlier_join),
                    },
                );
            }
        }
        let state_after = snapshots.last().map_or(state_before, |snapshot| snapshot.snapshot_id);
        state_afters.push(state_after);
        prev_edges.extend(pdu.prev_events.iter().map(|prev| (event_id, prev.as_str())));
        auth_edges.extend(pdu.auth_events.iter().map(|auth| (event_id, auth.as_str())));
        let placed = RowPlacement { state_key_nid, stream_position: position, state_before, state_after };
        chain_events.push(ChainEvent {
            event_id,
            event: NewEvent::of(pdu, room_id, &text.kinds[index], &text.json[index], placed),
        });
    }
    let transaction = room.transaction.as_ref().map(|(index, device_id, txn_id)| {
        let key = db::rooms::TxnKey {
            user_id: events[*index].sender.as_str(),
            device_id,
            room_id,
            event_type: &text.kinds[*index],
            txn_id,
        };
        (key, text.ids[*index].as_str())
    });
    let chain = NewRoomChain {
        room_id,
        events: chain_events,
        prev_edges,
        auth_edges,
        snapshots,
        current_state: state,
        memberships: members.into_values().collect(),
        extremity: text.ids.last().map_or("", String::as_str),
        transaction,
    };
    Ok((chain, state_afters))
}
