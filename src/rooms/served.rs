//! Events as served to clients and to the authorisation rules: redacted where a redaction
//! applies.
//!
//! The original JSON of a redacted event stays stored, unchanged (admins may need it); every
//! read computes the redacted form with the room version's redaction algorithm (ruma) and
//! adds the redaction under `unsigned.redacted_because`. A redacted state event stays in the
//! room's state, with only the keys the algorithm keeps (spec: "Redactions").

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::parsed;
use crate::rooms::pdu::Pdu;
use crate::store::Store;
use ruma::CanonicalJsonObject;
use ruma::RoomId;
use ruma::canonical_json::redact;
use ruma::room_version_rules::RedactionRules;
use serde_json::{Map, Value};
use sqlx::PgExecutor;
use std::collections::HashMap;

/// An event as clients and the authorisation rules see it: redacted if a redaction applies.
#[derive(Clone, Debug)]
pub(crate) struct Served {
    pub event_nid: i64,
    /// The redacted form when `redaction` is set, else the event as stored.
    pub pdu: Pdu,
    pub redaction: Option<Pdu>,
}

impl Served {
    /// The client-format event, with `unsigned.redacted_because` when redacted.
    pub(crate) fn client_event(&self, room_id: &RoomId) -> Value {
        let mut event = self.pdu.to_client_event(room_id);
        if let Some(redaction) = &self.redaction {
            event["unsigned"]["redacted_because"] = redaction.to_client_event(room_id);
        }
        event
    }

    /// [`Served::client_event`] with the bundled aggregations of the event's children
    /// (`unsigned.m.relations`, when there are any).
    pub(crate) fn client_event_bundled(&self, room_id: &RoomId, bundle: Option<Map<String, Value>>) -> Value {
        let mut client = self.client_event(room_id);
        if let Some(bundle) = bundle.filter(|bundle| !bundle.is_empty()) {
            client["unsigned"]["m.relations"] = Value::Object(bundle);
        }
        client
    }
}

/// Applies the redactions that exist for `events` (event number and parsed event).
pub(crate) async fn apply(
    db: impl PgExecutor<'_>,
    rules: &RedactionRules,
    events: Vec<(i64, Pdu)>,
) -> Result<Vec<Served>> {
    let nids: Vec<i64> = events.iter().map(|(nid, _)| *nid).collect();
    apply_among(db, rules, events, &nids).await
}

/// Like [`apply`] when only `candidates` (event numbers) can have a redaction.
pub(crate) async fn apply_among(
    db: impl PgExecutor<'_>,
    rules: &RedactionRules,
    events: Vec<(i64, Pdu)>,
    candidates: &[i64],
) -> Result<Vec<Served>> {
    let found = db::relations::redactions_of(db, candidates).await?;
    apply_found(rules, events, &found)
}

/// Like [`apply`] with the redactions that apply to them read already
/// ([`db::relations::redactions_of`]).
pub(crate) fn apply_found(
    rules: &RedactionRules,
    events: Vec<(i64, Pdu)>,
    found: &[db::relations::Related],
) -> Result<Vec<Served>> {
    let mut redactions = HashMap::new();
    for row in found {
        redactions.insert(row.target_nid, Pdu::from_stored(&row.event.event_id, &row.event.json)?);
    }
    events.into_iter().map(|(event_nid, pdu)| serve(rules, event_nid, pdu, redactions.remove(&event_nid))).collect()
}

/// State events parsed (event number and event), and the event numbers among them that a
/// redaction may target.
pub(crate) struct ParsedState {
    pub events: Vec<(i64, Pdu)>,
    pub candidates: Vec<i64>,
}

/// The state entries parsed; the candidates are those read without their redaction flag, or
/// flagged.
pub(crate) fn parse_state(pool: &Store, entries: &[db::state::StateEntry]) -> Result<ParsedState> {
    let events = entries
        .iter()
        .map(|entry| Ok((entry.event_nid, parsed::pdu_of_state(pool, entry)?)))
        .collect::<Result<Vec<_>>>()?;
    let candidates =
        entries.iter().filter(|entry| entry.has_redaction != Some(false)).map(|entry| entry.event_nid).collect();
    Ok(ParsedState { events, candidates })
}

/// An event as served, given the redaction that applies to it (if any).
pub(crate) fn serve(rules: &RedactionRules, event_nid: i64, pdu: Pdu, redaction: Option<Pdu>) -> Result<Served> {
    match redaction {
        Some(redaction) => Ok(Served { event_nid, pdu: redacted(&pdu, rules)?, redaction: Some(redaction) }),
        None => Ok(Served { event_nid, pdu, redaction: None }),
    }
}

/// Parses state entries and applies their redactions.
pub(crate) async fn apply_to_state(
    pool: &Store,
    rules: &RedactionRules,
    entries: &[db::state::StateEntry],
) -> Result<Vec<Served>> {
    // Where the state was read with its redaction flags, only flagged events are looked up.
    let ParsedState { events, candidates } = parse_state(pool, entries)?;
    apply_among(pool, rules, events, &candidates).await
}

/// The event as the redaction algorithm of its room version leaves it.
pub(crate) fn redacted(pdu: &Pdu, rules: &RedactionRules) -> Result<Pdu> {
    let object = redact(CanonicalJsonObject::clone(pdu.object()?), rules, None)
        .map_err(|e| Error::internal(format!("redacting {}: {e}", pdu.event_id)))?;
    Pdu::from_canonical(pdu.event_id.clone(), object)
}
