//! Backfill (server-server API, "Backfilling and retrieving missing events"): a local user
//! paging `/messages` backwards past the oldest event this server holds of a room — where its
//! timeline events name parents it does not have, the room's backward extremities, typically
//! the latest events before this server joined — has the missing history fetched from another
//! server in the room (`GET /backfill`).
//!
//! What comes back is checked like any fetched event (format, signatures, content hash; its
//! auth events fetched with `/event_auth` where unknown, then each event against its auth
//! events — the one outlier writer), and placed in the room's past: the state before the
//! oldest events of a batch is what the other server says it was (`/state_ids` at their
//! parents), the state before the others follows from their parents; each event must also
//! pass against that state. Backfilled events take positions from a descending sequence of
//! negative numbers, so `/sync` never sees them as new while `/messages` pages through them
//! newest first; they are never forward extremities and never change the current state.
//!
//! Backfill never fails a `/messages` request: it is bounded (a few rounds, one deadline) and
//! whatever goes wrong is logged while the page is served from what is held. Once placed, an
//! event is a timeline event like any other and no longer a gap, so history is fetched once.

use crate::db;
use crate::db::federation_inbound::KnownEvent;
use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::federation::inbound::accept::state_of;
use crate::federation::inbound::outliers::in_room;
use crate::federation::inbound::state_fetch::{fetch_parent_states, fetch_unknown_auth_events};
use crate::federation::inbound::{CheckedPdu, FetchedParentState, check_fetched, store_outliers};
use crate::federation::query::servers_in_room;
use crate::rooms::pdu::Pdu;
use crate::rooms::read::{self, HistoryRequest, Page};
use crate::rooms::send::AuthState;
use crate::rooms::{facts, rules_for};
use ruma::api::federation::backfill::get_backfill::v1 as get_backfill;
use ruma::events::TimelineEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedEventId, OwnedRoomId, RoomId, RoomVersionId, ServerName, UInt, UserId};
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The most backfill rounds one `/messages` request waits for.
const MAX_ROUNDS: usize = 5;
/// The whole of backfilling for one `/messages` request, at most: after it, the page is served
/// from what is held.
const BACKFILL_DEADLINE: Duration = Duration::from_secs(20);
/// Events asked for per round; the spec's servers cap `/backfill` at 100.
const MIN_BATCH: usize = 20;
const MAX_BATCH: usize = 100;
/// Gaps asked about at once (the oldest first).
const MAX_EXTREMITIES: i64 = 5;
/// Servers tried per round before giving up on it.
const MAX_SERVERS_TRIED: usize = 3;
/// Events of one batch whose auth chains (`/event_auth`) or parents' states (`/state_ids`) are
/// fetched, at most: a linear history needs one state fetch per batch (its oldest event).
const MAX_CHAIN_FETCHES: usize = 5;
const MAX_STATE_FETCHES: usize = 3;

/// `GET /rooms/{roomId}/messages`: a page of history, backfilled from other servers first when
/// paging backwards runs out of what this server holds.
pub(crate) async fn messages(
    ctx: FedCtx<'_>,
    user: &UserId,
    room_id: &RoomId,
    request: HistoryRequest<'_>,
) -> Result<Page> {
    let pool = ctx.rooms.pool;
    let mut page = read::messages(pool, user, room_id, request).await?;
    // A page with an `end` is full; a page bounded by `to` stops where the client asked.
    if !request.backwards || request.to.is_some() {
        return Ok(page);
    }
    let deadline = Instant::now() + BACKFILL_DEADLINE;
    for _ in 0..MAX_ROUNDS {
        if page.end.is_some() {
            break;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let batch = request.limit.clamp(MIN_BATCH, MAX_BATCH);
        match tokio::time::timeout(remaining, backfill(ctx, room_id, batch)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(placed)) => tracing::debug!(%room_id, placed, "backfilled"),
            Ok(Err(error)) => {
                tracing::info!(%room_id, %error, "backfill failed; serving the history held");
                break;
            }
            Err(_) => {
                tracing::info!(%room_id, "backfill did not finish in time; serving the history held");
                break;
            }
        }
        page = read::messages(pool, user, room_id, request).await?;
    }
    Ok(page)
}

/// One round: asks the room's other servers, in turn, for up to `limit` events behind the
/// room's backward extremities and places what they answer. Returns how many events were
/// placed (0: nothing to fetch, or nobody had anything).
pub(crate) async fn backfill(ctx: FedCtx<'_>, room_id: &RoomId, limit: usize) -> Result<usize> {
    let pool = ctx.rooms.pool;
    let extremities: Vec<OwnedEventId> = db::backfill::backward_extremities(pool, room_id.as_str(), MAX_EXTREMITIES)
        .await?
        .into_iter()
        .filter_map(|id| ruma::EventId::parse(id).ok())
        .collect();
    if extremities.is_empty() {
        return Ok(0);
    }
    let version = facts::version(pool, room_id).await?.ok_or_else(|| Error::not_found("Unknown room"))?;
    let own = ctx.rooms.server_name;
    let servers = servers_in_room(pool, own, room_id).await?;
    for server in servers.iter().filter(|server| *server != own).take(MAX_SERVERS_TRIED) {
        match backfill_from(ctx, server, room_id, &version, &extremities, limit).await {
            Ok(0) => tracing::info!(%room_id, %server, "a server had no history to backfill"),
            Ok(placed) => return Ok(placed),
            Err(error) => tracing::info!(%room_id, %server, %error, "backfill from a server failed"),
        }
    }
    Ok(0)
}

