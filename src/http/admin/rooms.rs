//! Rooms: `/_synapse/admin/v1/rooms…` (list, details, members, state, block, forward
//! extremities) and the background shutdown `DELETE /v2/rooms/{roomId}` with its status
//! endpoints, in Synapse's shapes.

use super::extract::{Admin, Args, Json, Query};
use super::paging::Paged;
use super::route;
use crate::admin::room_admin;
use crate::admin::room_deletion::{self, RoomDeletion, ShutdownRequest};
use crate::admin::rooms::{self, RoomOrder, RoomSummary, parse_room_id};
use crate::error::{Error, Result};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get, post};
use http::Method;
use ruma::OwnedUserId;
use serde::Deserialize;
use serde_json::{Value, json};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = route(router, "/_synapse/admin/v1/rooms", &[Method::GET], get(list));
    let router = route(router, "/_synapse/admin/v1/rooms/{room_id}", &[Method::GET], get(show));
    let router = route(router, "/_synapse/admin/v1/rooms/{room_id}/members", &[Method::GET], get(members));
    let router = route(router, "/_synapse/admin/v1/rooms/{room_id}/state", &[Method::GET], get(state));
    let router = route(
        router,
        "/_synapse/admin/v1/rooms/{room_id}/block",
        &[Method::GET, Method::PUT],
        get(block_status).put(set_block),
    );
    let router = route(
        router,
        "/_synapse/admin/v1/rooms/{room_id}/forward_extremities",
        &[Method::GET],
        get(forward_extremities),
    );
    let router =
        route(router, "/_synapse/admin/v1/rooms/{room_id}/make_room_admin", &[Method::POST], post(make_room_admin));
    let router = route(router, "/_synapse/admin/v2/rooms/{room_id}", &[Method::DELETE], delete(shut_down));
    let router =
        route(router, "/_synapse/admin/v2/rooms/{room_id}/delete_status", &[Method::GET], get(room_delete_status));
    route(router, "/_synapse/admin/v2/rooms/delete_status/{delete_id}", &[Method::GET], get(delete_status))
}

fn room_json(room: &RoomSummary) -> Value {
    json!({
        "room_id": room.room_id,
        "name": room.name,
        "canonical_alias": room.canonical_alias,
        "joined_members": room.joined_members,
        "joined_local_members": room.joined_local_members,
        "version": room.version,
        "creator": room.creator,
        "encryption": room.encryption,
        "federatable": room.federatable,
        "public": room.public,
        "join_rules": room.join_rules,
        "guest_access": room.guest_access,
        "history_visibility": room.history_visibility,
        "state_events": room.state_events,
        "room_type": room.room_type,
    })
}

#[derive(Deserialize)]
struct ListQuery {
    order_by: Option<String>,
    search_term: Option<String>,
}

fn order_of(name: Option<&str>) -> Result<RoomOrder> {
    Ok(match name.unwrap_or("name") {
        "name" | "alphabetical" => RoomOrder::Name,
        "size" | "joined_members" => RoomOrder::JoinedMembers,
        "canonical_alias" => RoomOrder::CanonicalAlias,
        "joined_local_members" => RoomOrder::JoinedLocalMembers,
        "version" => RoomOrder::Version,
        "creator" => RoomOrder::Creator,
        "encryption" => RoomOrder::Encryption,
        "federatable" => RoomOrder::Federatable,
        "public" => RoomOrder::Public,
        "join_rules" => RoomOrder::JoinRules,
        "guest_access" => RoomOrder::GuestAccess,
        "history_visibility" => RoomOrder::HistoryVisibility,
        "state_events" => RoomOrder::StateEvents,
        other => return Err(Error::invalid_param(format!("Unknown value for order_by: {other}"))),
    })
}

/// `GET /_synapse/admin/v1/rooms`.
async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    paged: Paged,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Value>> {
    let paging = paged.paging;
    let order = order_of(query.order_by.as_deref())?;
    let search = query.search_term.as_deref().filter(|term| !term.is_empty());
    let page = rooms::list(&state.pool, &state.server_name, search, order, paged.descending(), paging).await?;
    let mut answer = json!({
        "rooms": page.items.iter().map(room_json).collect::<Vec<_>>(),
        "offset": paging.from,
        "total_rooms": page.total,
    });
    if let Some(next) = page.next {
        answer["next_batch"] = json!(next);
    }
    if paging.from > 0 {
        answer["prev_batch"] = json!((paging.from - paging.limit).max(0));
    }
    Ok(axum::Json(answer))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}`.
async fn show(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let room_id = parse_room_id(args.get(0)?)?;
    let room = rooms::get(&state.pool, &state.server_name, room_id).await?;
    let mut details = room_json(&room);
    details["topic"] = json!(room.topic);
    details["avatar"] = json!(room.avatar);
    Ok(axum::Json(details))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/members`.
