//! State resolution for room version 1, written from the spec (rooms/v1, "State
//! resolution"), since ruma implements only v2. Room version 1 is known to reset state in
//! some forks; the algorithm is kept exactly as specified (and as Synapse runs it), because
//! every server in a v1 room must come to the same answer, right or wrong.
//!
//! 1. R starts as the unconflicted state: every key for which the states agree (a key that
//!    only some states hold is not a conflict).
//! 2. The conflicted power levels, then each conflicted join rules key, then each conflicted
//!    member key: sorted by ascending depth then descending sha1(event id); the first is taken,
//!    and each next one replaces it while it is allowed by the auth rules in R with the last
//!    taken one in place; the first that is not allowed stops the walk.
//! 3. Every other conflicted key: the event with the highest depth (then lowest sha1) that
//!    is allowed in R; if none is, the one with the lowest depth.

use crate::rooms::pdu::Pdu;
use ruma::events::StateEventType;
use ruma::room_version_rules::AuthorizationRules;
use ruma::state_res::{StateMap, check_state_dependent_auth_rules};
use ruma::{EventId, OwnedEventId};
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet};

/// Resolves `states` into one. `fetch` must give every event the states name.
pub(crate) fn resolve_v1(
    rules: &AuthorizationRules,
    states: &[StateMap<OwnedEventId>],
    fetch: impl Fn(&EventId) -> Option<Pdu>,
) -> Result<StateMap<OwnedEventId>, String> {
    let mut candidates: BTreeMap<(StateEventType, String), BTreeSet<OwnedEventId>> = BTreeMap::new();
    for state in states {
        for (key, event_id) in state {
            candidates.entry(key.clone()).or_default().insert(event_id.clone());
        }
    }
    let mut resolved = StateMap::new();
    let mut conflicted: BTreeMap<(StateEventType, String), Vec<Pdu>> = BTreeMap::new();
    for (key, ids) in candidates {
        if ids.len() == 1 {
            resolved.extend(ids.into_iter().map(|id| (key.clone(), id)));
            continue;
        }
        let events = ids
            .iter()
            .map(|id| fetch(id).ok_or_else(|| format!("state resolution needs {id}, which is not available")))
            .collect::<Result<Vec<_>, _>>()?;
        conflicted.insert(key, events);
    }

    // The auth-affecting types, in the spec's order; each key of a type is resolved in turn
    // against what the previous ones left in R.
    for kind in [StateEventType::RoomPowerLevels, StateEventType::RoomJoinRules, StateEventType::RoomMember] {
        let keys: Vec<(StateEventType, String)> = conflicted.keys().filter(|(k, _)| *k == kind).cloned().collect();
        let mut taken = Vec::new();
        for key in keys {
            let Some(events) = conflicted.remove(&key) else { continue };
            taken.extend(resolve_auth_key(rules, events, &resolved, &fetch).map(|id| (key, id)));
        }
        // Synapse adds a type's results to R only after all its keys are resolved.
        resolved.extend(taken);
    }
    let mut taken = Vec::new();
    for (key, events) in conflicted {
        taken.extend(resolve_other_key(rules, events, &resolved, &fetch).map(|id| (key, id)));
    }
    resolved.extend(taken);
    Ok(resolved)
}

/// Step 2 for one key: walk up from the oldest while each next event is allowed.
fn resolve_auth_key(
    rules: &AuthorizationRules,
    mut events: Vec<Pdu>,
    state: &StateMap<OwnedEventId>,
    fetch: &impl Fn(&EventId) -> Option<Pdu>,
) -> Option<OwnedEventId> {
    events.sort_by_cached_key(|pdu| (pdu.depth, std::cmp::Reverse(sha1_hex(&pdu.event_id))));
    let mut events = events.into_iter();
    let mut current = events.next()?;
    let mut r = state.clone();
    for next in events {
        r.insert(state_key_of(&current), current.event_id.clone());
        if !allowed(rules, &next, &r, fetch) {
            break;
        }
        current = next;
    }
    Some(current.event_id.clone())
}

/// Step 3 for one key.
fn resolve_other_key(
    rules: &AuthorizationRules,
    mut events: Vec<Pdu>,
    state: &StateMap<OwnedEventId>,
    fetch: &impl Fn(&EventId) -> Option<Pdu>,
) -> Option<OwnedEventId> {
    events.sort_by_cached_key(|pdu| (std::cmp::Reverse(pdu.depth), sha1_hex(&pdu.event_id)));
    let chosen = match events.iter().find(|pdu| allowed(rules, pdu, state, fetch)) {
        Some(pdu) => pdu,
        // None is allowed: the spec is silent; Synapse takes the last, the lowest depth.
        None => events.last()?,
    };
    Some(chosen.event_id.clone())
}

