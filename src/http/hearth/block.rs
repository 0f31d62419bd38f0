//! One-button blocking: `PUT`/`DELETE /_hearth/client/v1/block/{userId}` and
//! `GET /_hearth/client/v1/block`, over the user's `m.ignored_user_list`.

use super::extract::Member;
use crate::error::{Error, Result};
use crate::http::plain::{Args, route};
use crate::state::AppState;
use crate::users::ignore;
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use axum::{Router, routing::put};
use http::Method;
use ruma::UserId;
use serde_json::{Value, json};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = route(router, "/_hearth/client/v1/block", &[Method::GET], get(list));
    route(router, "/_hearth/client/v1/block/{user_id}", &[Method::PUT, Method::DELETE], put(block).delete(unblock))
}

/// `PUT /_hearth/client/v1/block/{user_id}`: blocks the user on every path.
async fn block(state: State<AppState>, member: Member, args: Args) -> Result<Json<Value>> {
    set(state, member, args, true).await
}

/// `DELETE /_hearth/client/v1/block/{user_id}`: lifts the block.
async fn unblock(state: State<AppState>, member: Member, args: Args) -> Result<Json<Value>> {
    set(state, member, args, false).await
}

async fn set(State(state): State<AppState>, Member(session): Member, args: Args, on: bool) -> Result<Json<Value>> {
    let other = UserId::parse(args.get(0)?).map_err(|error| Error::invalid_param(format!("Bad user id: {error}")))?;
    ignore::set_blocked(&state.pool, &state.streams, &session.user_id, &other, on).await?;
    Ok(Json(json!({})))
}

/// The users the caller blocks, sorted.
async fn list(State(state): State<AppState>, Member(session): Member) -> Result<Json<Value>> {
    let mut blocked: Vec<String> = ignore::ignored_users(&state.pool, &session.user_id).await?.into_iter().collect();
    blocked.sort();
    Ok(Json(json!({"blocked": blocked})))
}
