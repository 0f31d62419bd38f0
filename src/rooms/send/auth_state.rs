//! The slice of a room's state that authorising one event needs (its auth events, and the
//! create event every check consults), read from the state snapshot before the event and
//! carried between the events of a batch so each reads only what the last did not.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::build::EventTemplate;
use crate::rooms::pdu::Pdu;
use crate::rooms::served;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::{auth_types_for_event, check_state_dependent_auth_rules, check_state_independent_auth_rules};
use ruma::{EventId, OwnedEventId, UserId};
use sqlx::PgConnection;
use std::collections::HashMap;
use std::sync::Arc;

/// Auth-relevant state events of one snapshot, as the auth rules see them (redactions
/// applied); `None` records a key the snapshot lacks. Shared, not copied, into each event's
/// [`AuthState`]: a PDU holds its whole JSON, and deep copies of the same few events for every
/// send were a tenth of the send path's CPU (docs/PERFORMANCE.md).
#[derive(Default)]
pub(super) struct StateSlice {
    snapshot: Option<i64>,
    entries: HashMap<(String, String), Option<Arc<Pdu>>>,
}

/// What decides which state an event's authorisation needs.
struct AuthSubject<'a> {
    kind: &'a TimelineEventType,
    sender: &'a UserId,
    state_key: Option<&'a str>,
    content: &'a serde_json::value::RawValue,
}

/// The slice of the state before an event that its authorisation needs.
pub struct AuthState {
    by_key: HashMap<(String, String), Arc<Pdu>>,
    by_id: HashMap<OwnedEventId, Arc<Pdu>>,
    pub auth_event_ids: Vec<OwnedEventId>,
}

impl AuthState {
    pub async fn load(
        conn: &mut PgConnection,
        snapshot: i64,
        template: &EventTemplate,
        sender: &UserId,
        rules: &RoomVersionRules,
    ) -> Result<AuthState> {
        Self::load_into(conn, &mut StateSlice::default(), snapshot, template, sender, rules).await
    }

    /// As [`AuthState::load`], reading only what `slice` does not hold yet (and keeping it
    /// there for the next event). A slice of another snapshot is dropped first.
    pub(super) async fn load_into(
        conn: &mut PgConnection,
        slice: &mut StateSlice,
        snapshot: i64,
        template: &EventTemplate,
        sender: &UserId,
        rules: &RoomVersionRules,
    ) -> Result<AuthState> {
        let content = serde_json::value::to_raw_value(&template.content).map_err(|e| Error::bad_json(e.to_string()))?;
        let subject =
            AuthSubject { kind: &template.kind, sender, state_key: template.state_key.as_deref(), content: &content };
        Self::load_subject(conn, slice, snapshot, subject, rules).await
    }

    /// The slice of snapshot `snapshot` that authorising the received `pdu` against it needs
    /// (inbound federation: the state before the event, or the current state for soft-failing).
    pub async fn load_for_pdu(
        conn: &mut PgConnection,
        snapshot: i64,
        pdu: &Pdu,
        rules: &RoomVersionRules,
    ) -> Result<AuthState> {
        let subject = AuthSubject {
            kind: &pdu.kind,
            sender: &pdu.sender,
            state_key: pdu.state_key.as_deref(),
            content: &pdu.content,
        };
        Self::load_subject(conn, &mut StateSlice::default(), snapshot, subject, rules).await
    }

    /// The auth state made of an event's own `auth_events` (the first of the spec's two auth
    /// checks on a received PDU), as the auth rules see them (redacted where redacted).
    pub fn from_auth_events(auth_events: Vec<Pdu>) -> AuthState {
        let mut by_key = HashMap::new();
        let mut by_id = HashMap::new();
        for pdu in auth_events {
            let pdu = Arc::new(pdu);
            if let Some(state_key) = &pdu.state_key {
                by_key.insert((pdu.kind.to_string(), state_key.clone()), pdu.clone());
            }
            by_id.insert(pdu.event_id.clone(), pdu);
        }
        let auth_event_ids = by_id.keys().cloned().collect();
        AuthState { by_key, by_id, auth_event_ids }
    }