async fn backfill_from(
    ctx: FedCtx<'_>,
    server: &ServerName,
    room_id: &RoomId,
    version: &RoomVersionId,
    extremities: &[OwnedEventId],
    limit: usize,
) -> Result<usize> {
    let limit = UInt::try_from(limit).unwrap_or(UInt::MIN);
    let request = get_backfill::Request::new(room_id.to_owned(), extremities.to_vec(), limit);
    let mut raws = ctx.client.send(server, request).await?.pdus;
    raws.truncate(MAX_BATCH);
    let mut seen = HashSet::new();
    let batch: Vec<Pdu> = check_fetched(ctx.key_ring, version, &raws)
        .await
        .into_iter()
        .filter(|pdu| in_room(pdu, room_id) && seen.insert(pdu.event_id.clone()))
        .collect();
    if batch.is_empty() {
        return Ok(0);
    }
    let checked = |pdu: &Pdu| CheckedPdu { pdu: pdu.clone(), room_version: version.clone(), redacted: false };
    for pdu in with_unknown_auth_events(ctx, &batch).await?.into_iter().take(MAX_CHAIN_FETCHES) {
        if let Err(error) = fetch_unknown_auth_events(ctx, server, &checked(pdu)).await {
            tracing::info!(%server, event_id = %pdu.event_id, %error, "a backfilled event's auth chain is missing");
        }
    }
    let mut fetched_states = Vec::new();
    for (pdu, missing) in with_unplaced_parents(ctx, &batch).await?.into_iter().take(MAX_STATE_FETCHES) {
        match fetch_parent_states(ctx, server, &checked(pdu), &missing).await {
            Ok(states) => fetched_states.extend(states),
            Err(error) => {
                tracing::info!(%server, event_id = %pdu.event_id, %error, "the state before a backfilled event is unknown");
            }
        }
    }
    let rules = rules_for(version)?;
    place(ctx, &room_id.to_owned(), &rules, batch, &fetched_states).await
}

/// The events of `batch` citing auth events neither in it nor stored here.
async fn with_unknown_auth_events<'b>(ctx: FedCtx<'_>, batch: &'b [Pdu]) -> Result<Vec<&'b Pdu>> {
    let unknown = cited_outside(ctx, batch, |pdu| &pdu.auth_events, |_| true).await?;
    Ok(batch.iter().filter(|pdu| unknown_among(&unknown, &pdu.auth_events).next().is_some()).collect())
}

/// The events of `batch` (oldest first) with parents neither in it nor placed in the timeline
/// here, and those parents: where the batch reaches beyond what is known.
async fn with_unplaced_parents<'b>(ctx: FedCtx<'_>, batch: &'b [Pdu]) -> Result<Vec<(&'b Pdu, Vec<OwnedEventId>)>> {
    let placed = |event: &KnownEvent| event.state_after.is_some();
    let unplaced = cited_outside(ctx, batch, |pdu| &pdu.prev_events, placed).await?;
    let mut found: Vec<(&Pdu, Vec<OwnedEventId>)> = batch
        .iter()
        .map(|pdu| (pdu, unknown_among(&unplaced, &pdu.prev_events).cloned().collect::<Vec<_>>()))
        .filter(|(_, missing)| !missing.is_empty())
        .collect();
    found.sort_by_key(|(pdu, _)| u64::from(pdu.depth));
    Ok(found)
}

/// The ids `cites` names of events in `batch` that are neither in it nor stored here as `held`
/// says.
async fn cited_outside(
    ctx: FedCtx<'_>,
    batch: &[Pdu],
    cites: impl Fn(&Pdu) -> &[OwnedEventId],
    held: impl Fn(&KnownEvent) -> bool,
) -> Result<HashSet<OwnedEventId>> {
    let in_batch: HashSet<&OwnedEventId> = batch.iter().map(|pdu| &pdu.event_id).collect();
    let outside: HashSet<&OwnedEventId> = batch.iter().flat_map(&cites).filter(|id| !in_batch.contains(id)).collect();
    let ids: Vec<String> = outside.iter().map(ToString::to_string).collect();
    let known: HashSet<String> = db::federation_inbound::known_events(ctx.rooms.pool, &ids)
        .await?
        .into_iter()
        .filter(|event| held(event))
        .map(|event| event.event_id)
        .collect();
    Ok(outside.into_iter().filter(|id| !known.contains(id.as_str())).cloned().collect())
}

