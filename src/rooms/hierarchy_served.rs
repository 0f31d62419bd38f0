//! A space as this server shows it to another server (`GET /_matrix/federation/v1/hierarchy/
//! {roomId}`): the room's summary with its children events, the summaries of the children
//! this server is in and the asking server may see, and the ids of those it may not.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::hierarchy::{children_in_order, children_state};
use crate::rooms::summary::{CurrentState, summary};
use crate::store::Store;
use ruma::{OwnedRoomId, RoomId, ServerName};
use serde_json::Value;

pub(crate) struct ServedSpace {
    /// The summary with `children_state` (the spec's `SpaceHierarchyParentSummary`).
    pub room: Value,
    pub children: Vec<Value>,
    pub inaccessible_children: Vec<OwnedRoomId>,
}

/// The space `room_id` for `origin`; not found when this server does not know the room or
/// `origin` may not see it (the spec's 404 covers both, so nothing leaks).
pub(crate) async fn space_for_server(
    pool: &Store,
    origin: &ServerName,
    room_id: &RoomId,
    suggested_only: bool,
) -> Result<ServedSpace> {
    let Some(state) = visible_state(pool, origin, room_id).await? else {
        return Err(Error::not_found(format!("Room {room_id} is unknown here or not visible to {origin}")));
    };
    let children_state = children_in_order(&Value::Array(children_state(&state)), suggested_only);
    let mut children = Vec::new();
    let mut inaccessible_children = Vec::new();
    for child in &children_state {
        let Some(child_id) = child["state_key"].as_str().and_then(|id| RoomId::parse(id).ok()) else { continue };
        if db::rooms::version(pool, child_id.as_str()).await?.is_none() {
            continue; // the asking server learns of it from children_state and asks elsewhere
        }
        match visible_state(pool, origin, &child_id).await? {
            Some(child_state) => children.push(server_summary(pool, &child_id, &child_state).await?),
            None => inaccessible_children.push(child_id),
        }
    }
    let mut room = server_summary(pool, room_id, &state).await?;
    room["children_state"] = Value::Array(children_state);
    Ok(ServedSpace { room, children, inaccessible_children })
}

/// The room's current state if this server knows the room and `origin` may see it from
/// outside: it is world-readable, open to joins or knocks, `origin` has a member in it
/// (joined or invited), or its restriction admits a room `origin` has members in.
async fn visible_state(pool: &Store, origin: &ServerName, room_id: &RoomId) -> Result<Option<CurrentState>> {
    if db::rooms::version(pool, room_id.as_str()).await?.is_none() {
        return Ok(None);
    }
    let state = CurrentState::load(pool, room_id).await?;
    if state.world_readable() || matches!(state.join_rule().as_str(), "public" | "knock" | "knock_restricted") {
        return Ok(Some(state));
    }
    if db::rooms::server_has_member(pool, room_id.as_str(), origin.as_str()).await? {
        return Ok(Some(state));
    }
    if state.join_rule() == "restricted" {
        for allowed in allowed_room_ids(&state) {
            if db::rooms::server_has_member(pool, &allowed, origin.as_str()).await? {
                return Ok(Some(state));
            }
        }
    }
    Ok(None)
}

fn allowed_room_ids(state: &CurrentState) -> Vec<String> {
    let join_rules = state.content("m.room.join_rules", "");
    join_rules["allow"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|condition| condition["type"] == "m.room_membership")
        .filter_map(|condition| condition["room_id"].as_str().map(str::to_owned))
        .collect()
}

/// The summary, with `allowed_room_ids` for restricted rooms: the asking server decides with
/// them which of its users may see the room.
async fn server_summary(pool: &Store, room_id: &RoomId, state: &CurrentState) -> Result<Value> {
    let mut entry = summary(pool, room_id, state).await?;
    if matches!(state.join_rule().as_str(), "restricted" | "knock_restricted") {
        entry["allowed_room_ids"] = allowed_room_ids(state).into();
    }
    Ok(entry)
}
