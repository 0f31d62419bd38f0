//! A room's history for admins: `POST /_synapse/admin/v1/purge_history/{roomId}[/{eventId}]`
//! (in the background) with `GET /v1/purge_history_status/{purgeId}`, in Synapse's shapes.

use super::extract::{Admin, Args, Json};
use super::route;
use crate::admin::history_purge::{self, PurgeHistoryRequest};
use crate::admin::rooms::parse_room_id;
use crate::error::Result;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use http::Method;
use serde_json::{Value, json};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = route(router, "/_synapse/admin/v1/purge_history/{room_id}", &[Method::POST], post(purge_history));
    let router =
        route(router, "/_synapse/admin/v1/purge_history/{room_id}/{event_id}", &[Method::POST], post(purge_history));
    route(router, "/_synapse/admin/v1/purge_history_status/{purge_id}", &[Method::GET], get(purge_status))
}

/// `POST /v1/purge_history/{roomId}[/{eventId}]`: answers at once with the purge's id.
async fn purge_history(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Json(request): Json<PurgeHistoryRequest>,
) -> Result<axum::Json<Value>> {
    let room_id = parse_room_id(args.get(0)?)?;
    let path_event_id = args.get(1).ok();
    let task = history_purge::schedule(&state.pool, room_id, path_event_id, &request, admin.user_id()).await?;
    admin.audit("purge history", &format!("{room_id} (purge {})", task.purge_id));
    let purge_id = task.purge_id.clone();
    tokio::spawn(async move { history_purge::run(&state.pool, &state.server_name, task).await });
    Ok(axum::Json(json!({ "purge_id": purge_id })))
}

/// `GET /v1/purge_history_status/{purgeId}`.
async fn purge_status(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let purge = history_purge::status(&state.pool, args.get(0)?).await?;
    let mut answer = json!({ "status": purge.status });
    if let Some(error) = purge.error {
        answer["error"] = json!(error);
    }
    Ok(axum::Json(answer))
}
