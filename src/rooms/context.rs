//! Finding one's way around an event: `/context` (the events around it, with `/messages`
//! tokens) and `timestamp_to_event` (the event closest to a point in time).

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::pagination::page_token;
use crate::rooms::read::Access;
use crate::rooms::served;
use crate::rooms::visibility::Viewer;
use crate::store::Store;
use crate::users::ignore;
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, UserId};
use serde_json::Value;

/// The most context events one request returns (before and after together).
const MAX_CONTEXT: usize = 1000;
/// `timestamp_to_event` reads the timeline in pages of this size, and gives up after
/// `TIMESTAMP_PAGES` pages without an event the user may see.
const TIMESTAMP_PAGE: i64 = 100;
const TIMESTAMP_PAGES: usize = 20;

pub(crate) struct Context {
    pub start: String,
    pub end: String,
    pub events_before: Vec<Value>,
    pub event: Value,
    pub events_after: Vec<Value>,
    pub state: Vec<Value>,
}

/// `GET /rooms/{roomId}/context/{eventId}`. `limit` is shared between the events before
/// (half, rounded down) and after. `start` and `end` are `/messages` tokens: backwards from
/// `start` continues before the earliest event returned, forwards from `end` after the
/// latest. `state` is the state at the last event returned (spec), i.e. the state after it.
/// 404 for an event the user may not see, as for `/event`. With `lazy_load_members`, the
/// state's member events are only those of the returned events' senders (spec: "Lazy-loading
/// room members"; the server keeps no record of what `/context` callers have).
/// A server admin (`Access::Admin`, Synapse's `/_synapse/admin/v1/rooms/{roomId}/context`) sees
/// every event, and ignores no one.
pub(crate) async fn context(
    pool: &Store,
    (user, access): (&UserId, Access),
    room_id: &RoomId,
    event_id: &EventId,
    (limit, lazy_load_members): (usize, bool),
) -> Result<Context> {
    if access == Access::Admin && db::rooms::version(pool, room_id.as_str()).await?.is_none() {
        return Err(Error::not_found("Room not found"));
    }
    let viewer = Viewer::new(pool, user, room_id).await?;
    let readable = async |events: Vec<db::events::StoredEvent>| match access {
        Access::Member => viewer.visible(events).await,
        Access::Admin => crate::rooms::visibility::unfiltered(pool, events),
    };
    let not_found = || Error::not_found("Event not found");
    let stored = db::events::by_id(pool, event_id.as_str())
        .await?
        .filter(|event| event.room_id == room_id.as_str())
        .ok_or_else(not_found)?;
    let position = stored.stream_position.ok_or_else(not_found)?;
    let event = readable(vec![stored]).await?.pop().ok_or_else(not_found)?;

    let limit = limit.min(MAX_CONTEXT);
    let before_limit = limit / 2;
    let after_limit = limit - before_limit;
    let before = if before_limit > 0 {
        db::events::timeline_page(pool, room_id.as_str(), position - 1, true, None, before_limit as i64).await?
    } else {
        Vec::new()
    };
    let after = if after_limit > 0 {
        db::events::timeline_page(pool, room_id.as_str(), position, false, None, after_limit as i64).await?
    } else {
        Vec::new()
    };
    // Tokens follow what was read, not what the user may see, so paginating on never
    // re-reads hidden events.
    let start = before.last().and_then(|event| event.stream_position).unwrap_or(position) - 1;
    let end = after.last().and_then(|event| event.stream_position).unwrap_or(position);

    // Ignored users' events around the event are left out; the event asked for by id is not.
    let ignored = match access {
        Access::Member => ignore::ignored_users(pool, user).await?,
        Access::Admin => Default::default(),
    };
    let unignored = |events: Vec<_>| -> Vec<_> {
        events.into_iter().filter(|(_, pdu)| !crate::rooms::visibility::hidden_by_ignore(&ignored, pdu)).collect()
    };
    let before = unignored(readable(before).await?);
    let after = unignored(readable(after).await?);
    let last = after.last().map_or(event.0.event_nid, |(stored, _)| stored.event_nid);
    let (before_count, after_count) = (before.len(), after.len());
    let mut all = Vec::with_capacity(before_count + 1 + after_count);
    all.extend(before);
    all.push(event);
    all.extend(after);
    let senders: Option<Vec<String>> = lazy_load_members.then(|| {
        let mut senders: Vec<String> = all.iter().map(|(_, pdu)| pdu.sender.to_string()).collect();
        senders.sort_unstable();
        senders.dedup();
        senders
    });
    let mut served = viewer.serve(all).await?;
    let events_after = served.split_off(before_count + 1);
    let event = served.pop().ok_or_else(|| Error::internal("context event vanished"))?;
    let events_before = served;

    let snapshot = db::events::state_after(pool, last).await?.ok_or_else(|| Error::internal("event without state"))?;
    let entries = db::state::snapshot_state_with_members(pool, snapshot, senders.as_deref()).await?;
    let state = served::apply_to_state(pool, &viewer.rules().redaction, &entries).await?;
    let state = state.iter().map(|event| event.client_event(room_id)).collect();
    Ok(Context { start: page_token(start), end: page_token(end), events_before, event, events_after, state })
}

