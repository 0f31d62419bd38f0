//! Fetching from another server what this one lacks to judge a PDU (server-server API,
//! "Checks performed on receipt of a PDU" and "Retrieving events"): the auth chain of a PDU
//! whose auth events are unknown (`/event_auth`), and — when `get_missing_events` could not
//! reach known events — the state before each missing parent (`/state_ids`, then `/event` for
//! the ids not held, a few at a time and bounded). What is fetched is checked and stored as
//! outliers through the one outlier writer; the PDU is then judged against the state resolved
//! over its parents, as the spec's inbound order says.

use crate::db;
use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::federation::inbound::accept::{FetchedParentState, room_of, unique};
use crate::federation::inbound::check::CheckedPdu;
use crate::federation::inbound::outliers::{StoredOutliers, check_fetched, store_outliers};
use crate::rooms::rules_for;
use crate::store::Store;
use futures_util::{StreamExt, stream};
use ruma::api::federation::authorization::get_event_authorization::v1 as event_auth;
use ruma::api::federation::event::{get_event::v1 as get_event, get_room_state_ids::v1 as state_ids};
use ruma::{EventId, OwnedEventId, RoomId, RoomVersionId, ServerName};
use serde_json::value::RawValue as RawJsonValue;
use std::collections::HashSet;
use std::time::Duration;

/// Events fetched one by one for one PDU, at most: a room's state can be large, but a server
/// that names more than this for one gap costs more than the PDU is worth (the PDU is refused;
/// the sender's later events, or a backfill, bring this server up to date).
const MAX_FETCHED_EVENTS: usize = 2_000;
/// `/event` requests in flight at once to one server.
const FETCH_CONCURRENCY: usize = 5;
/// The whole of fetching the state for one PDU, at most.
const STATE_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Fetches from `origin` the auth chain of `pdu` and stores it as outliers, when some of its
/// auth events are not held here; the PDU's own auth check then finds them (or finds them
/// rejected).
pub async fn fetch_unknown_auth_events(ctx: FedCtx<'_>, origin: &ServerName, pdu: &CheckedPdu) -> Result<()> {
    let Some(room_id) = pdu.pdu.room_id.as_deref() else { return Ok(()) };
    let ids: Vec<String> = pdu.pdu.auth_events.iter().map(ToString::to_string).collect();
    let held = db::federation_inbound::known_events(ctx.rooms.pool, &ids).await?;
    if held.len() == unique(&ids) {
        return Ok(());
    }
    let request = event_auth::Request::new(room_id.to_owned(), pdu.pdu.event_id.clone());
    let chain = ctx.client.send(origin, request).await?.auth_chain;
    if chain.len() > MAX_FETCHED_EVENTS {
        return Err(Error::forbidden(format!("{origin} answered an auth chain of {} events", chain.len())));
    }
    let fetched = check_fetched(ctx.key_ring, &pdu.room_version, &chain).await;
    store_fetched(ctx, room_id, pdu, fetched).await?;
    Ok(())
}

/// The state after each of `missing` (parents of `pdu` held as outliers or not at all), as
/// `origin` says it is: `/state_ids` at the parent, the events not held fetched and stored as
/// outliers, the parent itself on top when it is a state event.
pub async fn fetch_parent_states(
    ctx: FedCtx<'_>,
    origin: &ServerName,
    pdu: &CheckedPdu,
    missing: &[OwnedEventId],
) -> Result<Vec<FetchedParentState>> {
    let fetching = async {
        let mut states = Vec::with_capacity(missing.len());
        for parent in missing {
            states.push(fetch_parent_state(ctx, origin, pdu, parent).await?);
        }
        Ok(states)
    };
    tokio::time::timeout(STATE_FETCH_TIMEOUT, fetching).await.map_err(|_| {
        Error::not_found(format!("{origin} did not answer the state before {} in time", pdu.pdu.event_id))
    })?
}