fn allowed(
    rules: &AuthorizationRules,
    pdu: &Pdu,
    state: &StateMap<OwnedEventId>,
    fetch: &impl Fn(&EventId) -> Option<Pdu>,
) -> bool {
    check_state_dependent_auth_rules(rules, pdu, |kind: &StateEventType, key: &str| {
        state.get(&(kind.clone(), key.to_owned())).and_then(|id| fetch(id))
    })
    .is_ok()
}

fn state_key_of(pdu: &Pdu) -> (StateEventType, String) {
    (StateEventType::from(pdu.kind.to_string()), pdu.state_key.clone().unwrap_or_default())
}

fn sha1_hex(event_id: &EventId) -> String {
    hex::encode(Sha1::digest(event_id.as_str().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::RoomVersionId;
    use serde_json::json;
    use std::collections::HashMap;

    /// A v1 room: @a created it, joined and holds power 100; the join rule is public; @b
    /// joined. Events are made by [`Room::event`]; depth orders them.
    struct Room {
        events: HashMap<OwnedEventId, Pdu>,
        base: StateMap<OwnedEventId>,
    }

    impl Room {
        fn new() -> Room {
            let mut room = Room { events: HashMap::new(), base: StateMap::new() };
            for (id, kind, key, sender, content, depth) in [
                ("$create:x", "m.room.create", "", "@a:x", json!({"creator": "@a:x"}), 1),
                ("$a-join:x", "m.room.member", "@a:x", "@a:x", json!({"membership": "join"}), 2),
                ("$power:x", "m.room.power_levels", "", "@a:x", json!({"users": {"@a:x": 100}}), 3),
                ("$rules:x", "m.room.join_rules", "", "@a:x", json!({"join_rule": "public"}), 4),
                ("$b-join:x", "m.room.member", "@b:x", "@b:x", json!({"membership": "join"}), 5),
            ] {
                let id = room.event(id, kind, key, sender, content, depth);
                room.base.insert(state_key_of(&room.events[&id]), id);
            }
            room
        }

        fn event(
            &mut self,
            id: &str,
            kind: &str,
            key: &str,
            sender: &str,
            content: serde_json::Value,
            depth: u64,
        ) -> OwnedEventId {
            let json = json!({
                "type": kind, "state_key": key, "sender": sender, "content": content, "depth": depth,
                "room_id": "!room:x", "origin_server_ts": depth, "prev_events": [], "auth_events": [],
            });
            let pdu = Pdu::from_stored(id, &json.to_string()).expect("a valid event");
            self.events.insert(pdu.event_id.clone(), pdu.clone());
            pdu.event_id.clone()
        }

        /// The base state with `changes` on top.
        fn state(&self, changes: &[&OwnedEventId]) -> StateMap<OwnedEventId> {
            let mut state = self.base.clone();
            for id in changes {
                state.insert(state_key_of(&self.events[*id]), (*id).clone());
            }
            state
        }

        fn resolve(&self, states: &[StateMap<OwnedEventId>]) -> StateMap<OwnedEventId> {
            let rules = RoomVersionId::V1.rules().expect("v1 rules").authorization;
            resolve_v1(&rules, states, |id| self.events.get(id).cloned()).expect("resolves")
        }
    }

    fn key(kind: &str, state_key: &str) -> (StateEventType, String) {
        (StateEventType::from(kind), state_key.to_owned())
    }

    #[test]
    fn a_later_power_levels_event_wins_when_the_earlier_allows_it() {
        let mut room = Room::new();
        let promote =
            room.event("$promote:x", "m.room.power_levels", "", "@a:x", json!({"users": {"@a:x": 100, "@b:x": 50}}), 6);
        let power = room.base[&key("m.room.power_levels", "")].clone();
        let resolved = room.resolve(&[room.state(&[]), room.state(&[&promote])]);
        assert_eq!(resolved[&key("m.room.power_levels", "")], promote);
        // The order of the states does not matter.
        let resolved = room.resolve(&[room.state(&[&promote]), room.state(&[])]);
        assert_eq!(resolved[&key("m.room.power_levels", "")], promote);
        assert_ne!(promote, power);
    }

    #[test]
    fn a_power_grab_not_allowed_by_the_earlier_power_levels_loses() {
        let mut room = Room::new();
        let grab =
            room.event("$grab:x", "m.room.power_levels", "", "@b:x", json!({"users": {"@a:x": 100, "@b:x": 100}}), 6);
        let resolved = room.resolve(&[room.state(&[]), room.state(&[&grab])]);
        assert_eq!(resolved[&key("m.room.power_levels", "")], room.base[&key("m.room.power_levels", "")]);
    }

    #[test]
    fn member_conflicts_walk_up_while_allowed() {
        let mut room = Room::new();
        let ban = room.event("$ban:x", "m.room.member", "@b:x", "@a:x", json!({"membership": "ban"}), 7);
        let resolved = room.resolve(&[room.state(&[]), room.state(&[&ban])]);
        assert_eq!(resolved[&key("m.room.member", "@b:x")], ban, "@a may ban @b");

        // @c, without power, cannot kick @b: the join stays.
        let c_join = room.event("$c-join:x", "m.room.member", "@c:x", "@c:x", json!({"membership": "join"}), 6);
        let kick = room.event("$kick:x", "m.room.member", "@b:x", "@c:x", json!({"membership": "leave"}), 8);
        let resolved = room.resolve(&[room.state(&[&c_join]), room.state(&[&c_join, &kick])]);
        assert_eq!(resolved[&key("m.room.member", "@b:x")], room.base[&key("m.room.member", "@b:x")]);
        assert_eq!(resolved[&key("m.room.member", "@c:x")], c_join, "an unconflicted key is kept");
    }

    #[test]
    fn other_conflicts_take_the_deepest_allowed_event() {
        let mut room = Room::new();
        let by_a = room.event("$topic-a:x", "m.room.topic", "", "@a:x", json!({"topic": "a"}), 8);
        let by_b = room.event("$topic-b:x", "m.room.topic", "", "@b:x", json!({"topic": "b"}), 9);
        // @b lacks the 50 that state events need: the deeper topic is not allowed.
        let resolved = room.resolve(&[room.state(&[&by_a]), room.state(&[&by_b])]);
        assert_eq!(resolved[&key("m.room.topic", "")], by_a);

        let later_by_a = room.event("$topic-a2:x", "m.room.topic", "", "@a:x", json!({"topic": "a2"}), 10);
        let resolved = room.resolve(&[room.state(&[&by_a]), room.state(&[&later_by_a])]);
        assert_eq!(resolved[&key("m.room.topic", "")], later_by_a);
    }

    #[test]
    fn equal_depths_are_ordered_by_sha1_of_the_event_id() {
        let mut room = Room::new();
        let first = room.event("$one:x", "m.room.name", "", "@a:x", json!({"name": "one"}), 8);
        let second = room.event("$two:x", "m.room.name", "", "@a:x", json!({"name": "two"}), 8);
        let lowest = if sha1_hex(&first) < sha1_hex(&second) { first.clone() } else { second.clone() };
        let resolved = room.resolve(&[room.state(&[&first]), room.state(&[&second])]);
        assert_eq!(resolved[&key("m.room.name", "")], lowest, "other events: the lowest sha1 wins a tie");

        // Power levels at equal depth: ascending depth then descending sha1, walking up while
        // allowed, so the lowest sha1 is taken last.
        let p1 =
            room.event("$p-one:x", "m.room.power_levels", "", "@a:x", json!({"users": {"@a:x": 100}, "ban": 60}), 6);
        let p2 =
            room.event("$p-two:x", "m.room.power_levels", "", "@a:x", json!({"users": {"@a:x": 100}, "ban": 70}), 6);
        let last = if sha1_hex(&p1) < sha1_hex(&p2) { p1.clone() } else { p2.clone() };
        let resolved = room.resolve(&[room.state(&[&p1]), room.state(&[&p2])]);
        assert_eq!(resolved[&key("m.room.power_levels", "")], last);
    }

    #[test]
    fn a_missing_event_is_an_error_not_a_guess() {
        let mut room = Room::new();
        let topic = room.event("$t:x", "m.room.topic", "", "@a:x", json!({"topic": "t"}), 8);
        let mut other = room.state(&[]);
        other.insert(key("m.room.topic", ""), OwnedEventId::try_from("$unknown:x").expect("id"));
        let rules = RoomVersionId::V1.rules().expect("v1 rules").authorization;
        let outcome = resolve_v1(&rules, &[room.state(&[&topic]), other], |id| room.events.get(id).cloned());
        assert!(outcome.is_err());
    }
}
