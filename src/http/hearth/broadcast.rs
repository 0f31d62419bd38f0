//! Broadcast lists (docs/API.md, "Broadcast lists"): subscriptions, lists and their members,
//! sending to a list and polling the broadcast's progress. Thin handlers over
//! `crate::creators::broadcast`.

use super::extract::Member;
use crate::creators::broadcast::{lists, send, subscriptions};
use crate::error::{Error, Result};
use crate::http::plain::{Args, Json, Query, route};
use crate::rooms::send::Transaction;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get, put};
use http::Method;
use ruma::{OwnedUserId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

const LISTS: &str = "/_hearth/client/v1/broadcast/lists";

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    let subscription = "/_hearth/client/v1/creators/{user_id}/subscription";
    let router = route(router, subscription, &[Method::PUT, Method::DELETE], put(subscribe).delete(unsubscribe));
    let router = route(router, "/_hearth/client/v1/broadcast/subscribers", &[Method::GET], get(subscribers));
    let router = route(router, LISTS, &[Method::GET, Method::POST], get(all_lists).post(create_list));
    let list = "/_hearth/client/v1/broadcast/lists/{list_id}";
    let router = route(router, list, &[Method::PUT, Method::DELETE], put(rename_list).delete(delete_list));
    let members = "/_hearth/client/v1/broadcast/lists/{list_id}/members";
    let router = route(router, members, &[Method::GET, Method::POST], get(list_members).post(add_members));
    let member = "/_hearth/client/v1/broadcast/lists/{list_id}/members/{user_id}";
    let router = route(router, member, &[Method::DELETE], delete(remove_member));
    let send = "/_hearth/client/v1/broadcast/lists/{list_id}/send/{txn_id}";
    let router = route(router, send, &[Method::PUT], put(send_to_list));
    route(router, "/_hearth/client/v1/broadcast/broadcasts/{broadcast_id}", &[Method::GET], get(progress))
}

fn user_arg(args: &Args, index: usize) -> Result<OwnedUserId> {
    UserId::parse(args.get(index)?).map_err(|error| Error::invalid_param(format!("Bad user id: {error}")))
}

/// `PUT /_hearth/client/v1/creators/{user_id}/subscription`: the user opts in to the creator's broadcasts.
async fn subscribe(State(state): State<AppState>, Member(session): Member, args: Args) -> Result<axum::Json<Value>> {
    subscriptions::subscribe(&state.pool, &session.user_id, &user_arg(&args, 0)?).await?;
    Ok(axum::Json(json!({})))
}

/// `DELETE /_hearth/client/v1/creators/{user_id}/subscription`: the user opts out of them.
async fn unsubscribe(State(state): State<AppState>, Member(session): Member, args: Args) -> Result<axum::Json<Value>> {
    subscriptions::unsubscribe(&state.pool, &session.user_id, &user_arg(&args, 0)?).await?;
    Ok(axum::Json(json!({})))
}

#[derive(Deserialize)]
struct Page {
    /// The `next_batch` of the previous page.
    from: Option<String>,
    limit: Option<i64>,
}

/// `GET /_hearth/client/v1/broadcast/subscribers`: the creator's subscribers, paged.
async fn subscribers(
    State(state): State<AppState>,
    Member(session): Member,
    Query(page): Query<Page>,
) -> Result<axum::Json<Value>> {
    let limit = page.limit.unwrap_or(100);
    let found = subscriptions::subscribers(&state.pool, &session.user_id, page.from.as_deref(), limit).await?;
    let chunk: Vec<Value> =
        found.chunk.iter().map(|(user_id, since)| json!({"user_id": user_id, "since_ts": since})).collect();
    Ok(axum::Json(paged(json!({"chunk": chunk, "total": found.total}), found.next_batch)))
}

/// `body` with `next_batch` when there is a next page.
fn paged(mut body: Value, next_batch: Option<String>) -> Value {
    if let Some(next) = next_batch {
        body["next_batch"] = json!(next);
    }
    body
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: String,
}

/// `POST /_hearth/client/v1/broadcast/lists`: a new named list of the creator's.
async fn create_list(
    State(state): State<AppState>,
    Member(session): Member,
    Json(named): Json<Named>,
) -> Result<axum::Json<Value>> {
    let list_id = lists::create(&state.pool, &session.user_id, &named.name).await?;
    Ok(axum::Json(json!({"list_id": list_id})))
}