async fn fetch_parent_state(
    ctx: FedCtx<'_>,
    origin: &ServerName,
    pdu: &CheckedPdu,
    parent: &OwnedEventId,
) -> Result<FetchedParentState> {
    let room_id = room_of(pdu)?;
    let answer = ctx.client.send(origin, state_ids::Request::new(parent.clone(), room_id.clone())).await?;
    // The state before the parent, the parent itself, and the auth events of them all.
    let not_held =
        not_held(ctx.rooms.pool, answer.pdu_ids.iter().chain(&answer.auth_chain_ids).chain([parent])).await?;
    if not_held.len() > MAX_FETCHED_EVENTS {
        return Err(Error::forbidden(format!(
            "{origin} names {} unknown events in the state before {parent}",
            not_held.len()
        )));
    }
    let fetched = fetch_events(ctx, origin, &pdu.room_version, &not_held).await;
    store_fetched(ctx, &room_id, pdu, fetched).await?;

    let state_ids: Vec<String> = answer.pdu_ids.iter().map(ToString::to_string).collect();
    let mut entries: Vec<(i64, i64)> = Vec::with_capacity(state_ids.len() + 1);
    let mut keys = HashSet::new();
    let parent_entry = db::federation_inbound::state_entries_of(ctx.rooms.pool, &[parent.to_string()]).await?;
    // The parent's own entry replaces what was before it; then the first of each key stands.
    for entry in parent_entry.iter().chain(&db::federation_inbound::state_entries_of(ctx.rooms.pool, &state_ids).await?)
    {
        if keys.insert(entry.state_key_nid) {
            entries.push((entry.state_key_nid, entry.event_nid));
        }
    }
    // A rejected parent stays out of the state after it (state_entries_of leaves it out), but
    // one that is not held at all cannot be built upon.
    if db::federation_inbound::known_events(ctx.rooms.pool, &[parent.to_string()]).await?.is_empty() {
        return Err(Error::not_found(format!("{parent} could not be fetched from {origin}")));
    }
    Ok(FetchedParentState { parent: parent.clone(), entries })
}

/// The events among `ids` (duplicates allowed) this server holds neither in a room nor as an
/// outlier: what a state answer (`/state_ids`) leaves to fetch.
pub(crate) async fn not_held<'a>(
    pool: &Store,
    ids: impl IntoIterator<Item = &'a OwnedEventId>,
) -> Result<Vec<OwnedEventId>> {
    let wanted: Vec<String> = ids.into_iter().map(ToString::to_string).collect::<HashSet<_>>().into_iter().collect();
    let held: HashSet<String> =
        db::federation_inbound::known_events(pool, &wanted).await?.into_iter().map(|event| event.event_id).collect();
    Ok(wanted.iter().filter(|id| !held.contains(*id)).filter_map(|id| EventId::parse(id.as_str()).ok()).collect())
}

/// Fetches `event_ids` from `origin` one by one (`/event`, a few at a time) and checks them;
/// what fails to come or to pass its checks is left out.
pub async fn fetch_events(
    ctx: FedCtx<'_>,
    origin: &ServerName,
    room_version: &RoomVersionId,
    event_ids: &[OwnedEventId],
) -> Vec<crate::rooms::pdu::Pdu> {
    let raws: Vec<Box<RawJsonValue>> = stream::iter(event_ids.iter().cloned())
        .map(|event_id| async move {
            match ctx.client.send(origin, get_event::Request::new(event_id.clone())).await {
                Ok(answer) => Some(answer.pdu),
                Err(error) => {
                    tracing::info!(%origin, %event_id, %error, "an event could not be fetched");
                    None
                }
            }
        })
        .buffer_unordered(FETCH_CONCURRENCY)
        .filter_map(|fetched| async move { fetched })
        .collect()
        .await;
    let mut fetched = check_fetched(ctx.key_ring, room_version, &raws).await;
    // Only what was asked for: a server answering `/event` with another event gets nothing in.
    let asked: HashSet<&OwnedEventId> = event_ids.iter().collect();
    fetched.retain(|event| asked.contains(&event.event_id));
    fetched
}

/// Stores what was fetched for `pdu`'s room as outliers, under the room's lock.
async fn store_fetched(
    ctx: FedCtx<'_>,
    room_id: &RoomId,
    pdu: &CheckedPdu,
    fetched: Vec<crate::rooms::pdu::Pdu>,
) -> Result<StoredOutliers> {
    let rules = rules_for(&pdu.room_version)?;
    let mut tx = ctx.rooms.pool.begin().await?;
    let _held = ctx.rooms.locks.lock_in(&mut tx, room_id).await?;
    let stored = store_outliers(&mut tx, room_id, &rules, fetched).await?;
    tx.commit().await?;
    Ok(stored)
}
