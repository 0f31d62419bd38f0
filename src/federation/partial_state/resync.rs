//! Fetching a partial room's full state at our join from the room's servers: `/state_ids` at
//! the join (the state before it and that state's auth chain), then the events not held —
//! one by one (`/event`) when they are few, else all at once (`/state`, which a 10,000-member
//! room answers in one response instead of 10,000) — checked and stored as outliers through
//! the inbound pipeline's one outlier writer. Then [`super::replace`] puts the state in place.

use crate::db;
use crate::db::partial_state::PartialStateRoom;
use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::federation::inbound::state_fetch::{fetch_events, not_held};
use crate::federation::inbound::{check_fetched, store_outliers};
use crate::rooms::pdu::Pdu;
use crate::rooms::rules_for;
use ruma::api::federation::event::{get_room_state::v1 as room_state, get_room_state_ids::v1 as state_ids};
use ruma::{EventId, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, ServerName};
use std::collections::HashSet;

/// Up to this many missing events are fetched one by one; more, with one `/state`.
const ONE_BY_ONE_AT_MOST: usize = 100;

/// Fetches and puts in place the full state of `room`, asking its servers in turn.
pub(super) async fn resync(ctx: FedCtx<'_>, room: &PartialStateRoom) -> Result<()> {
    let room_id = RoomId::parse(&room.room_id).map_err(|e| Error::internal(format!("stored room id: {e}")))?;
    let join_id = EventId::parse(&room.join_event_id).map_err(|e| Error::internal(format!("stored event id: {e}")))?;
    let version = db::rooms::version(ctx.rooms.pool, room_id.as_str())
        .await?
        .ok_or_else(|| Error::internal(format!("partial room {room_id} has no version")))?;
    let version =
        RoomVersionId::try_from(version.as_str()).map_err(|e| Error::internal(format!("room version: {e}")))?;
    let servers = room
        .servers_in_room
        .iter()
        .filter_map(|server| OwnedServerName::try_from(server.as_str()).ok())
        .filter(|server| server != ctx.rooms.server_name);
    let mut last_error = Error::not_found(format!("No server of {room_id} to ask for its state"));
    for server in servers {
        match fetch_state_at(ctx, &server, &room_id, &join_id, &version).await {
            Ok(state) => return super::replace::replace_state(ctx.rooms, &room_id, room, &version, &state).await,
            Err(error) => {
                tracing::info!(%room_id, %server, %error, "partial state: a server did not give the state");
                last_error = error;
            }
        }
    }
    Err(last_error)
}

/// The ids of the state before `join` as `server` says it is, every event of it (and of its
/// auth chain) stored here once this returns.
async fn fetch_state_at(
    ctx: FedCtx<'_>,
    server: &ServerName,
    room_id: &RoomId,
    join: &EventId,
    version: &RoomVersionId,
) -> Result<Vec<OwnedEventId>> {
    let ids = ctx.client.send(server, state_ids::Request::new(join.to_owned(), room_id.to_owned())).await?;
    let not_held = not_held(ctx.rooms.pool, ids.pdu_ids.iter().chain(&ids.auth_chain_ids)).await?;
    let fetched = match not_held.len() {
        0 => Vec::new(),
        few if few <= ONE_BY_ONE_AT_MOST => fetch_events(ctx, server, version, &not_held).await,
        _ => fetch_whole_state(ctx, server, room_id, join, version, &not_held).await?,
    };
    tracing::info!(%room_id, %server, state = ids.pdu_ids.len(), fetched = fetched.len(), "partial state: state fetched");
    store(ctx, room_id, version, fetched).await?;
    Ok(ids.pdu_ids)
}

/// `/state` at `join`: the events of `not_held` among the state and auth chain it answers.
async fn fetch_whole_state(
    ctx: FedCtx<'_>,
    server: &ServerName,
    room_id: &RoomId,
    join: &EventId,
    version: &RoomVersionId,
    not_held: &[OwnedEventId],
) -> Result<Vec<Pdu>> {
    let answer = ctx.client.send(server, room_state::Request::new(join.to_owned(), room_id.to_owned())).await?;
    let raws: Vec<_> = answer.pdus.into_iter().chain(answer.auth_chain).collect();
    let mut fetched = check_fetched(ctx.key_ring, version, &raws).await;
    // Only what was asked for: `/state_ids` named the state, `/state` only carries it.
    let asked: HashSet<&OwnedEventId> = not_held.iter().collect();
    fetched.retain(|pdu| asked.contains(&pdu.event_id));
    Ok(fetched)
}

/// Stores fetched events of `room_id` as outliers, under the room's lock.
async fn store(ctx: FedCtx<'_>, room_id: &RoomId, version: &RoomVersionId, fetched: Vec<Pdu>) -> Result<()> {
    if fetched.is_empty() {
        return Ok(());
    }
    let rules = rules_for(version)?;
    let mut tx = ctx.rooms.pool.begin().await?;
    let _held = ctx.rooms.locks.lock_in(&mut tx, room_id).await?;
    store_outliers(&mut tx, room_id, &rules, fetched).await?;
    tx.commit().await?;
    Ok(())
}