async fn members(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let room_id = parse_room_id(args.get(0)?)?;
    let members = rooms::members(&state.pool, &state.server_name, room_id).await?;
    Ok(axum::Json(json!({ "total": members.len(), "members": members })))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/state`.
async fn state(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let room_id = parse_room_id(args.get(0)?)?;
    let events = rooms::state(&state.pool, &state.server_name, room_id).await?;
    admin.audit("read room state", room_id.as_str());
    Ok(axum::Json(json!({ "state": events })))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/block`.
async fn block_status(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let room_id = parse_room_id(args.get(0)?)?;
    Ok(axum::Json(match rooms::blocked_by(&state.pool, room_id).await? {
        Some(user_id) => json!({ "block": true, "user_id": user_id }),
        None => json!({ "block": false }),
    }))
}

#[derive(Deserialize)]
struct Block {
    block: bool,
}

/// `PUT /_synapse/admin/v1/rooms/{roomId}/block`.
async fn set_block(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Json(body): Json<Block>,
) -> Result<axum::Json<Value>> {
    let room_id = parse_room_id(args.get(0)?)?;
    rooms::set_blocked(&state.pool, room_id, admin.actor(), body.block).await?;
    admin.audit(if body.block { "block room" } else { "unblock room" }, room_id.as_str());
    Ok(axum::Json(json!({ "block": body.block })))
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/forward_extremities`.
async fn forward_extremities(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let room_id = parse_room_id(args.get(0)?)?;
    let extremities = rooms::forward_extremities(&state.pool, &state.server_name, room_id).await?;
    let results: Vec<Value> = extremities
        .iter()
        .map(|extremity| {
            json!({
                "event_id": extremity.event_id,
                "state_group": Value::Null,
                "depth": extremity.depth,
                "received_ts": extremity.received_ts,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "count": results.len(), "results": results })))
}

/// `DELETE /_synapse/admin/v2/rooms/{roomId}`: answers at once with the task's id; the
/// shutdown runs in the background.
async fn shut_down(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Json(request): Json<ShutdownRequest>,
) -> Result<axum::Json<Value>> {
    let room_id = parse_room_id(args.get(0)?)?.to_owned();
    let delete_id = room_deletion::schedule(state.rooms(), &room_id, &request, admin.actor()).await?;
    let by = admin.actor().describe();
    admin.audit("delete room", &format!("{room_id} (task {delete_id})"));
    let task = delete_id.clone();
    tokio::spawn(async move {
        room_deletion::run(state.rooms(), &state.default_room_version, &task, &room_id, request, &by).await;
    });
    Ok(axum::Json(json!({ "delete_id": delete_id })))
}

fn deletion_json(deletion: &RoomDeletion) -> Value {
    let mut answer = json!({
        "delete_id": deletion.delete_id,
        "room_id": deletion.room_id,
        "status": deletion.status,
        "shutdown_room": deletion.outcome.clone().unwrap_or_else(|| json!({
            "kicked_users": [], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": null,
        })),
    });
    if let Some(error) = &deletion.error {
        answer["error"] = json!(error);
    }
    answer
}

/// `GET /_synapse/admin/v2/rooms/{roomId}/delete_status`.
async fn room_delete_status(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let room_id = parse_room_id(args.get(0)?)?;
    let deletions = room_deletion::statuses_of_room(state.rooms(), room_id).await?;
    Ok(axum::Json(json!({ "results": deletions.iter().map(deletion_json).collect::<Vec<_>>() })))
}

/// `GET /_synapse/admin/v2/rooms/delete_status/{deleteId}`.
async fn delete_status(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let deletion = room_deletion::status(state.rooms(), args.get(0)?).await?;
    Ok(axum::Json(deletion_json(&deletion)))
}

#[derive(Deserialize)]
struct MakeRoomAdmin {
    user_id: Option<OwnedUserId>,
}

/// `POST /_synapse/admin/v1/rooms/{roomId}/make_room_admin`: the target (by default the admin
/// asking) gets the room's highest level.
async fn make_room_admin(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Json(body): Json<MakeRoomAdmin>,
) -> Result<axum::Json<Value>> {
    let room_id = parse_room_id(args.get(0)?)?;
    let target = body.user_id.unwrap_or_else(|| admin.user_id().to_owned());
    room_admin::make_room_admin(state.rooms(), room_id, &target).await?;
    admin.audit("make room admin", &format!("{target} in {room_id}"));
    Ok(axum::Json(json!({})))
}
