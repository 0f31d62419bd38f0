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
use crate::db::new_room::{ChainEvent, ChainMembership, ChainSnapshot, NewRoomChain};
use crate::db::state::MAX_CHAIN_LENGTH;
use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::rooms::build::{EventTemplate, Placement, build_and_sign};
use crate::rooms::pdu::Pdu;
use crate::rooms::send::auth_state::AuthState;
use crate::rooms::send::locks::HeldRoomLock;
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
    room: &'a HeldRoomLock,
    rules: RoomVersionRules,
    /// As the auth rules see it (nothing in a new room is redacted).
    state: HashMap<(String, String), Pdu>,
    events: Vec<Pdu>,
    /// The event sent with a client transaction id, and that id `(device, txn)`.
    transaction: Option<(usize, String, String)>,
}

impl<'a> NewRoomEvents<'a> {
    /// Starts the chain of the room `room` locks with its signed create event.
    pub fn new(ctx: RoomCtx<'a>, room: &'a HeldRoomLock, rules: RoomVersionRules, create: Pdu) -> NewRoomEvents<'a> {
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
    /// `reservation`; what was appended, for [`super::committed::commit_events`].
    pub async fn persist(self, conn: &mut PgConnection, reservation: &mut Reservation<'_>) -> Result<Vec<Appended>> {
        let room_id = self.room.room_id();
        for pdu in &self.events {
            crate::rooms::relations::check_new(&mut *conn, room_id, pdu).await?;
        }
        let events = &self.events;
        let kinds: Vec<String> = events.iter().map(|pdu| pdu.kind.to_string()).collect();
        let ids: Vec<String> = events.iter().map(|pdu| pdu.event_id.to_string()).collect();
        let json: Vec<String> = events.iter().map(Pdu::canonical_json).collect();
        let memberships: Vec<Option<String>> = events
            .iter()
            .map(|pdu| {
                (pdu.kind == TimelineEventType::RoomMember)
                    .then(|| pdu.content_value()["membership"].as_str().unwrap_or("leave").to_owned())
            })
            .collect();

        let mut keys: Vec<(String, String)> = Vec::new();
        for (pdu, kind) in events.iter().zip(&kinds) {
            if let Some(state_key) = &pdu.state_key
                && !keys.iter().any(|(t, k)| t == kind && k == state_key)
            {
                keys.push((kind.clone(), state_key.clone()));
            }
        }
        let key_nids = db::new_room::intern_state_keys(&mut *conn, &keys).await?;
        let key_nid = |kind: &str, state_key: &str| {
            keys.iter().position(|(t, k)| t == kind && k == state_key).and_then(|index| key_nids.get(index)).copied()
        };
        let positions = reservation.next_many(&mut *conn, events.len()).await?;
        let state_events = events.iter().filter(|pdu| pdu.state_key.is_some()).count();
        let snapshot_ids = db::new_room::allocate_snapshot_ids(&mut *conn, state_events as i64 + 1).await?;
        if positions.len() != events.len() || snapshot_ids.len() != state_events + 1 {
            return Err(Error::internal("fewer positions or snapshot ids than asked for"));
        }

        // Walk the chain: the state before each event is the snapshot after the last state
        // event, from the empty one before the create event.
        let mut snapshots =
            vec![ChainSnapshot { snapshot_id: snapshot_ids[0], parent_id: None, chain_length: 0, entries: Vec::new() }];
        let mut state: Vec<(i64, &str)> = Vec::new();
        let mut chain_events = Vec::with_capacity(events.len());
        let mut state_afters = Vec::with_capacity(events.len());
        let mut members: BTreeMap<&str, ChainMembership<'_>> = BTreeMap::new();
        let (mut prev_edges, mut auth_edges) = (Vec::new(), Vec::new());
        let mut auth_ids: Vec<Vec<String>> = Vec::with_capacity(events.len());
        let mut prev_ids: Vec<Vec<String>> = Vec::with_capacity(events.len());
        for pdu in events {
            auth_ids.push(pdu.auth_events.iter().map(ToString::to_string).collect());
            prev_ids.push(pdu.prev_events.iter().map(ToString::to_string).collect());
        }
        for (index, pdu) in events.iter().enumerate() {
            let event_id = ids[index].as_str();
            let position = positions[index];
            let state_before = snapshots.last().map_or(snapshot_ids[0], |snapshot| snapshot.snapshot_id);
            let mut state_key_nid = None;
            if let Some(state_key) = &pdu.state_key {
                let nid =
                    key_nid(&kinds[index], state_key).ok_or_else(|| Error::internal("an uninterned state key"))?;
                state_key_nid = Some(nid);
                match state.iter_mut().find(|(key, _)| *key == nid) {
                    Some(entry) => entry.1 = event_id,
                    None => state.push((nid, event_id)),
                }
                let parent = snapshots.last().map(|snapshot| (snapshot.snapshot_id, snapshot.chain_length));
                let snapshot_id = snapshot_ids[snapshots.len()];
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
                if let (Some(membership), Ok(user)) = (&memberships[index], <&UserId>::try_from(state_key.as_str())) {
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
            prev_edges.extend(prev_ids[index].iter().map(|prev| (event_id, prev.as_str())));
            auth_edges.extend(auth_ids[index].iter().map(|auth| (event_id, auth.as_str())));
            chain_events.push(ChainEvent {
                event_id,
                event_type: &kinds[index],
                state_key_nid,
                sender: pdu.sender.as_str(),
                origin_server_ts: i64::from(pdu.origin_server_ts.get()),
                depth: i64::try_from(u64::from(pdu.depth)).unwrap_or(i64::MAX),
                stream_position: position,
                state_before,
                state_after,
                json: &json[index],
            });
        }
        let transaction = self.transaction.as_ref().map(|(index, device_id, txn_id)| {
            let key = db::rooms::TxnKey {
                user_id: events[*index].sender.as_str(),
                device_id,
                room_id: room_id.as_str(),
                event_type: &kinds[*index],
                txn_id,
            };
            (key, ids[*index].as_str())
        });
        let chain = NewRoomChain {
            room_id: room_id.as_str(),
            events: chain_events,
            prev_edges,
            auth_edges,
            snapshots,
            current_state: state,
            memberships: members.into_values().collect(),
            extremity: ids.last().map_or("", String::as_str),
            transaction,
        };
        let (nids, auth_stored) = db::new_room::insert_chain(&mut *conn, &chain).await?;
        // Every auth event is in the chain; an edge lost here would break the auth chains
        // that federation serves.
        if usize::try_from(auth_stored).ok() != Some(chain.auth_edges.len()) {
            return Err(Error::internal(format!("{room_id}: {auth_stored} of the new room's auth edges are stored")));
        }
        drop(chain);

        let mut appended = Vec::with_capacity(events.len());
        for (index, pdu) in self.events.into_iter().enumerate() {
            let event_nid = nids
                .iter()
                .find(|(event_id, _)| *event_id == ids[index])
                .map(|(_, nid)| *nid)
                .ok_or_else(|| Error::internal("a new room's event was not stored"))?;
            crate::rooms::relations::record(&mut *conn, room_id, &pdu, event_nid).await?;
            let stored = Stored { event_nid, state_after: state_afters[index], position: positions[index] };
            appended.push(Appended::New { pdu: Box::new(pdu), stored });
        }
        Ok(appended)
    }
}
