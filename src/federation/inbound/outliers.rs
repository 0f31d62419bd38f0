//! Events fetched from another server whose place in the room's timeline is not known — the
//! state and auth chain a `send_join` answers with, the state `/state_ids` names before an
//! event whose gap could not be filled — checked and stored as outliers: format, signatures
//! and content hash first ([`check_fetched`]), then each event against its own auth events, in
//! an order where those come first ([`store_outliers`]). This is the one place such rows are
//! written, so the join path and gap filling cannot disagree about what an outlier is.
//!
//! An event that fails auth against its auth events is stored as rejected (spec: "Rejection"),
//! so it is never fetched again, never served and never used to authorise another; an event
//! citing a rejected one is rejected too. An event whose auth events are nowhere to be had is
//! not stored at all: nothing can be said about it yet.

use crate::db;
use crate::error::{Error, Result};
use crate::federation::inbound::check::{parse_pdu, signing_keys_wanted, verify_pdu};
use crate::federation::key_source::{KeySource, WantedKeys};
use crate::rooms::pdu::Pdu;
use crate::rooms::send::AuthState;
use crate::rooms::served;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedEventId, RoomId, RoomVersionId};
use serde_json::value::RawValue as RawJsonValue;
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};

/// Format, signatures and hashes of each fetched event, the keys of all of them fetched in one
/// go. Events that fail are left out (a redacted copy is kept where only the hash failed, as
/// the spec says).
pub async fn check_fetched(
    keys: &impl KeySource,
    room_version: &RoomVersionId,
    raws: &[Box<RawJsonValue>],
) -> Vec<Pdu> {
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
            Err(error) => tracing::info!(%error, "a fetched event is malformed; left out"),
        }
    }
    let public_keys = keys.public_keys(&wanted).await;
    let mut checked = Vec::with_capacity(parsed.len());
    for object in parsed {
        match verify_pdu(room_version, object, &public_keys) {
            Ok(pdu) => checked.push(pdu.pdu),
            Err(error) => tracing::info!(%error, "a fetched event fails its checks; left out"),
        }
    }
    checked
}

/// What [`store_outliers`] made of a set of events.
#[derive(Debug, Default)]
pub struct StoredOutliers {
    /// The accepted events among those given (stored now or before), each after its auth
    /// events, with their event numbers.
    pub accepted: Vec<(Pdu, i64)>,
    /// Those stored as rejected now or before.
    pub rejected: Vec<OwnedEventId>,
}

impl StoredOutliers {
    pub fn nid_of(&self, event_id: &str) -> Option<i64> {
        self.accepted.iter().find(|(pdu, _)| pdu.event_id.as_str() == event_id).map(|(_, nid)| *nid)
    }
}

/// Whether `pdu` belongs to `room_id` (a v12 create event names no room: its id is the room's).
pub fn in_room(pdu: &Pdu, room_id: &RoomId) -> bool {
    pdu.room_id.as_deref().map_or_else(|| room_id.as_str()[1..] == pdu.event_id.as_str()[1..], |own| own == room_id)
}

