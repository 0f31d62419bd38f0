//! A room's history for admins: `GET /_synapse/admin/v1/rooms/{roomId}/messages`,
//! `/context/{eventId}`, `/timestamp_to_event` and
//! `POST /v1/purge_history/{roomId}[/{eventId}]` (in the background) with
//! `GET /v1/purge_history_status/{purgeId}`, in Synapse's shapes.

use super::extract::{Admin, Args, Json, Query};
use super::route;
use crate::admin::history_purge::{self, PurgeHistoryRequest};
use crate::admin::rooms::parse_room_id;
use crate::error::{Error, Result};
use crate::rooms::filter::EventFilter;
use crate::rooms::read::{self, Access, HistoryRequest};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use http::Method;
use ruma::api::client::filter::RoomEventFilter;
use serde::Deserialize;
use serde_json::{Value, json};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = route(router, "/_synapse/admin/v1/rooms/{room_id}/messages", &[Method::GET], get(messages));
    let router = route(router, "/_synapse/admin/v1/rooms/{room_id}/context/{event_id}", &[Method::GET], get(context));
    let router =
        route(router, "/_synapse/admin/v1/rooms/{room_id}/timestamp_to_event", &[Method::GET], get(timestamp_to_event));
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
    let task = history_purge::schedule(&state.pool, room_id, path_event_id, &request, admin.actor()).await?;
    admin.audit("purge history", &format!("{room_id} (purge {})", task.purge_id));
    let purge_id = task.purge_id.clone();
    tokio::spawn(async move {
        history_purge::run(&state.pool, &state.streams.notifier, &state.server_name, task).await;
    });
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

#[derive(Deserialize)]
struct MessagesQuery {
    from: Option<String>,
    to: Option<String>,
    dir: Option<String>,
    limit: Option<usize>,
    /// A `RoomEventFilter` as JSON, as in the client API.
    filter: Option<String>,
}

/// `GET /v1/rooms/{roomId}/messages`: `/messages` without a membership (Synapse's defaults:
/// forwards, ten events).
async fn messages(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Query(query): Query<MessagesQuery>,
) -> Result<axum::Json<Value>> {
    let room_id = parse_room_id(args.get(0)?)?;
    let filter = match query.filter.as_deref() {
        Some(json) => serde_json::from_str::<RoomEventFilter>(json)
            .map_err(|error| Error::invalid_param(format!("Invalid filter: {error}")))?,
        None => RoomEventFilter::default(),
    };
    let filter = EventFilter::from_ruma(&filter);
    let request = HistoryRequest {
        from: query.from.as_deref(),
        to: query.to.as_deref(),
        backwards: super::paging::descending(query.dir.as_deref())?,
        limit: query.limit.unwrap_or(10),
        filter: &filter,
    };
    let page = read::messages_as_admin(&state.pool, admin.user_id(), room_id, request).await?;
    admin.audit("read room messages", room_id.as_str());
    let mut answer = json!({ "chunk": page.chunk, "start": page.start, "state": page.state });
    if let Some(end) = page.end {
        answer["end"] = json!(end);
    }
    Ok(axum::Json(answer))
}

#[derive(Deserialize)]
struct TimestampQuery {
    ts: Option<u64>,
    dir: Option<String>,
}

/// `GET /v1/rooms/{roomId}/timestamp_to_event?ts=…&dir=f|b` (forwards by default): the event
/// closest to `ts`, whoever may see it.
async fn timestamp_to_event(
    State(state): State<AppState>,
    _admin: Admin,
    args: Args,
    Query(query): Query<TimestampQuery>,
) -> Result<axum::Json<Value>> {
    let room_id = parse_room_id(args.get(0)?)?;
    let ts = query.ts.ok_or_else(|| Error::missing_param("Missing integer query parameter ts"))?;
    let ts = ruma::UInt::new(ts).ok_or_else(|| Error::invalid_param("ts is out of range"))?;
    let forwards = !super::paging::descending(query.dir.as_deref())?;
    let (event_id, origin_server_ts) = crate::rooms::context::timestamp_to_event_as_admin(
        &state.pool,
        room_id,
        ruma::MilliSecondsSinceUnixEpoch(ts),
        forwards,
    )
    .await?;
    Ok(axum::Json(json!({ "event_id": event_id, "origin_server_ts": origin_server_ts })))
}

#[derive(Deserialize)]
struct ContextQuery {
    limit: Option<usize>,
}

/// `GET /v1/rooms/{roomId}/context/{eventId}?limit=…` (ten by default): the client API's
/// `/context`, whoever may see the events.
async fn context(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Query(query): Query<ContextQuery>,
) -> Result<axum::Json<Value>> {
    let room_id = parse_room_id(args.get(0)?)?;
    let event_id = <&ruma::EventId>::try_from(args.get(1)?)
        .map_err(|error| Error::invalid_param(format!("Invalid event id: {error}")))?;
    let shape = (query.limit.unwrap_or(10), false);
    let found =
        crate::rooms::context::context(&state.pool, (admin.user_id(), Access::Admin), room_id, event_id, shape).await?;
    admin.audit("read event context", event_id.as_str());
    Ok(axum::Json(json!({
        "start": found.start,
        "end": found.end,
        "events_before": found.events_before,
        "event": found.event,
        "events_after": found.events_after,
        "state": found.state,
    })))
}
