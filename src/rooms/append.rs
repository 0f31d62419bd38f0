//! Appending a local event to a room: choose its place in the DAG, authorise it against the
//! state before it, and store it with its state, edges and stream position in one
//! transaction. Creation in a room is serialised (in-process lock + PostgreSQL advisory lock),
//! so local senders never fork the DAG.

use crate::db;
use crate::db::events::Extremity;
use crate::error::{Error, Result};
use crate::rooms::build::{EventTemplate, Placement, build_and_sign};
use crate::rooms::pdu::Pdu;
use crate::rooms::{RoomCtx, rules_for};
use crate::streams::Reservation;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::{auth_types_for_event, check_state_dependent_auth_rules, check_state_independent_auth_rules};
use ruma::{EventId, OwnedEventId, RoomId, RoomVersionId, UserId};
use sqlx::PgConnection;
use std::collections::HashMap;

/// The spec allows at most this many `prev_events`.
const MAX_PREV_EVENTS: usize = 10;

/// A client transaction id, for idempotent sends.
#[derive(Clone, Copy)]
pub struct Transaction<'a> {
    pub device_id: &'a str,
    pub txn_id: &'a str,
}

/// Appends a new local event to an existing room (in a commit shared with other sends to
/// the room at the same moment: `rooms::batch`).
pub async fn append(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    sender: &UserId,
    template: EventTemplate,
    transaction: Option<Transaction<'_>>,
) -> Result<OwnedEventId> {
    crate::rooms::batch::append_batched(ctx, room_id, sender, template, transaction).await
}

/// [`append`] within the caller's transaction, which must hold the room's locks: several
/// events (a new room's) then commit together or not at all.
pub async fn append_locked(
    ctx: RoomCtx<'_>,
    tx: &mut PgConnection,
    reservation: &mut Reservation<'_>,
    room_id: &RoomId,
    sender: &UserId,
    template: EventTemplate,
    transaction: Option<Transaction<'_>>,
) -> Result<OwnedEventId> {
    Appender::new(ctx, room_id).append(tx, reservation, sender, template, transaction).await
}

/// Appends events to one room, one after another, inside one transaction that holds the
/// room's locks (a batch of sends). What one append reads — the room version, the forward
/// extremities, the auth state — is carried to the next instead of read again: nobody else
/// can change them while the locks are held, and each append leaves them as the next one
/// needs them. An append that fails changes nothing carried, so the caller may roll it back
/// to a savepoint and go on with the next.
pub struct Appender<'a> {
    ctx: RoomCtx<'a>,
    room_id: &'a RoomId,
    /// Unknown until the first append reads it.
    tip: Option<Tip>,
    auth: StateSlice,
}

/// The room as the next event will see it.
struct Tip {
    rules: RoomVersionRules,
    /// Deepest first.
    extremities: Vec<Extremity>,
}

/// Auth-relevant state events of one snapshot, as the auth rules see them (redactions
/// applied); `None` records a key the snapshot lacks.
#[derive(Default)]
pub struct StateSlice {
    snapshot: Option<i64>,
    entries: HashMap<(String, String), Option<Pdu>>,
}