/// Stores `pdus` (checked by [`check_fetched`], all of `room_id`) as outliers in `conn`'s
/// transaction, each only after its auth events (stored before, or among `pdus`) and when they
/// allow it; see the module's notes for what is rejected and what left out.
pub async fn store_outliers(
    conn: &mut PgConnection,
    room_id: &RoomId,
    rules: &RoomVersionRules,
    pdus: Vec<Pdu>,
) -> Result<StoredOutliers> {
    if let Some(stranger) = pdus.iter().find(|pdu| !in_room(pdu, room_id)) {
        return Err(Error::bad_json(format!("{} is not an event of {room_id}", stranger.event_id)));
    }
    let mut seen = HashSet::new();
    let mut pending: Vec<Pdu> = pdus.into_iter().filter(|pdu| seen.insert(pdu.event_id.clone())).collect();
    // Since room version 12 the create event is not among the auth events, but every check
    // consults it: its id is the room id's.
    let create_id: Option<OwnedEventId> = rules
        .authorization
        .room_create_event_id_as_room_id
        .then(|| ruma::EventId::parse(format!("${}", &room_id.as_str()[1..])).ok())
        .flatten();

    // What is stored already, of the events themselves and of what they cite.
    let wanted: Vec<String> = pending
        .iter()
        .flat_map(|pdu| std::iter::once(&pdu.event_id).chain(&pdu.auth_events))
        .chain(&create_id)
        .map(ToString::to_string)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut authorised: HashMap<OwnedEventId, (Pdu, i64)> = HashMap::new();
    let mut rejected: HashSet<OwnedEventId> = HashSet::new();
    let mut known = Vec::new();
    for event in db::federation_inbound::known_events(&mut *conn, &wanted).await? {
        if event.room_id != room_id.as_str() {
            return Err(Error::bad_json(format!("{} is an event of another room", event.event_id)));
        }
        let pdu = Pdu::from_stored(&event.event_id, &event.json)?;
        match event.rejected {
            true => drop(rejected.insert(pdu.event_id.clone())),
            false => known.push((event.event_nid, pdu)),
        }
    }
    // The auth rules see redacted events as redacted.
    for served in served::apply(&mut *conn, &rules.redaction, known).await? {
        authorised.insert(served.pdu.event_id.clone(), (served.pdu, served.event_nid));
    }

    let mut outcome = StoredOutliers::default();
    pending.retain(|pdu| {
        if let Some((_, nid)) = authorised.get(&pdu.event_id) {
            outcome.accepted.push((pdu.clone(), *nid));
            return false;
        }
        if rejected.contains(&pdu.event_id) {
            outcome.rejected.push(pdu.event_id.clone());
            return false;
        }
        true
    });
    pending.sort_by_key(|pdu| u64::from(pdu.depth));

    // Auth events first: take whatever has all its auth events judged, until nothing moves.
    loop {
        let judged = |id: &OwnedEventId| authorised.contains_key(id) || rejected.contains(id);
        let (ready, rest): (Vec<Pdu>, Vec<Pdu>) =
            pending.into_iter().partition(|pdu| pdu.auth_events.iter().all(&judged));
        pending = rest;
        if ready.is_empty() {
            break;
        }
        for pdu in ready {
            let verdict = match pdu.auth_events.iter().find(|id| rejected.contains(*id)) {
                Some(bad) => Err(format!("its auth event {bad} was rejected")),
                None => authorise(&pdu, create_id.as_ref(), &authorised, rules),
            };
            match verdict {
                Ok(()) => {
                    let nid = store_unplaced(conn, room_id, &pdu, Unplaced::Outlier).await?;
                    authorised.insert(pdu.event_id.clone(), (pdu.clone(), nid));
                    outcome.accepted.push((pdu, nid));
                }
                Err(reason) => {
                    tracing::info!(event_id = %pdu.event_id, %reason, "a fetched event is rejected");
                    store_unplaced(conn, room_id, &pdu, Unplaced::Rejected { reason: &reason, state_before: None })
                        .await?;
                    rejected.insert(pdu.event_id.clone());
                    outcome.rejected.push(pdu.event_id.clone());
                }
            }
        }
    }
    for left in &pending {
        tracing::info!(event_id = %left.event_id, "a fetched event's auth events are unknown; not stored");
    }
    Ok(outcome)
}

/// `pdu` against its own auth events (all accepted), the room's create event added where the
/// room version leaves it implicit.
fn authorise(
    pdu: &Pdu,
    create_id: Option<&OwnedEventId>,
    authorised: &HashMap<OwnedEventId, (Pdu, i64)>,
    rules: &RoomVersionRules,
) -> std::result::Result<(), String> {
    let mut auth: Vec<Pdu> =
        pdu.auth_events.iter().filter_map(|id| authorised.get(id)).map(|(p, _)| p.clone()).collect();
    if let Some((create, _)) =
        create_id.filter(|id| **id != pdu.event_id && !pdu.auth_events.contains(id)).and_then(|id| authorised.get(id))
    {
        auth.push(create.clone());
    }
    AuthState::from_auth_events(auth).authorize(pdu, rules).map_err(|error| error.to_string())
}

/// How an event is stored beside the timeline.
pub enum Unplaced<'a> {
    /// Its state is unknown.
    Outlier,
    /// Allowed by the state before it (known), not by the current state.
    SoftFailed { state_before: i64 },
    /// It failed auth; kept so it is not fetched or judged again, never served or used. Where
    /// the state before it is known, the state after it is that same state.
    Rejected { reason: &'a str, state_before: Option<i64> },
}

/// Stores an event beside the timeline (no stream position, not a forward extremity), with
/// its edges and, for a soft-failed state event, the state after it (later events may name it
/// as a parent). An event stored already is left as it is. Returns its number.
pub async fn store_unplaced(conn: &mut PgConnection, room_id: &RoomId, pdu: &Pdu, how: Unplaced<'_>) -> Result<i64> {
    let kind = pdu.kind.to_string();
    let state_key_nid = match &pdu.state_key {
        Some(state_key) => Some(db::state::intern_state_key(conn, &kind, state_key).await?),
        None => None,
    };
    let (state_before, rejection) = match how {
        Unplaced::Outlier => (None, None),
        Unplaced::SoftFailed { state_before } => (Some(state_before), None),
        Unplaced::Rejected { reason, state_before } => (state_before, Some(reason)),
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
        soft_failed: state_before.is_some() && rejection.is_none(),
        rejection,
        state_before,
        state_after: state_before,
        json: &json,
        prev_event_ids: &prev_ids,
        auth_event_ids: &auth_ids,
    };
    let event_nid = db::federation_inbound::insert_unplaced(conn, &row).await?;
    // A soft-failed state event does change the state after it; a rejected one does not.
    if let (Some(state_before), Some(state_key_nid), None) = (state_before, state_key_nid, rejection) {
        let after =
            db::state::create_snapshot(conn, room_id.as_str(), Some(state_before), &[(state_key_nid, event_nid)])
                .await?;
        db::events::set_state_after(conn, event_nid, after).await?;
    }
    Ok(event_nid)
}