/// `GET /rooms/{roomId}/timestamp_to_event`: the event the user may see closest to `ts` — at
/// or after it (`forwards`) or at or before it. 404 `M_NOT_FOUND` when there is none.
pub(crate) async fn timestamp_to_event(
    pool: &Store,
    user: &UserId,
    room_id: &RoomId,
    ts: MilliSecondsSinceUnixEpoch,
    forwards: bool,
) -> Result<(OwnedEventId, MilliSecondsSinceUnixEpoch)> {
    let viewer = Viewer::with_access(pool, user, room_id).await?;
    let mut cursor = timestamp_cursor(ts, forwards);
    for _ in 0..TIMESTAMP_PAGES {
        let page = db::relations::by_timestamp(pool, room_id.as_str(), cursor, !forwards, TIMESTAMP_PAGE).await?;
        let Some((last_ts, last)) = page.last() else { break };
        cursor = (*last_ts, last.stream_position.unwrap_or(0));
        let fetched = page.len();
        let events = page.into_iter().map(|(_, event)| event).collect();
        if let Some((_, pdu)) = viewer.visible(events).await?.into_iter().next() {
            return Ok((pdu.event_id.clone(), pdu.origin_server_ts));
        }
        if fetched < TIMESTAMP_PAGE as usize {
            break;
        }
    }
    Err(no_event_from(ts, forwards))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/timestamp_to_event`: as the client API's, for a
/// server admin, who sees every event of the room's timeline.
pub(crate) async fn timestamp_to_event_as_admin(
    pool: &Store,
    room_id: &RoomId,
    ts: MilliSecondsSinceUnixEpoch,
    forwards: bool,
) -> Result<(String, i64)> {
    if db::rooms::version(pool, room_id.as_str()).await?.is_none() {
        return Err(Error::not_found("Room not found"));
    }
    let page =
        db::relations::by_timestamp(pool, room_id.as_str(), timestamp_cursor(ts, forwards), !forwards, 1).await?;
    let (origin_server_ts, event) = page.into_iter().next().ok_or_else(|| no_event_from(ts, forwards))?;
    Ok((event.event_id, origin_server_ts))
}

/// Where a walk over (origin_server_ts, stream_position) pairs starts: just outside `ts`, so
/// events at exactly `ts` are included in either direction.
fn timestamp_cursor(ts: MilliSecondsSinceUnixEpoch, forwards: bool) -> (i64, i64) {
    let ts_ms = i64::try_from(u64::from(ts.get())).unwrap_or(i64::MAX);
    if forwards { (ts_ms, i64::MIN) } else { (ts_ms, i64::MAX) }
}

fn no_event_from(ts: MilliSecondsSinceUnixEpoch, forwards: bool) -> Error {
    let direction = if forwards { "forward" } else { "backward" };
    Error::not_found(format!("Unable to find an event from {} in the {direction} direction", u64::from(ts.get())))
}