/// `GET /_hearth/client/v1/broadcast/lists`: the creator's lists.
async fn all_lists(State(state): State<AppState>, Member(session): Member) -> Result<axum::Json<Value>> {
    let found = lists::all(&state.pool, &session.user_id).await?;
    let lists: Vec<Value> = found
        .iter()
        .map(|list| {
            json!({"list_id": list.list_id, "name": list.name, "members": list.members, "created_ts": list.created_ts})
        })
        .collect();
    Ok(axum::Json(json!({"lists": lists})))
}

/// `PUT /_hearth/client/v1/broadcast/lists/{list_id}`: renames one of the creator's lists.
async fn rename_list(
    State(state): State<AppState>,
    Member(session): Member,
    args: Args,
    Json(named): Json<Named>,
) -> Result<axum::Json<Value>> {
    lists::rename(&state.pool, &session.user_id, args.get(0)?, &named.name).await?;
    Ok(axum::Json(json!({})))
}

/// `DELETE /_hearth/client/v1/broadcast/lists/{list_id}`: deletes one of the creator's lists.
async fn delete_list(State(state): State<AppState>, Member(session): Member, args: Args) -> Result<axum::Json<Value>> {
    lists::delete(&state.pool, &session.user_id, args.get(0)?).await?;
    Ok(axum::Json(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Users {
    user_ids: Vec<OwnedUserId>,
}

/// `POST /_hearth/client/v1/broadcast/lists/{list_id}/members`: adds users to the list.
async fn add_members(
    State(state): State<AppState>,
    Member(session): Member,
    args: Args,
    Json(users): Json<Users>,
) -> Result<axum::Json<Value>> {
    let added = lists::add(&state.pool, &state.server_name, &session.user_id, args.get(0)?, &users.user_ids).await?;
    Ok(axum::Json(json!({"added": added})))
}

/// `DELETE /_hearth/client/v1/broadcast/lists/{list_id}/members/{user_id}`: removes one user.
async fn remove_member(
    State(state): State<AppState>,
    Member(session): Member,
    args: Args,
) -> Result<axum::Json<Value>> {
    lists::remove(&state.pool, &session.user_id, args.get(0)?, &user_arg(&args, 1)?).await?;
    Ok(axum::Json(json!({})))
}

/// `GET /_hearth/client/v1/broadcast/lists/{list_id}/members`: the list's members, paged.
async fn list_members(
    State(state): State<AppState>,
    Member(session): Member,
    args: Args,
    Query(page): Query<Page>,
) -> Result<axum::Json<Value>> {
    let limit = page.limit.unwrap_or(100);
    let (chunk, next) =
        lists::members(&state.pool, &session.user_id, args.get(0)?, page.from.as_deref(), limit).await?;
    Ok(axum::Json(paged(json!({"chunk": chunk}), next)))
}

/// Starts a broadcast (or finds the one this transaction started) and its delivery.
async fn send_to_list(
    State(state): State<AppState>,
    Member(session): Member,
    args: Args,
    Json(content): Json<Value>,
) -> Result<axum::Json<Value>> {
    let transaction = Transaction { device_id: session.device_id.as_str(), txn_id: args.get(1)? };
    let broadcast = send::start(&state.pool, &session.user_id, transaction, args.get(0)?, content).await?;
    if broadcast.state == "running" {
        state.deliver_broadcast(broadcast.broadcast_id.clone());
    }
    Ok(axum::Json(json!({"broadcast_id": broadcast.broadcast_id, "total": broadcast.total})))
}

/// `GET /_hearth/client/v1/broadcast/broadcasts/{broadcast_id}`: how far a broadcast has got.
async fn progress(State(state): State<AppState>, Member(session): Member, args: Args) -> Result<axum::Json<Value>> {
    let progress = send::progress(&state.pool, &session.user_id, args.get(0)?).await?;
    let broadcast = &progress.broadcast;
    Ok(axum::Json(json!({
        "broadcast_id": broadcast.broadcast_id,
        "list_id": broadcast.list_id,
        "state": broadcast.state,
        "total": broadcast.total,
        "sent": progress.sent,
        "skipped": progress.skipped,
        "failed": progress.failed,
        "pending": progress.pending,
        "created_ts": broadcast.created_ts,
        "finished_ts": broadcast.finished_ts,
    })))
}
