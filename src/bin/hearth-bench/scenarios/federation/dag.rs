//! A room the bench's own homeserver owns: its events built and signed as a real resident
//! server would (Hearth's event builder, the bench's key), kept in order, one linear chain.
//! The target server's user joins it through `make_join`/`send_join` (see `peer`), and the
//! bench then extends the chain with the messages it pushes.

use anyhow::{Context, Result, anyhow};
use hearth::signing_key::SigningKey;
use hearth::testing::rooms::build::{EventTemplate, Placement, build_and_sign, build_unsigned, event_id_of};
use hearth::testing::rooms::pdu::Pdu;
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::events::{MessageLikeEventType, StateEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::json;
use serde_json::value::RawValue as RawJsonValue;
use std::collections::{HashMap, HashSet, VecDeque};

/// The rooms' version: the newest that both Hearth and Synapse 1.163 speak with a room id
/// naming its server (room version 12 ids are hashes, which the bench would have to carry
/// around for nothing).
pub const ROOM_VERSION: RoomVersionId = RoomVersionId::V11;

/// One room of the bench's server: its state in the order it was built and the tip of its
/// (linear) DAG.
pub struct RemoteRoom {
    pub room_id: OwnedRoomId,
    pub owner: OwnedUserId,
    rules: RoomVersionRules,
    server: OwnedServerName,
    /// Every state event, oldest first; the auth chain is its first four.
    state: Vec<Pdu>,
    /// Every event of the room (state, messages, the target's join), for `get_missing_events`
    /// and `/event`.
    events: HashMap<OwnedEventId, Pdu>,
    /// The joins of the target's users, which are state from then on.
    joins: Vec<OwnedEventId>,
    create: OwnedEventId,
    owner_member: OwnedEventId,
    power_levels: OwnedEventId,
    join_rules: OwnedEventId,
    tip: OwnedEventId,
    depth: u64,
}

impl RemoteRoom {
    /// A public room created by `@owner:<server>` with `members` more joined users of the same
    /// server (`@m<i>-<room>:<server>`), each join built and signed like a real one.
    pub fn create(server: &OwnedServerName, key: &SigningKey, label: &str, members: u32) -> Result<RemoteRoom> {
        let rules = ROOM_VERSION.rules().ok_or_else(|| anyhow!("no rules for room version {ROOM_VERSION}"))?;
        let room_id = RoomId::parse(format!("!{label}:{server}")).context("room id")?;
        let owner = UserId::parse(format!("@owner-{label}:{server}")).context("owner id")?;
        let mut room = RemoteRoom {
            room_id,
            owner: owner.clone(),
            rules,
            server: server.clone(),
            state: Vec::new(),
            events: HashMap::new(),
            joins: Vec::new(),
            create: placeholder_id()?,
            owner_member: placeholder_id()?,
            power_levels: placeholder_id()?,
            join_rules: placeholder_id()?,
            tip: placeholder_id()?,
            depth: 0,
        };
        let create = EventTemplate::state(StateEventType::RoomCreate, "", json!({"room_version": ROOM_VERSION}));
        room.create = room.append_state(&create, &owner, &[], key)?;
        let join = EventTemplate::state(StateEventType::RoomMember, owner.as_str(), json!({"membership": "join"}));
        room.owner_member = room.append_state(&join, &owner, &[room.create.clone()], key)?;
        let power_levels = EventTemplate::state(
            StateEventType::RoomPowerLevels,
            "",
            json!({"users": {owner.as_str(): 100}, "users_default": 0, "events_default": 0, "state_default": 50}),
        );
        let owner_auth = [room.create.clone(), room.owner_member.clone()];
        room.power_levels = room.append_state(&power_levels, &owner, &owner_auth, key)?;
        let owner_auth = [room.create.clone(), room.owner_member.clone(), room.power_levels.clone()];
        let join_rules = EventTemplate::state(StateEventType::RoomJoinRules, "", json!({"join_rule": "public"}));
        room.join_rules = room.append_state(&join_rules, &owner, &owner_auth, key)?;
        // Shared history: the joined user reads what follows its join, as in most rooms.
        let visibility =
            EventTemplate::state(StateEventType::RoomHistoryVisibility, "", json!({"history_visibility": "shared"}));
        room.append_state(&visibility, &owner, &owner_auth, key)?;
        for index in 0..members {
            let member = UserId::parse(format!("@m{index}-{label}:{server}")).context("member id")?;
            let join = EventTemplate::state(StateEventType::RoomMember, member.as_str(), json!({"membership": "join"}));
            let auth = room.join_auth();
            room.append_state(&join, &member, &auth, key)?;
        }
        Ok(room)
    }

    /// Joined members of the room as built (the owner and the `members`), before any join of
    /// the target's users.
    pub fn member_count(&self) -> usize {
        self.state.iter().filter(|pdu| pdu.kind.to_string() == "m.room.member").count()
    }

    /// What a join needs as auth events in this room version (no previous membership here).
    fn join_auth(&self) -> Vec<OwnedEventId> {
        vec![self.create.clone(), self.power_levels.clone(), self.join_rules.clone()]
    }

    fn append_state(
        &mut self,
        template: &EventTemplate,
        sender: &UserId,
        auth: &[OwnedEventId],
        key: &SigningKey,
    ) -> Result<OwnedEventId> {
        let pdu = self.build(template, sender, auth, key)?;
        let event_id = pdu.event_id.clone();
        self.state.push(pdu);
        Ok(event_id)
    }

    fn build(
        &mut self,
        template: &EventTemplate,
        sender: &UserId,
        auth: &[OwnedEventId],
        key: &SigningKey,
    ) -> Result<Pdu> {
        // The create event has no parent; every other event follows the previous one.
        let prev = if self.depth == 0 { Vec::new() } else { vec![self.tip.clone()] };
        let placement =
            Placement { room_id: Some(&self.room_id), prev_events: &prev, auth_events: auth, depth: self.depth + 1 };
        let pdu = build_and_sign(template, sender, &placement, &self.rules, &self.server, key)
            .map_err(|error| anyhow!("building a {} event: {error}", template.kind))?;
        self.tip = pdu.event_id.clone();
        self.depth += 1;
        self.events.insert(pdu.event_id.clone(), pdu.clone());
        Ok(pdu)
    }

    /// The unsigned join event `user` asks for with `make_join`, on top of the room's tip.
    pub fn join_template(&self, user: &UserId) -> Result<CanonicalJsonObject> {
        let template = EventTemplate::state(StateEventType::RoomMember, user.as_str(), json!({"membership": "join"}));
        let prev = [self.tip.clone()];
        let auth = self.join_auth();
        let placement =
            Placement { room_id: Some(&self.room_id), prev_events: &prev, auth_events: &auth, depth: self.depth + 1 };
        build_unsigned(&template, user, &placement, &self.rules)
            .map_err(|error| anyhow!("building a join template: {error}"))
    }

    /// Takes the join the target server signed (`send_join`) as the room's new tip, so that
    /// what the bench sends next follows it; returns the event id.
    pub fn accept_join(&mut self, event: &CanonicalJsonObject) -> Result<OwnedEventId> {
        let event_id = event_id_of(event, &self.rules).map_err(|error| anyhow!("the join's event id: {error}"))?;
        let depth = match event.get("depth") {
            Some(CanonicalJsonValue::Integer(depth)) => u64::try_from(i64::from(*depth)).unwrap_or(self.depth),
            _ => self.depth + 1,
        };
        let pdu = Pdu::from_canonical(event_id.clone(), event.clone())
            .map_err(|error| anyhow!("the join is not a PDU: {error}"))?;
        self.events.insert(event_id.clone(), pdu);
        self.joins.push(event_id.clone());
        self.tip = event_id.clone();
        self.depth = self.depth.max(depth);
        Ok(event_id)
    }

    /// The spec's `get_missing_events`: walking back from `latest` along `prev_events`, the
    /// events not in `earliest`, not below `min_depth`, at most `limit`, oldest first.
    pub fn missing_events(
        &self,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
        limit: usize,
        min_depth: u64,
    ) -> Result<Vec<Box<RawJsonValue>>> {
        let mut seen: HashSet<&OwnedEventId> = earliest.iter().chain(latest).collect();
        let mut found = Vec::new();
        self.walk_back(latest, &mut seen, &mut found, limit, min_depth);
        found.sort_by_key(|pdu| pdu.depth);
        as_json(&found)
    }

    /// The spec's `/backfill`: the events `from` and those before them along `prev_events`,
    /// at most `limit`, newest first — what a server that joined later asks for when its
    /// user pages back through the room's history.
    pub fn backfill(&self, from: &[OwnedEventId], limit: usize) -> Result<Vec<Box<RawJsonValue>>> {
        let mut seen: HashSet<&OwnedEventId> = from.iter().collect();
        let mut found: Vec<&Pdu> = from.iter().filter_map(|id| self.events.get(id)).take(limit).collect();
        self.walk_back(from, &mut seen, &mut found, limit, 0);
        found.sort_by_key(|pdu| std::cmp::Reverse(pdu.depth));
        as_json(&found)
    }

    /// Breadth-first along `prev_events` from `start` (excluded), adding to `found` what is
    /// not `seen` and not below `min_depth`, until `found` holds `limit`.
    fn walk_back<'r>(
        &'r self,
        start: &'r [OwnedEventId],
        seen: &mut HashSet<&'r OwnedEventId>,
        found: &mut Vec<&'r Pdu>,
        limit: usize,
        min_depth: u64,
    ) {
        let mut queue: VecDeque<&OwnedEventId> = start.iter().collect();
        while let Some(event_id) = queue.pop_front() {
            let Some(pdu) = self.events.get(event_id) else { continue };
            for prev in &pdu.prev_events {
                if found.len() >= limit || !seen.insert(prev) {
                    continue;
                }
                if let Some(prev_pdu) = self.events.get(prev).filter(|p| u64::from(p.depth) >= min_depth) {
                    found.push(prev_pdu);
                    queue.push_back(prev);
                }
            }
        }
    }

    /// One event of the room, as JSON.
    pub fn event(&self, event_id: &EventId) -> Option<&Pdu> {
        self.events.get(event_id)
    }

    /// The spec's `state_ids` at `event_id`: (auth chain ids, state ids). The bench only
    /// appends messages after the joins, so the state before any of them is the room's whole
    /// state with the joins; the auth chain is the first four state events'.
    pub fn state_ids_at(&self, event_id: &EventId) -> Option<(Vec<OwnedEventId>, Vec<OwnedEventId>)> {
        self.events.get(event_id)?;
        let state = self.state.iter().map(|pdu| pdu.event_id.clone()).chain(self.joins.iter().cloned()).collect();
        let auth_chain = self.state.iter().take(4).map(|pdu| pdu.event_id.clone()).collect();
        Some((auth_chain, state))
    }

    /// The spec's `/state` at `event_id`: the events of [`RemoteRoom::state_ids_at`], as JSON
    /// (auth chain, state).
    pub fn state_at(&self, event_id: &EventId) -> Option<Result<(EventsJson, EventsJson)>> {
        let (auth_chain, state) = self.state_ids_at(event_id)?;
        let as_json = |ids: Vec<OwnedEventId>| {
            ids.iter()
                .filter_map(|id| self.events.get(id))
                .map(|pdu| RawJsonValue::from_string(pdu.canonical_json()).context("a PDU as JSON"))
                .collect::<Result<Vec<_>>>()
        };
        Some(as_json(auth_chain).and_then(|auth_chain| Ok((auth_chain, as_json(state)?))))
    }

    /// The room's state and auth chain as JSON, for the `send_join` answer.
    pub fn state_and_auth_chain(&self) -> Result<(EventsJson, EventsJson)> {
        let raw = |pdu: &Pdu| RawJsonValue::from_string(pdu.canonical_json()).context("a PDU as JSON");
        let state = self.state.iter().map(raw).collect::<Result<Vec<_>>>()?;
        // create, the owner's join, power levels and join rules: every auth event of the state.
        let auth_chain = self.state.iter().take(4).map(raw).collect::<Result<Vec<_>>>()?;
        Ok((state, auth_chain))
    }

    /// The `send_join` answer to a joiner that asked for a partial state (`omit_members`), as
    /// Hearth's resident gives it: member events only of the first few members a client names
    /// the nameless room by (its heroes; the joiner has no membership before its join); the
    /// auth chain without what the state carries.
    pub fn partial_state_and_auth_chain(&self) -> Result<(EventsJson, EventsJson)> {
        const HEROES: usize = 5;
        let raw = |pdu: &Pdu| RawJsonValue::from_string(pdu.canonical_json()).context("a PDU as JSON");
        let is_member = |pdu: &&Pdu| pdu.kind.to_string() == "m.room.member";
        let heroes: Vec<&OwnedEventId> =
            self.state.iter().filter(is_member).take(HEROES).map(|p| &p.event_id).collect();
        let kept: Vec<&Pdu> =
            self.state.iter().filter(|pdu| !is_member(pdu) || heroes.contains(&&pdu.event_id)).collect();
        let state = kept.iter().map(|pdu| raw(pdu)).collect::<Result<Vec<_>>>()?;
        let auth_chain = self
            .state
            .iter()
            .take(4)
            .filter(|pdu| !kept.iter().any(|kept| kept.event_id == pdu.event_id))
            .map(raw)
            .collect::<Result<Vec<_>>>()?;
        Ok((state, auth_chain))
    }

    /// `count` messages of the owner, chained one after another from the tip and signed now,
    /// so that signing is not part of what the target is timed on.
    pub fn messages(&mut self, count: u32, key: &SigningKey, label: &str) -> Result<Vec<Pdu>> {
        let auth = [self.create.clone(), self.power_levels.clone(), self.owner_member.clone()];
        let owner = self.owner.clone();
        (0..count)
            .map(|index| {
                let content = json!({"msgtype": "m.text", "body": format!("{label} {index}")});
                let template = EventTemplate::message(MessageLikeEventType::RoomMessage, content);
                self.build(&template, &owner, &auth, key)
            })
            .collect()
    }
}

/// Events as the JSON the federation API carries.
pub type EventsJson = Vec<Box<RawJsonValue>>;

fn as_json(pdus: &[&Pdu]) -> Result<EventsJson> {
    pdus.iter().map(|pdu| RawJsonValue::from_string(pdu.canonical_json()).context("a PDU as JSON")).collect()
}

/// A syntactically valid event id, replaced before use: fields are filled in creation order.
fn placeholder_id() -> Result<OwnedEventId> {
    OwnedEventId::try_from("$placeholder").context("placeholder event id")
}