fn unknown_among<'i>(
    unknown: &'i HashSet<OwnedEventId>,
    ids: &'i [OwnedEventId],
) -> impl Iterator<Item = &'i OwnedEventId> + 'i {
    ids.iter().filter(|id| unknown.contains(*id))
}

/// Stores `batch` as outliers (each judged against its auth events) and places those it can
/// in the room's past, oldest first, under the room's lock in one transaction.
async fn place(
    ctx: FedCtx<'_>,
    room_id: &OwnedRoomId,
    rules: &RoomVersionRules,
    batch: Vec<Pdu>,
    fetched: &[FetchedParentState],
) -> Result<usize> {
    let wanted: HashSet<OwnedEventId> = batch.iter().map(|pdu| pdu.event_id.clone()).collect();
    let mut tx = ctx.rooms.pool.begin().await?;
    let _held = ctx.rooms.locks.lock_in(&mut tx, room_id).await?;
    let stored = store_outliers(&mut tx, room_id, rules, batch).await?;
    let mut candidates: Vec<(Pdu, i64)> =
        stored.accepted.into_iter().filter(|(pdu, _)| wanted.contains(&pdu.event_id)).collect();
    candidates.sort_by_key(|(pdu, _)| u64::from(pdu.depth));

    // The state after each parent placed here already (and after each candidate, which may be
    // placed already too).
    let related: Vec<String> = candidates
        .iter()
        .flat_map(|(pdu, _)| std::iter::once(&pdu.event_id).chain(&pdu.prev_events))
        .map(ToString::to_string)
        .collect();
    let mut state_after: HashMap<String, i64> = db::federation_inbound::known_events(&mut *tx, &related)
        .await?
        .into_iter()
        .filter_map(|event| event.state_after.map(|after| (event.event_id, after)))
        .collect();
    let positions = db::backfill::take_positions(&mut tx, candidates.len()).await?;
    let mut placed = 0;
    for ((pdu, event_nid), position) in candidates.iter().zip(positions) {
        if state_after.contains_key(pdu.event_id.as_str()) {
            continue;
        }
        let Some(state_before) = state_before(&mut tx, room_id, rules, pdu, &state_after, fetched).await? else {
            tracing::info!(event_id = %pdu.event_id, "the state before a backfilled event is unknown; kept as an outlier");
            continue;
        };
        if pdu.kind != TimelineEventType::RoomCreate
            && let Err(error) =
                AuthState::load_for_pdu(&mut tx, state_before, pdu, rules).await?.authorize_by_state(pdu, rules)
        {
            tracing::info!(event_id = %pdu.event_id, %error, "a backfilled event fails against the state before it");
            continue;
        }
        if !db::backfill::place_backfilled(&mut tx, room_id.as_str(), *event_nid, position, state_before).await? {
            continue;
        }
        crate::rooms::relations::record(&mut tx, room_id, pdu, *event_nid).await?;
        let mut after = state_before;
        if let Some(state_key) = &pdu.state_key {
            let key_nid = db::state::intern_state_key(&mut tx, &pdu.kind.to_string(), state_key).await?;
            after = db::state::create_snapshot(&mut tx, room_id.as_str(), Some(state_before), &[(key_nid, *event_nid)])
                .await?;
            db::events::set_state_after(&mut tx, *event_nid, after).await?;
        }
        state_after.insert(pdu.event_id.to_string(), after);
        placed += 1;
    }
    tx.commit().await?;
    Ok(placed)
}

/// The state before `pdu`: where its parents' states meet (those placed here, or as `fetched`
/// says); empty before the create event; `None` when a parent's state is unknown.
async fn state_before(
    conn: &mut PgConnection,
    room_id: &OwnedRoomId,
    rules: &RoomVersionRules,
    pdu: &Pdu,
    state_after: &HashMap<String, i64>,
    fetched: &[FetchedParentState],
) -> Result<Option<i64>> {
    if pdu.prev_events.is_empty() {
        if pdu.kind != TimelineEventType::RoomCreate {
            return Ok(None);
        }
        return Ok(Some(db::state::create_empty_snapshot(conn, room_id.as_str()).await?));
    }
    let mut snapshots = Vec::with_capacity(pdu.prev_events.len());
    for parent in &pdu.prev_events {
        if let Some(after) = state_after.get(parent.as_str()) {
            snapshots.push(*after);
        } else if let Some(state) = fetched.iter().find(|state| state.parent == *parent) {
            snapshots.push(db::state::create_snapshot(conn, room_id.as_str(), None, &state.entries).await?);
        } else {
            return Ok(None);
        }
    }
    state_of(conn, room_id, rules, snapshots).await.map(Some)
}
