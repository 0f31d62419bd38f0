//! Rooms as an admin sees them: listing, details, members, state, forward extremities, and
//! blocking (local users may then neither join nor be invited).

use crate::admin::users::{Page, Paging};
use crate::db;
use crate::error::{Error, Result};
use crate::rooms::{facts, served};
use crate::store::Store;
use crate::time::now_ms;
use crate::users::actor::Actor;
use ruma::{RoomId, ServerName};
use serde_json::Value;

pub(crate) use crate::db::admin_rooms::{RoomOrder, RoomSummary};

/// `room_id` as a room id (any server's: rooms are shared).
pub(crate) fn parse_room_id(room_id: &str) -> Result<&RoomId> {
    <&RoomId>::try_from(room_id).map_err(|error| Error::invalid_param(format!("Invalid room id: {error}")))
}

/// `GET /v1/rooms`.
pub(crate) async fn list(
    pool: &Store,
    server_name: &ServerName,
    search: Option<&str>,
    order: RoomOrder,
    descending: bool,
    paging: Paging,
) -> Result<Page<RoomSummary>> {
    let server = server_name.as_str();
    let items = db::admin_rooms::list(pool, server, search, order, descending, paging.from, paging.limit).await?;
    let total = db::admin_rooms::count(pool, server, search).await?;
    let next = paging.next(items.len(), total);
    Ok(Page { items, total, next })
}

/// `GET /v1/rooms/{roomId}`: M_NOT_FOUND for a room this server does not know.
pub(crate) async fn get(pool: &Store, server_name: &ServerName, room_id: &RoomId) -> Result<RoomSummary> {
    db::admin_rooms::get(pool, server_name.as_str(), room_id.as_str())
        .await?
        .ok_or_else(|| Error::not_found("Room not found"))
}

/// `GET /v1/rooms/{roomId}/members`: who is joined.
pub(crate) async fn members(pool: &Store, server_name: &ServerName, room_id: &RoomId) -> Result<Vec<String>> {
    get(pool, server_name, room_id).await?;
    Ok(db::admin_rooms::members_with(pool, room_id.as_str(), &["join"]).await?)
}

/// `GET /v1/rooms/{roomId}/state`: the current state as client events (redacted ones as
/// served to clients).
pub(crate) async fn state(pool: &Store, server_name: &ServerName, room_id: &RoomId) -> Result<Vec<Value>> {
    get(pool, server_name, room_id).await?;
    let entries = db::state::current_state(pool, room_id.as_str()).await?;
    let rules = facts::rules(pool, room_id).await?;
    let events = served::apply_to_state(pool, &rules.redaction, &entries).await?;
    Ok(events.iter().map(|event| event.client_event(room_id)).collect())
}

/// A forward extremity, as `GET /v1/rooms/{roomId}/forward_extremities` lists it.
pub(crate) struct Extremity {
    pub event_id: String,
    pub depth: i64,
    pub received_ts: i64,
}

pub(crate) async fn forward_extremities(
    pool: &Store,
    server_name: &ServerName,
    room_id: &RoomId,
) -> Result<Vec<Extremity>> {
    get(pool, server_name, room_id).await?;
    let extremities = db::admin_rooms::forward_extremities(pool, room_id.as_str()).await?;
    Ok(extremities
        .into_iter()
        .map(|(event_id, depth, received_ts)| Extremity { event_id, depth, received_ts })
        .collect())
}

/// `GET /v1/rooms/{roomId}/block`: who blocked the room, if anyone. (The room need not be
/// known: rooms can be blocked before anyone here joins them.)
pub(crate) async fn blocked_by(pool: &Store, room_id: &RoomId) -> Result<Option<String>> {
    Ok(db::admin_rooms::blocked_by(pool, room_id.as_str()).await?)
}

/// `PUT /v1/rooms/{roomId}/block`; `by` is the admin's user id (or the operator).
pub(crate) async fn set_blocked(pool: &Store, room_id: &RoomId, actor: Actor<'_>, blocked: bool) -> Result<()> {
    if blocked {
        db::admin_rooms::block(pool, room_id.as_str(), &actor.describe(), now_ms()).await?;
    } else {
        db::admin_rooms::unblock(pool, room_id.as_str()).await?;
    }
    Ok(())
}
