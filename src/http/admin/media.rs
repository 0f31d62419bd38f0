//! Media: `/_synapse/admin/v1/media/{quarantine,unquarantine}/{serverName}/{mediaId}`,
//! `/v1/media/{protect,unprotect}/{mediaId}`, a room's media and the quarantine of a room's or a
//! user's media,
//! `DELETE /v1/media/{serverName}/{mediaId}` and `POST /v1/media/delete` (by age and size), in
//! Synapse's shapes.

use super::extract::{Admin, Args, Query};
use super::route;
use crate::admin::server;
use crate::error::{Error, Result};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::routing::{delete, get, post};
use http::Method;
use ruma::{OwnedServerName, ServerName};
use serde::Deserialize;
use serde_json::{Value, json};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = route(
        router,
        "/_synapse/admin/v1/media/quarantine/{server_name}/{media_id}",
        &[Method::POST],
        post(quarantine),
    );
    let router = route(
        router,
        "/_synapse/admin/v1/media/unquarantine/{server_name}/{media_id}",
        &[Method::POST],
        post(unquarantine),
    );
    let router = route(router, "/_synapse/admin/v1/media/protect/{media_id}", &[Method::POST], post(protect));
    let router = route(router, "/_synapse/admin/v1/media/unprotect/{media_id}", &[Method::POST], post(unprotect));
    let router =
        route(router, "/_synapse/admin/v1/room/{room_id}/media/quarantine", &[Method::POST], post(quarantine_room));
    let router = route(router, "/_synapse/admin/v1/room/{room_id}/media", &[Method::GET], get(room_media));
    let router =
        route(router, "/_synapse/admin/v1/user/{user_id}/media/quarantine", &[Method::POST], post(quarantine_user));
    let router =
        route(router, "/_synapse/admin/v1/media/{server_name}/{media_id}", &[Method::DELETE], delete(delete_one));
    route(router, "/_synapse/admin/v1/media/delete", &[Method::POST], post(delete_before))
}

fn origin(args: &Args) -> Result<OwnedServerName> {
    ServerName::parse(args.get(0)?).map_err(|error| Error::invalid_param(format!("Invalid server name: {error}")))
}

/// `POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}`.
async fn quarantine(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let (origin, media_id) = (origin(&args)?, args.get(1)?);
    server::set_quarantined(&state.pool, &state.media, &origin, media_id, true).await?;
    admin.audit("quarantine media", &format!("mxc://{origin}/{media_id}"));
    Ok(axum::Json(json!({})))
}

/// `POST /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}`.
async fn unquarantine(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let (origin, media_id) = (origin(&args)?, args.get(1)?);
    server::set_quarantined(&state.pool, &state.media, &origin, media_id, false).await?;
    admin.audit("unquarantine media", &format!("mxc://{origin}/{media_id}"));
    Ok(axum::Json(json!({})))
}

/// `POST /_synapse/admin/v1/media/protect/{mediaId}`.
async fn protect(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let media_id = args.get(0)?;
    server::set_protected(&state.pool, &state.server_name, media_id, true).await?;
    admin.audit("protect media", &format!("mxc://{}/{media_id}", state.server_name));
    Ok(axum::Json(json!({})))
}

/// `POST /_synapse/admin/v1/media/unprotect/{mediaId}`.
async fn unprotect(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let media_id = args.get(0)?;
    server::set_protected(&state.pool, &state.server_name, media_id, false).await?;
    admin.audit("unprotect media", &format!("mxc://{}/{media_id}", state.server_name));
    Ok(axum::Json(json!({})))
}

/// `POST /_synapse/admin/v1/room/{roomId}/media/quarantine`.
async fn quarantine_room(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let room_id = crate::admin::rooms::parse_room_id(args.get(0)?)?;
    let quarantined = server::quarantine_named_in_room(&state.pool, room_id).await?;
    admin.audit("quarantine media of room", &format!("{room_id} ({quarantined} items)"));
    Ok(axum::Json(json!({ "num_quarantined": quarantined })))
}

/// `GET /_synapse/admin/v1/room/{roomId}/media`.
async fn room_media(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let room_id = crate::admin::rooms::parse_room_id(args.get(0)?)?;
    let named = server::media_named_in_room(&state.pool, &state.server_name, room_id).await?;
    let total = named.local.len() + named.remote.len();
    Ok(axum::Json(json!({ "local": named.local, "remote": named.remote, "total": total })))
}

/// `POST /_synapse/admin/v1/user/{userId}/media/quarantine`.
async fn quarantine_user(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let quarantined = server::quarantine_uploads_of(&state.pool, &user_id).await?;
    admin.audit("quarantine media of user", &format!("{user_id} ({quarantined} items)"));
    Ok(axum::Json(json!({ "num_quarantined": quarantined })))
}

/// `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`.
async fn delete_one(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let (origin, media_id) = (origin(&args)?, args.get(1)?);
    server::delete_media(&state.pool, &state.media, &state.server_name, &origin, media_id).await?;
    admin.audit("delete media", &format!("mxc://{origin}/{media_id}"));
    Ok(axum::Json(json!({ "deleted_media": [media_id], "total": 1 })))
}

#[derive(Deserialize)]
struct Before {
    before_ts: Option<i64>,
    size_gt: Option<i64>,
}

/// `POST /_synapse/admin/v1/media/delete?before_ts=…&size_gt=…`.
async fn delete_before(
    State(state): State<AppState>,
    admin: Admin,
    Query(query): Query<Before>,
) -> Result<axum::Json<Value>> {
    let before_ts = query.before_ts.ok_or_else(|| Error::missing_param("Missing integer query parameter before_ts"))?;
    let size_gt = query.size_gt.unwrap_or(0);
    let deleted =
        server::delete_media_before(&state.pool, &state.media, &state.server_name, before_ts, size_gt).await?;
    admin.audit("delete old media", &format!("before {before_ts}, over {size_gt} bytes: {} items", deleted.len()));
    Ok(axum::Json(json!({ "total": deleted.len(), "deleted_media": deleted })))
}
