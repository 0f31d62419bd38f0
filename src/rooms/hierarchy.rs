//! Space hierarchies (`GET /v1/rooms/{roomId}/hierarchy`) over the rooms this server knows:
//! breadth-first from the root along `m.space.child` events, skipping rooms the user may
//! not preview.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::summary::{CurrentState, can_preview, summary};
use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::{HashSet, VecDeque};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;
const MAX_DEPTH: usize = 16;
/// Bound on the rooms walked for one request, so a huge or cyclic graph stays cheap.
const MAX_ROOMS_WALKED: usize = 1000;

pub struct HierarchyRequest<'a> {
    pub from: Option<&'a str>,
    pub limit: Option<usize>,
    pub max_depth: Option<usize>,
    pub suggested_only: bool,
}

pub struct HierarchyPage {
    pub rooms: Vec<Value>,
    pub next_batch: Option<String>,
}

pub async fn hierarchy(
    pool: &PgPool,
    user: &UserId,
    root: &RoomId,
    request: HierarchyRequest<'_>,
) -> Result<HierarchyPage> {
    let skip = match request.from {
        Some(token) => token
            .strip_prefix('h')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Error::invalid_param(format!("Invalid pagination token {token:?}")))?,
        None => 0,
    };
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let max_depth = request.max_depth.unwrap_or(MAX_DEPTH).min(MAX_DEPTH);

    if db::rooms::version(pool, root.as_str()).await?.is_none() {
        return Err(Error::not_found(format!("Unknown room {root}")));
    }
    let root_state = CurrentState::load(pool, root).await?;
    if !can_preview(pool, user, &root_state).await? {
        return Err(Error::forbidden("You cannot see this space"));
    }

    let mut rooms = Vec::new();
    let mut seen: HashSet<OwnedRoomId> = HashSet::new();
    let mut queue: VecDeque<(OwnedRoomId, usize)> = VecDeque::from([(root.to_owned(), 0)]);
    seen.insert(root.to_owned());
    while let Some((room_id, depth)) = queue.pop_front() {
        if rooms.len() >= MAX_ROOMS_WALKED || rooms.len() > skip + limit {
            break;
        }
        if db::rooms::version(pool, room_id.as_str()).await?.is_none() {
            continue; // a child on another server: federation is not implemented yet
        }
        let state = CurrentState::load(pool, &room_id).await?;
        if !can_preview(pool, user, &state).await? {
            continue;
        }
        let mut children_state = Vec::new();
        // The spec's child order: by `order` (children without one last), then by when the
        // child was added, then by room id.
        let mut children: Vec<_> = state.events_of_type("m.space.child").collect();
        children.sort_by_key(|child| {
            let content = child.content_value();
            let order = content["order"].as_str().filter(|order| order.len() <= 50).map(str::to_owned);
            (order.is_none(), order, child.origin_server_ts, child.state_key.clone())
        });
        for child in children {
            let content = child.content_value();
            let valid = content["via"].as_array().is_some_and(|via| !via.is_empty());
            if !valid || (request.suggested_only && content["suggested"] != true) {
                continue;
            }
            let Some(child_id) = child.state_key.as_deref().and_then(|id| RoomId::parse(id).ok()) else { continue };
            children_state.push(json!({
                "type": "m.space.child",
                "state_key": child_id,
                "content": content,
                "sender": child.sender,
                "origin_server_ts": child.origin_server_ts,
            }));
            if depth < max_depth && seen.insert(child_id.clone()) {
                queue.push_back((child_id, depth + 1));
            }
        }
        let mut entry = summary(pool, &room_id, &state).await?;
        entry["children_state"] = Value::Array(children_state);
        rooms.push(entry);
    }
    let more = rooms.len() > skip + limit;
    let page: Vec<Value> = rooms.into_iter().skip(skip).take(limit).collect();
    Ok(HierarchyPage { rooms: page, next_batch: more.then(|| format!("h{}", skip + limit)) })
}
