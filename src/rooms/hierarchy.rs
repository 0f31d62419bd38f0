//! Space hierarchies (`GET /v1/rooms/{roomId}/hierarchy`): breadth-first from the root along
//! `m.space.child` events, skipping rooms the user may not preview. Rooms this server is in
//! are read from its state; the others (spaces spanning servers) are asked of a server named
//! in the child's `via`, through [`RemoteRooms`] (federation implements it, so this domain
//! does not depend on it).

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::summary::{CurrentState, can_preview, summary};
use crate::store::Store;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, OwnedServerName, RoomId, UserId};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;
const MAX_DEPTH: usize = 16;
/// Bound on the rooms walked for one request, so a huge or cyclic graph stays cheap.
const MAX_ROOMS_WALKED: usize = 1000;
/// Bound on the other servers asked for one request: each answer may take a while.
const MAX_REMOTE_REQUESTS: usize = 20;

pub(crate) struct HierarchyRequest<'a> {
    pub from: Option<&'a str>,
    pub limit: Option<usize>,
    pub max_depth: Option<usize>,
    pub suggested_only: bool,
}

pub(crate) struct HierarchyPage {
    pub rooms: Vec<Value>,
    pub next_batch: Option<String>,
}

/// A room this server is not in, as a server in it describes it.
pub(crate) struct RemoteSpace {
    /// The room's summary with its `children_state` (the spec's `SpaceHierarchyParentSummary`).
    pub room: Value,
    /// Summaries of its children that the answering server showed us (no `children_state`).
    pub children: Vec<Value>,
}

/// Asks other servers about rooms this server is not in.
pub(crate) trait RemoteRooms {
    /// The room as one of `via` describes it, or `None` when none of them answers.
    fn space(
        &self,
        room_id: &RoomId,
        via: &[OwnedServerName],
        suggested_only: bool,
    ) -> impl Future<Output = Option<RemoteSpace>> + Send;
}

/// For callers that stay on this server: no other server is asked.
pub(crate) struct LocalOnly;

impl RemoteRooms for LocalOnly {
    async fn space(&self, _: &RoomId, _: &[OwnedServerName], _: bool) -> Option<RemoteSpace> {
        None
    }
}

/// A room waiting to be walked: how deep it is and where to ask if this server is not in it.
struct Queued {
    room_id: OwnedRoomId,
    depth: usize,
    via: Vec<OwnedServerName>,
}

pub(crate) async fn hierarchy(
    pool: &Store,
    remote: &impl RemoteRooms,
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
    let mut seen: HashSet<OwnedRoomId> = HashSet::from([root.to_owned()]);
    let mut queue = VecDeque::from([Queued { room_id: root.to_owned(), depth: 0, via: Vec::new() }]);
    // Children summaries other servers already gave: a child that is not a space needs no
    // request of its own.
    let mut known_remote: HashMap<String, Value> = HashMap::new();
    let mut remote_requests = 0;
    while let Some(Queued { room_id, depth, via }) = queue.pop_front() {
        if rooms.len() >= MAX_ROOMS_WALKED || rooms.len() > skip + limit {
            break;
        }
        let local = db::rooms::version(pool, room_id.as_str()).await?.is_some();
        let entry = if local {
            local_space(pool, user, &room_id).await?
        } else if let Some(child) = known_remote.remove(room_id.as_str()).filter(|child| !is_space(child)) {
            Some(child)
        } else if remote_requests < MAX_REMOTE_REQUESTS && !via.is_empty() {
            remote_requests += 1;
            match remote.space(&room_id, &via, request.suggested_only).await {
                Some(space) => {
                    for child in space.children {
                        if let Some(id) = child["room_id"].as_str() {
                            known_remote.insert(id.to_owned(), child);
                        }
                    }
                    Some(space.room)
                }
                None => None,
            }
        } else {
            None
        };
        let Some(mut entry) = entry else { continue };
        if !local && !may_preview_remote(pool, user, &entry).await? {
            continue;
        }
        let children = children_in_order(&entry["children_state"], request.suggested_only);
        for (child_id, child_via) in children.iter().filter_map(child_link) {
            if depth < max_depth && seen.insert(child_id.clone()) {
                queue.push_back(Queued { room_id: child_id, depth: depth + 1, via: child_via });
            }
        }
        entry["children_state"] = Value::Array(children);
        rooms.push(entry);
    }
    let more = rooms.len() > skip + limit;
    let page: Vec<Value> = rooms.into_iter().skip(skip).take(limit).collect();
    Ok(HierarchyPage { rooms: page, next_batch: more.then(|| format!("h{}", skip + limit)) })
}

