//! Placing a checked PDU in its room (server-server API, "Checks performed on receipt of a
//! PDU", steps 4-6): authorised against its own auth events, then against the state before it
//! (its parents' states, resolved where they disagree), then against the room's current state —
//! failing only the last soft-fails it: stored, but neither served to clients nor a forward
//! extremity. An accepted event is appended through the same storing and committing path as a
//! local one, under the room's lock, so `/sync`, push and every other reader see it alike.

use crate::db;
use crate::db::federation_inbound::KnownEvent;
use crate::error::{Error, Result};
use crate::federation::inbound::check::CheckedPdu;
use crate::federation::inbound::outliers::{Unplaced, store_unplaced};
use crate::rooms::current_state::adopt_snapshot;
use crate::rooms::pdu::Pdu;
use crate::rooms::send::committed::commit_events;
use crate::rooms::send::{Appended, AuthState, persist, persist_outlier};
use crate::rooms::{RoomCtx, resolve::resolve_snapshots, rules_for, served};
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedEventId, OwnedRoomId, RoomVersionId, ServerName};
use sqlx::PgConnection;
use std::collections::HashSet;

/// What became of an accepted PDU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Appended to the room's timeline at this stream position.
    Timeline { event_id: OwnedEventId, position: i64 },
    /// Allowed by the state before it but not by the current state: stored, not served.
    SoftFailed(OwnedEventId),
    /// Stored before (a retransmission, or an event fetched earlier).
    AlreadyKnown(OwnedEventId),
}

/// Why a PDU could not be placed yet: parents this server does not have. The caller may fetch
/// them (`get_missing_events`) and try again.
#[derive(Clone, Debug)]
pub struct MissingPrevEvents(pub Vec<OwnedEventId>);

/// The room a PDU belongs to; a create event arrives only with a join, never alone.
pub fn room_of(checked: &CheckedPdu) -> Result<OwnedRoomId> {
    checked.pdu.room_id.clone().ok_or_else(|| Error::forbidden("A room's create event is not accepted through /send"))
}

/// The state after a parent whose own state this server does not know (it is held as an
/// outlier): the state another server said was before it (`/state_ids`), with the parent on
/// top, as `(state_key_nid, event_nid)` entries of stored, accepted events.
#[derive(Clone, Debug)]
pub struct FetchedParentState {
    pub parent: OwnedEventId,
    pub entries: Vec<(i64, i64)>,
}

/// Accepts a checked PDU whose parents are stored: `Ok(Err(..))` names the parents that are
/// not. Refusals (auth, ACL, a room this server is not in) are errors; nothing of a refused PDU
/// is stored.
pub async fn accept_with_known_parents(
    ctx: RoomCtx<'_>,
    origin: &ServerName,
    checked: &CheckedPdu,
) -> Result<std::result::Result<Accepted, MissingPrevEvents>> {
    accept_with_parent_states(ctx, origin, checked, &[]).await
}