    async fn load_subject(
        conn: &mut PgConnection,
        slice: &mut StateSlice,
        snapshot: i64,
        subject: AuthSubject<'_>,
        rules: &RoomVersionRules,
    ) -> Result<AuthState> {
        let AuthSubject { kind, sender, state_key, content } = subject;
        let auth_types = auth_types_for_event(kind, sender, state_key, content, &rules.authorization)
            .map_err(|message| Error::bad_json(format!("Invalid event: {message}")))?;
        let mut wanted: Vec<(String, String)> = auth_types.iter().map(|(t, k)| (t.to_string(), k.clone())).collect();
        // The create event is needed for every check, even where it is not an auth event.
        wanted.push((StateEventType::RoomCreate.to_string(), String::new()));

        if slice.snapshot != Some(snapshot) {
            *slice = StateSlice { snapshot: Some(snapshot), entries: HashMap::new() };
        }
        let mut missing: Vec<(String, String)> =
            wanted.iter().filter(|key| !slice.entries.contains_key(*key)).cloned().collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let rows = db::state::snapshot_state_for_keys_with_redactions(&mut *conn, snapshot, &missing).await?;
            for key in missing {
                slice.entries.insert(key, None);
            }
            for row in rows {
                let entry = row.entry;
                let pdu = Pdu::from_stored(&entry.event_id, &entry.json)?;
                let redaction = match (&row.redaction_id, &row.redaction_json) {
                    (Some(id), Some(json)) => Some(Pdu::from_stored(id, json)?),
                    _ => None,
                };
                // Redacted state events count as what the redaction algorithm left of them.
                let served = served::serve(&rules.redaction, entry.event_nid, pdu, redaction)?;
                slice.entries.insert((entry.event_type, entry.state_key), Some(Arc::new(served.pdu)));
            }
        }

        Ok(Self::select(&auth_types, wanted, |key| slice.entries.get(key).and_then(Option::clone)))
    }

    /// The auth state of `template`, sent by `sender`, against a state held in memory: a new
    /// room's, every event of which the caller built.
    pub fn from_state(
        state: &HashMap<(String, String), Pdu>,
        template: &EventTemplate,
        sender: &UserId,
        rules: &RoomVersionRules,
    ) -> Result<AuthState> {
        let content = serde_json::value::to_raw_value(&template.content).map_err(|e| Error::bad_json(e.to_string()))?;
        let auth_types =
            auth_types_for_event(&template.kind, sender, template.state_key.as_deref(), &content, &rules.authorization)
                .map_err(|message| Error::bad_json(format!("Invalid event: {message}")))?;
        let mut wanted: Vec<(String, String)> = auth_types.iter().map(|(t, k)| (t.to_string(), k.clone())).collect();
        wanted.push((StateEventType::RoomCreate.to_string(), String::new()));
        Ok(Self::select(&auth_types, wanted, |key| state.get(key).map(|pdu| Arc::new(pdu.clone()))))
    }

    /// The `wanted` state events `lookup` finds; the auth events are those of `auth_types`.
    fn select(
        auth_types: &[(StateEventType, String)],
        wanted: Vec<(String, String)>,
        lookup: impl Fn(&(String, String)) -> Option<Arc<Pdu>>,
    ) -> AuthState {
        let mut by_key = HashMap::new();
        let mut by_id = HashMap::new();
        for key in wanted {
            if let Some(pdu) = lookup(&key) {
                by_id.insert(pdu.event_id.clone(), pdu.clone());
                by_key.insert(key, pdu);
            }
        }
        let auth_event_ids = auth_types
            .iter()
            .filter_map(|(t, k)| by_key.get(&(t.to_string(), k.clone())))
            .map(|pdu| pdu.event_id.clone())
            .collect();
        AuthState { by_key, by_id, auth_event_ids }
    }

    /// Takes the state events among `events` whose keys the slice lacks (a room joined with a
    /// partial state: the member events the resident left out come from the event's own auth
    /// events until the full state is in, as Synapse resolves them).
    pub fn fill_missing_from(&mut self, events: &[Pdu]) {
        for pdu in events {
            let Some(state_key) = &pdu.state_key else { continue };
            let key = (pdu.kind.to_string(), state_key.clone());
            if !self.by_key.contains_key(&key) {
                let pdu = Arc::new(pdu.clone());
                self.by_id.insert(pdu.event_id.clone(), pdu.clone());
                self.by_key.insert(key, pdu);
            }
        }
    }

    /// One state event of the loaded slice.
    pub fn state_event(&self, kind: &str, state_key: &str) -> Option<&Pdu> {
        self.by_key.get(&(kind.to_owned(), state_key.to_owned())).map(Arc::as_ref)
    }

    /// The spec's authorisation rules for the room version, via ruma.
    pub fn authorize(&self, pdu: &Pdu, rules: &RoomVersionRules) -> Result<()> {
        check_state_independent_auth_rules(&rules.authorization, pdu, |id: &EventId| {
            self.by_id.get(id).map(Arc::as_ref)
        })
        .map_err(|reason| Error::forbidden(format!("The event is not allowed: {reason}")))?;
        self.authorize_by_state(pdu, rules)
    }

    /// Only the rules that depend on the room's state: what a received event must also pass
    /// against the state before it and the current state (server-server API, checks 5 and 6).
    /// Its own auth events were checked against it already, and after a fork they need not be
    /// part of either state (a power levels event replaced on another branch, say).
    pub fn authorize_by_state(&self, pdu: &Pdu, rules: &RoomVersionRules) -> Result<()> {
        check_state_dependent_auth_rules(&rules.authorization, pdu, |kind: &StateEventType, key: &str| {
            self.by_key.get(&(kind.to_string(), key.to_owned())).map(Arc::as_ref)
        })
        .map_err(|reason| Error::forbidden(format!("The event is not allowed: {reason}")))
    }
}
