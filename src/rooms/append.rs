//! Appending a local event to a room: choose its place in the DAG, authorise it against the
//! state before it, and store it with its state, edges and stream position in one
//! transaction. Creation in a room is serialised (in-process lock + PostgreSQL advisory lock),
//! so local senders never fork the DAG.

use crate::db;
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
    // Retransmissions are recognised by device and path; the path names the room and type.
    let txn_key = transaction.map(|txn| db::rooms::TxnKey {
        user_id: sender.as_str(),
        device_id: txn.device_id,
        room_id: room_id.as_str(),
        event_type: &template.kind,
        txn_id: txn.txn_id,
    });
    if let Some(key) = txn_key
        && let Some(event_id) = db::rooms::transaction_event(&mut *tx, key).await?
    {
        // A retried request: the first attempt's event stands, nothing new is sent.
        return EventId::parse(event_id).map_err(|e| Error::internal(format!("stored event id: {e}")));
    }

    let version = db::rooms::version(&mut *tx, room_id.as_str())
        .await?
        .ok_or_else(|| Error::not_found(format!("Unknown room {room_id}")))?;
    let version =
        RoomVersionId::try_from(version.as_str()).map_err(|e| Error::internal(format!("stored room version: {e}")))?;
    let rules = rules_for(&version)?;

    let extremities = db::events::forward_extremities(&mut *tx, room_id.as_str()).await?;
    let prev: Vec<_> = extremities.into_iter().take(MAX_PREV_EVENTS).collect();
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
        _ => crate::rooms::resolve::resolve_snapshots(&mut *tx, room_id, &rules, &parent_states).await?,
    };
    let depth = prev.iter().map(|extremity| extremity.depth).max().unwrap_or(0) as u64 + 1;

    let auth_state = AuthState::load(&mut *tx, state_before, &template, sender, &rules).await?;
    let prev_events: Vec<OwnedEventId> = prev.iter().filter_map(|e| EventId::parse(&e.event_id).ok()).collect();
    let placement =
        Placement { room_id: Some(room_id), prev_events: &prev_events, auth_events: &auth_state.auth_event_ids, depth };
    let pdu = build_and_sign(&template, sender, &placement, &rules, ctx.server_name, ctx.key)?;
    auth_state.authorize(&pdu, &rules)?;
    // What the auth rules leave to the server: who may redact what, and the spec's checks on
    // relations sent by clients.
    if pdu.kind == TimelineEventType::RoomRedaction {
        crate::rooms::redact::authorize(&mut *tx, room_id, &pdu, &auth_state, &rules).await?;
    }
    crate::rooms::relations::check_new(&mut *tx, room_id, &pdu).await?;

    let prev_nids: Vec<i64> = prev.iter().map(|extremity| extremity.event_nid).collect();
    persist(&mut *tx, reservation, room_id, &pdu, state_before, &prev_nids).await?;
    if let Some(key) = txn_key {
        db::rooms::record_transaction(&mut *tx, key, pdu.event_id.as_str()).await?;
    }
    Ok(pdu.event_id)
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
        let content = serde_json::value::to_raw_value(&template.content).map_err(|e| Error::bad_json(e.to_string()))?;
        let kind = TimelineEventType::from(template.kind.as_str());
        let auth_types =
            auth_types_for_event(&kind, sender, template.state_key.as_deref(), &content, &rules.authorization)
                .map_err(|message| Error::bad_json(format!("Invalid event: {message}")))?;
        let mut wanted: Vec<(String, String)> = auth_types.iter().map(|(t, k)| (t.to_string(), k.clone())).collect();
        // The create event is needed for every check, even where it is not an auth event.
        wanted.push((StateEventType::RoomCreate.to_string(), String::new()));
        let entries = db::state::snapshot_state_for_keys(&mut *conn, snapshot, &wanted).await?;

        // Redacted state events count as what the redaction algorithm left of them.
        let served = crate::rooms::redact::apply_to_state(&mut *conn, &rules.redaction, &entries).await?;
        let mut by_key = HashMap::new();
        let mut by_id = HashMap::new();
        for (entry, served) in entries.into_iter().zip(served) {
            let pdu = served.pdu;
            by_id.insert(pdu.event_id.clone(), pdu.clone());
            by_key.insert((entry.event_type, entry.state_key), pdu);
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

/// Stores an authorised event: interned ids, the event row, its edges, the state after it,
/// current state and membership, and the room's new forward extremity.
pub async fn persist(
    conn: &mut PgConnection,
    reservation: &mut Reservation<'_>,
    room_id: &RoomId,
    pdu: &Pdu,
    state_before: i64,
    prev_nids: &[i64],
) -> Result<i64> {
    let mut ids = vec![pdu.event_id.to_string()];
    ids.extend(pdu.auth_events.iter().map(ToString::to_string));
    let nids = db::events::intern_event_ids(conn, &ids).await?;
    let (event_nid, auth_nids) = match nids.split_first() {
        Some((event_nid, auth_nids)) => (*event_nid, auth_nids.to_vec()),
        None => return Err(Error::internal("interning returned nothing")),
    };
    let kind = pdu.kind.to_string();
    let state_key_nid = match &pdu.state_key {
        Some(state_key) => Some(db::state::intern_state_key(conn, &kind, state_key).await?),
        None => None,
    };
    let position = reservation.next(conn).await?;
    let json = pdu.canonical_json();
    db::events::insert(
        conn,
        &db::events::NewEvent {
            event_nid,
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
        },
    )
    .await?;
    db::events::insert_edges(conn, event_nid, prev_nids, &auth_nids).await?;
    crate::rooms::relations::record(conn, room_id, pdu, event_nid).await?;
    if let (Some(state_key_nid), Some(state_key)) = (state_key_nid, &pdu.state_key) {
        let state_after =
            db::state::create_snapshot(conn, room_id.as_str(), Some(state_before), &[(state_key_nid, event_nid)])
                .await?;
        db::events::set_state_after(conn, event_nid, state_after).await?;
        db::state::set_current_state(conn, room_id.as_str(), state_key_nid, event_nid).await?;
        if pdu.kind == TimelineEventType::RoomMember {
            let membership = pdu.content_value()["membership"].as_str().unwrap_or("leave").to_owned();
            db::rooms::set_membership(conn, room_id.as_str(), state_key, &membership, event_nid, position).await?;
        }
    }
    db::events::advance_forward_extremities(conn, room_id.as_str(), prev_nids, event_nid).await?;
    Ok(position)
}