/// [`accept_with_known_parents`], where `fetched` gives the state after parents that are
/// outliers here (or not held at all): the gap behind the PDU could not be filled, so the
/// state before it is resolved over what its parents' states are said to be (spec: "the
/// server should try to fetch the state at the missing prev events").
pub async fn accept_with_parent_states(
    ctx: RoomCtx<'_>,
    origin: &ServerName,
    checked: &CheckedPdu,
    fetched: &[FetchedParentState],
) -> Result<std::result::Result<Accepted, MissingPrevEvents>> {
    let pdu = &checked.pdu;
    let room_id = room_of(checked)?;
    let stored_version = db::rooms::version(ctx.pool, room_id.as_str())
        .await?
        .ok_or_else(|| Error::not_found(format!("This server is not in room {room_id}")))?;
    if stored_version != checked.room_version.as_str() {
        return Err(Error::bad_json(format!(
            "Room {room_id} is version {stored_version}, not {}",
            checked.room_version
        )));
    }
    let version = RoomVersionId::try_from(stored_version.as_str())
        .map_err(|e| Error::internal(format!("stored room version: {e}")))?;
    let rules = rules_for(&version)?;
    crate::federation::acl::check(ctx.pool, &room_id, origin).await?;
    crate::federation::acl::check(ctx.pool, &room_id, pdu.sender.server_name()).await?;

    let mut tx = ctx.pool.begin().await?;
    let held = ctx.locks.lock_in(&mut tx, &room_id).await?;
    // An event held as an outlier (fetched as state or an auth event) is judged now and moves
    // into the timeline; anything else held was judged already.
    let outlier_nid = match db::federation_inbound::known_events(&mut *tx, &[pdu.event_id.to_string()]).await?.pop() {
        Some(known) if known.rejected => {
            return Err(Error::forbidden(format!("{} was rejected before", pdu.event_id)));
        }
        Some(known) if known.outlier && known.state_after.is_none() => Some(known.event_nid),
        Some(_) => return Ok(Ok(Accepted::AlreadyKnown(pdu.event_id.clone()))),
        None => None,
    };

    // Step 4: auth against the event's own auth events, which must all be stored and accepted.
    let mut auth_ids: Vec<String> = pdu.auth_events.iter().map(ToString::to_string).collect();
    let cited_count = unique(&auth_ids);
    // Since room version 12 the create event is not among the auth events but every check
    // consults it: its id is the room id's.
    let create_id = format!("${}", &room_id.as_str()[1..]);
    let implicit_create = rules.authorization.room_create_event_id_as_room_id && !auth_ids.contains(&create_id);
    if implicit_create {
        auth_ids.push(create_id);
    }
    let auth_events = cited(&mut tx, &auth_ids, &room_id, &rules).await?;
    if auth_events.len() != cited_count + usize::from(implicit_create) {
        let held = db::federation_inbound::known_events(&mut *tx, &auth_ids).await?;
        if let Some(bad) = held.iter().find(|event| event.rejected) {
            let error = Error::forbidden(format!("{}: its auth event {} was rejected", pdu.event_id, bad.event_id));
            return reject(tx, &room_id, pdu, None, error).await;
        }
        return Err(Error::forbidden(format!("{}: some of its auth events are unknown", pdu.event_id)));
    }
    let mut stand_ins = StandIns { auth_events: auth_events.clone(), partial: None };
    if let Err(error) = AuthState::from_auth_events(auth_events).authorize(pdu, &rules) {
        return reject(tx, &room_id, pdu, None, error).await;
    }

    // Step 5: auth against the state before the event.
    let prev_ids: Vec<String> = pdu.prev_events.iter().map(ToString::to_string).collect();
    let parents = db::federation_inbound::known_events(&mut *tx, &prev_ids).await?;
    let placed =
        |id: &OwnedEventId| parents.iter().any(|parent| parent.event_id == id.as_str() && parent.state_after.is_some());
    let missing: Vec<OwnedEventId> = pdu
        .prev_events
        .iter()
        .filter(|id| !placed(id) && !fetched.iter().any(|state| state.parent == **id))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Ok(Err(MissingPrevEvents(missing)));
    }
    if parents.iter().any(|parent| parent.room_id != room_id.as_str()) {
        return Err(Error::forbidden(format!("{}: a prev event is in another room", pdu.event_id)));
    }
    // A rejected parent's state after it is the state before it (it changed nothing).
    let mut parent_states: Vec<i64> = parents.iter().filter_map(|p| p.state_after).collect();
    for state in fetched.iter().filter(|state| !placed(&state.parent)) {
        parent_states.push(db::state::create_snapshot(&mut tx, room_id.as_str(), None, &state.entries).await?);
    }
    let state_before = state_of(&mut tx, &room_id, &rules, parent_states).await?;
    let before_auth = AuthState::load_for_pdu(&mut tx, state_before, pdu, &rules).await?;
    if let Err(error) = stand_ins.authorize(&mut tx, &room_id, before_auth, pdu, &rules).await? {
        return reject(tx, &room_id, pdu, Some(state_before), error).await;
    }

    // Step 6: soft-fail against the current state.
    let extremities = db::events::forward_extremities(&mut *tx, room_id.as_str()).await?;
    let current = state_of(&mut tx, &room_id, &rules, extremities.iter().map(|x| x.state_after).collect()).await?;
    let soft_fail = match current == state_before {
        true => None,
        false => {
            let current_auth = AuthState::load_for_pdu(&mut tx, current, pdu, &rules).await?;
            stand_ins.authorize(&mut tx, &room_id, current_auth, pdu, &rules).await?.err()
        }
    };
    if let Some(reason) = soft_fail {
        tracing::info!(event_id = %pdu.event_id, %reason, "soft-failed: the current state does not allow it");
        store_unplaced(&mut tx, held.room_id(), pdu, Unplaced::SoftFailed { state_before }).await?;
        tx.commit().await?;
        return Ok(Ok(Accepted::SoftFailed(pdu.event_id.clone())));
    }

    let mut reservation = ctx.streams.reserve();
    // Parents held only as outliers (or not at all) get edges too: backfill follows them.
    let mut unique_prevs = prev_ids.clone();
    unique_prevs.sort_unstable();
    unique_prevs.dedup();
    let parent_nids = db::events::intern_event_ids(&mut tx, &unique_prevs).await?;
    let stored = match outlier_nid {
        None => persist(&mut tx, &held, &mut reservation, pdu, state_before, &parent_nids, None).await?,
        Some(event_nid) => {
            match persist_outlier(&mut tx, &held, &mut reservation, pdu, event_nid, state_before, &parent_nids).await? {
                Some(stored) => stored,
                None => return Ok(Ok(Accepted::AlreadyKnown(pdu.event_id.clone()))),
            }
        }
    };
    if extremities.iter().any(|x| !parent_nids.contains(&x.event_nid)) {
        // The event left the room forked: the current state is the resolution of its tips'.
        refresh_current_state(&mut tx, &room_id, &rules, stored.position).await?;
    }
    let appended = Appended::New { pdu: Box::new(pdu.clone()), stored };
    commit_events(ctx, tx, reservation, &room_id, [&appended]).await?;
    Ok(Ok(Accepted::Timeline { event_id: pdu.event_id.clone(), position: stored.position }))
}