impl<'a> Appender<'a> {
    pub fn new(ctx: RoomCtx<'a>, room_id: &'a RoomId) -> Appender<'a> {
        Appender { ctx, room_id, tip: None, auth: StateSlice::default() }
    }

    pub async fn append(
        &mut self,
        tx: &mut PgConnection,
        reservation: &mut Reservation<'_>,
        sender: &UserId,
        template: EventTemplate,
        transaction: Option<Transaction<'_>>,
    ) -> Result<OwnedEventId> {
        let room_id = self.room_id;
        // Retransmissions are recognised by device and path; the path names the room and type.
        let txn_key = transaction.map(|txn| db::rooms::TxnKey {
            user_id: sender.as_str(),
            device_id: txn.device_id,
            room_id: room_id.as_str(),
            event_type: &template.kind,
            txn_id: txn.txn_id,
        });
        // A retried request: the first attempt's event stands, nothing new is sent. The first
        // append of a batch asks in the same round trip that reads the room's version and
        // extremities; later ones carry those.
        let tip = match &mut self.tip {
            Some(tip) => {
                if let Some(key) = txn_key
                    && let Some(event_id) = db::rooms::transaction_event(&mut *tx, key).await?
                {
                    return sent_before(&event_id);
                }
                tip
            }
            unknown => {
                let loaded = db::events::room_tip(&mut *tx, room_id.as_str(), txn_key).await?;
                if let Some(event_id) = loaded.transaction_event {
                    return sent_before(&event_id);
                }
                unknown.insert(Tip::new(room_id, loaded.version, loaded.extremities)?)
            }
        };
        let rules = &tip.rules;
        let prev = &tip.extremities[..tip.extremities.len().min(MAX_PREV_EVENTS)];
        if prev.is_empty() {
            return Err(Error::internal(format!("room {room_id} has no events")));
        }
        // Where the DAG has forked (only federation can fork it: local creation is serialised),
        // the state before the new event is the resolution of its parents' states.
        let mut parent_states: Vec<i64> = prev.iter().map(|extremity| extremity.state_after).collect();
        parent_states.sort_unstable();
        parent_states.dedup();
        let state_before = match parent_states.as_slice() {
            [single] => *single,
            _ => crate::rooms::resolve::resolve_snapshots(&mut *tx, room_id, rules, &parent_states).await?,
        };
        let depth = prev.iter().map(|extremity| extremity.depth).max().unwrap_or(0) as u64 + 1;

        let auth_state = AuthState::load_into(&mut *tx, &mut self.auth, state_before, &template, sender, rules).await?;
        let prev_events: Vec<OwnedEventId> = prev.iter().filter_map(|e| EventId::parse(&e.event_id).ok()).collect();
        let placement = Placement {
            room_id: Some(room_id),
            prev_events: &prev_events,
            auth_events: &auth_state.auth_event_ids,
            depth,
        };
        let pdu = build_and_sign(&template, sender, &placement, rules, self.ctx.server_name, self.ctx.key)?;
        auth_state.authorize(&pdu, rules)?;
        // What the auth rules leave to the server: who may redact what, and the spec's checks on
        // relations sent by clients.
        if pdu.kind == TimelineEventType::RoomRedaction {
            crate::rooms::redact::authorize(&mut *tx, room_id, &pdu, &auth_state, rules).await?;
        }
        crate::rooms::relations::check_new(&mut *tx, room_id, &pdu).await?;

        let prev_nids: Vec<i64> = prev.iter().map(|extremity| extremity.event_nid).collect();
        let stored = persist(&mut *tx, reservation, room_id, &pdu, state_before, &prev_nids, txn_key).await?;

        // Stored: the event replaces its parents as an extremity (those beyond the spec's
        // limit of parents stay), and is deeper than any of them.
        let unreferenced = tip.extremities.split_off(prev_nids.len());
        tip.extremities = vec![Extremity {
            event_nid: stored.event_nid,
            event_id: pdu.event_id.to_string(),
            depth: i64::try_from(depth).unwrap_or(i64::MAX),
            state_after: stored.state_after,
        }];
        tip.extremities.extend(unreferenced);
        if pdu.kind == TimelineEventType::RoomRedaction {
            // A redacted state event counts for the auth rules as what redaction leaves of it.
            self.auth = StateSlice::default();
        }
        Ok(pdu.event_id)
    }
}

/// The event a retransmitted send's first attempt created.
fn sent_before(event_id: &str) -> Result<OwnedEventId> {
    EventId::parse(event_id).map_err(|e| Error::internal(format!("stored event id: {e}")))
}

impl Tip {
    fn new(room_id: &RoomId, version: Option<String>, extremities: Vec<Extremity>) -> Result<Tip> {
        let version = version.ok_or_else(|| Error::not_found(format!("Unknown room {room_id}")))?;
        let version = RoomVersionId::try_from(version.as_str())
            .map_err(|e| Error::internal(format!("stored room version: {e}")))?;
        Ok(Tip { rules: rules_for(&version)?, extremities })
    }
}