fn is_space(summary: &Value) -> bool {
    summary["room_type"] == "m.space"
}

/// A room of this server with all its `m.space.child` events, if `user` may preview it.
async fn local_space(pool: &Store, user: &UserId, room_id: &RoomId) -> Result<Option<Value>> {
    let state = CurrentState::load(pool, room_id).await?;
    if !can_preview(pool, user, &state).await? {
        return Ok(None);
    }
    let mut entry = summary(pool, room_id, &state).await?;
    entry["children_state"] = Value::Array(children_state(&state));
    Ok(Some(entry))
}

/// The room's `m.space.child` events in the stripped form hierarchies show.
pub(crate) fn children_state(state: &CurrentState) -> Vec<Value> {
    state
        .events_of_type("m.space.child")
        .map(|child| {
            json!({
                "type": "m.space.child",
                "state_key": child.state_key,
                "content": child.content_value(),
                "sender": child.sender,
                "origin_server_ts": child.origin_server_ts,
            })
        })
        .collect()
}

/// The children worth following, in the spec's order: by `order` (children without one
/// last), then by when the child was added, then by room id. A child without `via` is no
/// child (the spec's way of removing one); with `suggested_only`, only suggested ones count.
pub(crate) fn children_in_order(children_state: &Value, suggested_only: bool) -> Vec<Value> {
    let mut children: Vec<Value> = children_state
        .as_array()
        .into_iter()
        .flatten()
        .filter(|child| child_link(child).is_some())
        .filter(|child| !suggested_only || child["content"]["suggested"] == true)
        .cloned()
        .collect();
    children.sort_by_key(|child| {
        let order = child["content"]["order"].as_str().filter(|order| order.len() <= 50).map(str::to_owned);
        let added = child["origin_server_ts"].as_i64();
        (order.is_none(), order, added, child["state_key"].as_str().map(str::to_owned))
    });
    children
}

/// The child room and the servers to ask about it, if the event names a valid one.
fn child_link(child: &Value) -> Option<(OwnedRoomId, Vec<OwnedServerName>)> {
    let room_id = RoomId::parse(child["state_key"].as_str()?).ok()?;
    let via: Vec<OwnedServerName> = child["content"]["via"]
        .as_array()?
        .iter()
        .filter_map(|server| server.as_str().and_then(|server| OwnedServerName::try_from(server).ok()))
        .collect();
    (!via.is_empty()).then_some((room_id, via))
}

/// Whether `user` may see a room of another server from outside, from its summary: open to
/// joins or knocks, world-readable, or restricted to a room the user is in here (as Synapse
/// decides for rooms it is not in).
async fn may_preview_remote(pool: &Store, user: &UserId, summary: &Value) -> Result<bool> {
    if summary["world_readable"] == true {
        return Ok(true);
    }
    // The spec's summary leaves `join_rule` out when it is `public` (its default).
    match summary["join_rule"].as_str().or(Some("public")) {
        Some("public" | "knock" | "knock_restricted") => Ok(true),
        Some("restricted") => {
            let allowed = summary["allowed_room_ids"].as_array().into_iter().flatten().filter_map(Value::as_str);
            for room in allowed {
                if db::rooms::membership(pool, room, user.as_str())
                    .await?
                    .is_some_and(|m| m.membership == MembershipState::Join)
                {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}
