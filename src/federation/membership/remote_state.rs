//! Checking a room's state and auth chain as another server answered them (`send_join`), before
//! anything of them is believed: each event's format, signatures and content hash (fed-inbound's
//! checks, with keys from the key ring), then each event against its own auth events, in an
//! order where those come first. Events that fail are left out, as Synapse does, and anything
//! that needed them with them; a state without a valid create event of the room is refused.

use crate::error::{Error, Result};
use crate::federation::inbound::{parse_pdu, signing_keys_wanted, verify_pdu};
use crate::federation::membership::keys::{KeySource, WantedKeys};
use crate::rooms::pdu::Pdu;
use crate::rooms::rules_for;
use crate::rooms::send::AuthState;
use ruma::events::TimelineEventType;
use ruma::{OwnedEventId, RoomId, RoomVersionId};
use serde_json::value::RawValue as RawJsonValue;
use std::collections::{HashMap, HashSet};

/// A resident server's answer, checked.
pub struct CheckedRoomState {
    /// Every checked event of the state and the auth chain, each after its auth events.
    pub in_auth_order: Vec<Pdu>,
    /// The state: the ids of checked state events, one per `(type, state_key)`.
    pub state: Vec<OwnedEventId>,
    pub create: Pdu,
}

/// Checks `state` and `auth_chain` of `room_id` (of version `room_version`).
pub async fn check_room_state(
    keys: &impl KeySource,
    room_id: &RoomId,
    room_version: &RoomVersionId,
    state: &[Box<RawJsonValue>],
    auth_chain: &[Box<RawJsonValue>],
) -> Result<CheckedRoomState> {
    let rules = rules_for(room_version)?;
    let state_ids = check_each(keys, room_version, state).await?;
    let mut events: HashMap<OwnedEventId, Pdu> = HashMap::new();
    for pdu in state_ids.iter().cloned().chain(check_each(keys, room_version, auth_chain).await?) {
        events.insert(pdu.event_id.clone(), pdu);
    }
    let create = events
        .values()
        .find(|pdu| pdu.kind == TimelineEventType::RoomCreate && pdu.state_key.as_deref() == Some(""))
        .cloned()
        .ok_or_else(|| Error::bad_json("The room's state has no valid create event"))?;
    let create_room = match &create.room_id {
        Some(room_id) => room_id.to_string(),
        // Room version 12: the room id is the create event's reference hash.
        None => format!("!{}", &create.event_id.as_str()[1..]),
    };
    if create_room != room_id.as_str() {
        return Err(Error::bad_json(format!("The create event is of room {create_room}, not {room_id}")));
    }
    if events.values().any(|pdu| pdu.room_id.as_ref().is_some_and(|id| id != room_id)) {
        return Err(Error::bad_json("The state holds events of another room"));
    }

    // Each event after its auth events; those whose auth events fail or are missing drop out.
    let implicit_create = rules.authorization.room_create_event_id_as_room_id;
    let mut accepted: HashMap<OwnedEventId, Pdu> = HashMap::new();
    let mut in_auth_order = Vec::with_capacity(events.len());
    let mut pending: Vec<Pdu> = events.into_values().collect();
    pending.sort_by_key(|pdu| u64::from(pdu.depth));
    loop {
        let before = pending.len();
        let mut waiting = Vec::new();
        for pdu in pending {
            let cited: Option<Vec<Pdu>> = pdu.auth_events.iter().map(|id| accepted.get(id).cloned()).collect();
            let Some(mut auth_events) = cited else {
                waiting.push(pdu);
                continue;
            };
            if implicit_create && pdu.event_id != create.event_id && !pdu.auth_events.contains(&create.event_id) {
                auth_events.push(create.clone());
            }
            match AuthState::from_auth_events(auth_events).authorize(&pdu, &rules) {
                Ok(()) => {
                    accepted.insert(pdu.event_id.clone(), pdu.clone());
                    in_auth_order.push(pdu);
                }
                Err(error) => {
                    tracing::info!(event_id = %pdu.event_id, %error, "a joined room's state event fails auth")
                }
            }
        }
        pending = waiting;
        if pending.is_empty() || pending.len() == before {
            break;
        }
    }
    if !accepted.contains_key(&create.event_id) {
        return Err(Error::bad_json("The room's create event fails the auth rules"));
    }
    let mut seen = HashSet::new();
    let state = state_ids
        .iter()
        .filter(|pdu| accepted.contains_key(&pdu.event_id))
        .filter(|pdu| seen.insert((pdu.kind.to_string(), pdu.state_key.clone())))
        .map(|pdu| pdu.event_id.clone())
        .collect();
    Ok(CheckedRoomState { in_auth_order, state, create })
}

/// Format, signatures and hashes of each event; the keys of all of them fetched in one go.
/// Events that fail are left out (a redacted copy is kept where only the hash failed).
async fn check_each(
    keys: &impl KeySource,
    room_version: &RoomVersionId,
    raws: &[Box<RawJsonValue>],
) -> Result<Vec<Pdu>> {
    let mut parsed = Vec::with_capacity(raws.len());
    let mut wanted = WantedKeys::new();
    for raw in raws {
        match parse_pdu(room_version, raw) {
            Ok(object) => {
                for (server, ids) in signing_keys_wanted(&object) {
                    wanted.entry(server).or_default().extend(ids);
                }
                parsed.push(object);
            }
            Err(error) => tracing::info!(%error, "a joined room's state holds a malformed event"),
        }
    }
    let public_keys = keys.public_keys(&wanted).await;
    let mut checked = Vec::with_capacity(parsed.len());
    for object in parsed {
        match verify_pdu(room_version, object, &public_keys) {
            Ok(pdu) => checked.push(pdu.pdu),
            Err(error) => tracing::info!(%error, "a joined room's state holds an event that fails its checks"),
        }
    }
    Ok(checked)
}