/// A room joined with a partial state lacks member events an event may need: its own auth
/// events (checked against it already) stand in for the keys the state lacks, until the full
/// state is in and every event is checked again (`federation::partial_state`). Whether the
/// room is partial is asked only when the state alone refuses the event, so the common case
/// costs nothing.
struct StandIns {
    auth_events: Vec<Pdu>,
    partial: Option<bool>,
}

impl StandIns {
    /// `auth` (a slice of the state before the event, or of the current state) judging `pdu`,
    /// with the stand-ins where the state is partial: `Ok(Err(..))` is a refusal.
    async fn authorize(
        &mut self,
        conn: &mut PgConnection,
        room_id: &OwnedRoomId,
        mut auth: AuthState,
        pdu: &Pdu,
        rules: &RoomVersionRules,
    ) -> Result<Result<()>> {
        let Err(refusal) = auth.authorize_by_state(pdu, rules) else { return Ok(Ok(())) };
        let partial = match self.partial {
            Some(partial) => partial,
            None => *self.partial.insert(db::partial_state::is_partial(&mut *conn, room_id.as_str()).await?),
        };
        if !partial {
            return Ok(Err(refusal));
        }
        auth.fill_missing_from(&self.auth_events);
        Ok(auth.authorize_by_state(pdu, rules))
    }
}

/// Stores `pdu` as rejected (spec: "Rejection": kept so it is not judged again, never served,
/// never an auth event; the state after it is the state before it) and answers `error`.
async fn reject(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    room_id: &OwnedRoomId,
    pdu: &Pdu,
    state_before: Option<i64>,
    error: Error,
) -> Result<std::result::Result<Accepted, MissingPrevEvents>> {
    let reason = error.to_string();
    store_unplaced(&mut tx, room_id, pdu, Unplaced::Rejected { reason: &reason, state_before }).await?;
    tx.commit().await?;
    Err(error)
}

pub(super) fn unique(ids: &[String]) -> usize {
    ids.iter().collect::<HashSet<_>>().len()
}

/// The stored, accepted events of `room_id` among `ids`, as the auth rules see them.
async fn cited(
    conn: &mut PgConnection,
    ids: &[String],
    room_id: &OwnedRoomId,
    rules: &RoomVersionRules,
) -> Result<Vec<Pdu>> {
    let known: Vec<KnownEvent> = db::federation_inbound::known_events(&mut *conn, ids).await?;
    let mut events = Vec::with_capacity(known.len());
    for event in known.into_iter().filter(|event| !event.rejected) {
        let pdu = Pdu::from_stored(&event.event_id, &event.json)?;
        // A v12 create event names no room; its id is the room's.
        let in_room =
            pdu.room_id.as_ref().map_or(room_id.as_str()[1..] == pdu.event_id.as_str()[1..], |r| r == room_id);
        if !in_room || event.room_id != room_id.as_str() {
            return Err(Error::forbidden(format!("{} is in another room", pdu.event_id)));
        }
        events.push((event.event_nid, pdu));
    }
    Ok(served::apply(&mut *conn, &rules.redaction, events).await?.into_iter().map(|served| served.pdu).collect())
}

/// The state where the given snapshots meet: the one snapshot, or their resolution.
pub(crate) async fn state_of(
    conn: &mut PgConnection,
    room_id: &OwnedRoomId,
    rules: &RoomVersionRules,
    mut snapshots: Vec<i64>,
) -> Result<i64> {
    snapshots.sort_unstable();
    snapshots.dedup();
    match snapshots.as_slice() {
        [] => Err(Error::forbidden("The event has no accepted parent")),
        [single] => Ok(*single),
        _ => resolve_snapshots(conn, room_id, rules, &snapshots).await,
    }
}

/// Makes the current state (and membership) the resolution of the room's forward extremities'
/// states.
async fn refresh_current_state(
    conn: &mut PgConnection,
    room_id: &OwnedRoomId,
    rules: &RoomVersionRules,
    position: i64,
) -> Result<()> {
    let extremities = db::events::forward_extremities(&mut *conn, room_id.as_str()).await?;
    let resolved = state_of(conn, room_id, rules, extremities.iter().map(|x| x.state_after).collect()).await?;
    adopt_snapshot(conn, room_id, resolved, position).await
}