/// The slice of the state before an event that its authorisation needs.
pub struct AuthState {
    by_key: HashMap<(String, String), Pdu>,
    by_id: HashMap<OwnedEventId, Pdu>,
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
    async fn load_into(
        conn: &mut PgConnection,
        slice: &mut StateSlice,
        snapshot: i64,
        template: &EventTemplate,
        sender: &UserId,
        rules: &RoomVersionRules,
    ) -> Result<AuthState> {
        let content = serde_json::value::to_raw_value(&template.content).map_err(|e| Error::bad_json(e.to_string()))?;
        let kind = TimelineEventType::from(template.kind.as_str());
        let auth_types =
            auth_types_for_event(&kind, sender, template.state_key.as_deref(), &content, &rules.authorization)
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
                let served = crate::rooms::redact::serve(&rules.redaction, entry.event_nid, pdu, redaction)?;
                slice.entries.insert((entry.event_type, entry.state_key), Some(served.pdu));
            }
        }

        let mut by_key = HashMap::new();
        let mut by_id = HashMap::new();
        for key in wanted {
            if let Some(Some(pdu)) = slice.entries.get(&key) {
                by_id.insert(pdu.event_id.clone(), pdu.clone());
                by_key.insert(key, pdu.clone());
            }
        }
        let auth_event_ids = auth_types
            .iter()
            .filter_map(|(t, k)| by_key.get(&(t.to_string(), k.clone())))
            .map(|pdu| pdu.event_id.clone())
            .collect();
        Ok(AuthState { by_key, by_id, auth_event_ids })
    }

    /// One state event of the loaded slice.
    pub fn state_event(&self, kind: &str, state_key: &str) -> Option<&Pdu> {
        self.by_key.get(&(kind.to_owned(), state_key.to_owned()))
    }

    /// The spec's authorisation rules for the room version, via ruma.
    pub fn authorize(&self, pdu: &Pdu, rules: &RoomVersionRules) -> Result<()> {
        check_state_independent_auth_rules(&rules.authorization, pdu, |id: &EventId| self.by_id.get(id).cloned())
            .map_err(|reason| Error::forbidden(format!("The event is not allowed: {reason}")))?;
        check_state_dependent_auth_rules(&rules.authorization, pdu, |kind: &StateEventType, key: &str| {
            self.by_key.get(&(kind.to_string(), key.to_owned())).cloned()
        })
        .map_err(|reason| Error::forbidden(format!("The event is not allowed: {reason}")))
    }
}

/// Where [`persist`] put an event.
pub struct Stored {
    pub event_nid: i64,
    pub state_after: i64,
    pub position: i64,
}

/// Stores an authorised event: interned id, the event row, its edges, the state after it,
/// current state and membership, the room's new forward extremity, and the client
/// transaction id of a send.
pub async fn persist(
    conn: &mut PgConnection,
    reservation: &mut Reservation<'_>,
    room_id: &RoomId,
    pdu: &Pdu,
    state_before: i64,
    prev_nids: &[i64],
    transaction: Option<db::rooms::TxnKey<'_>>,
) -> Result<Stored> {
    let kind = pdu.kind.to_string();
    let state_key_nid = match &pdu.state_key {
        Some(state_key) => Some(db::state::intern_state_key(conn, &kind, state_key).await?),
        None => None,
    };
    let position = reservation.next(conn).await?;
    let json = pdu.canonical_json();
    let auth_ids: Vec<String> = pdu.auth_events.iter().map(ToString::to_string).collect();
    let event = db::events::NewEvent {
        room_id: room_id.as_str(),
        event_type: &kind,
        state_key_nid,
        sender: pdu.sender.as_str(),
        origin_server_ts: i64::from(pdu.origin_server_ts.get()),
        depth: i64::try_from(u64::from(pdu.depth)).unwrap_or(i64::MAX),
        stream_position: position,
        state_before,
        state_after: state_before,
        json: &json,
    };
    let (event_nid, auth_found) =
        db::events::insert_with_edges(conn, &event, pdu.event_id.as_str(), prev_nids, &auth_ids, transaction).await?;
    // Auth events are always stored before an event cites them; an edge lost here would
    // break the auth chains that federation serves.
    if usize::try_from(auth_found).ok() != Some(auth_ids.len()) {
        return Err(Error::internal(format!("{}: {auth_found} of its auth events are stored", pdu.event_id)));
    }
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
