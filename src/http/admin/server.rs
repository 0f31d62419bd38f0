//! The server as a whole: `/_synapse/admin/v1/server_version`, `/event_reports`,
//! `/registration_tokens`, `/federation/destinations`, `/users/{userId}/media` and
//! `/statistics/users/media`, in Synapse's shapes.

use super::extract::{Admin, Args, Json, Query};
use super::paging::{Paged, add_next_token};
use super::route;
use crate::admin::server::{self, DestinationRoom, DestinationStatus, EventReport, Media, RegistrationToken};
use crate::admin::users::Page;
use crate::error::Result;
use crate::state::AppState;
use crate::time::now_ms;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use http::Method;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = route(router, "/_synapse/admin/v1/server_version", &[Method::GET], get(server_version));
    let router = route(router, "/_synapse/admin/v1/background_updates/status", &[Method::GET], get(background_updates));
    let router =
        route(router, "/_synapse/admin/v1/background_updates/enabled", &[Method::GET], get(background_updates_enabled));
    let router = route(router, "/_synapse/admin/v1/event_reports", &[Method::GET], get(event_reports));
    let router = route(
        router,
        "/_synapse/admin/v1/event_reports/{report_id}",
        &[Method::GET, Method::DELETE],
        get(event_report).delete(delete_event_report),
    );
    let router = route(router, "/_synapse/admin/v1/registration_tokens", &[Method::GET], get(tokens));
    let router = route(router, "/_synapse/admin/v1/registration_tokens/new", &[Method::POST], post(new_token));
    let router = route(
        router,
        "/_synapse/admin/v1/registration_tokens/{token}",
        &[Method::GET, Method::PUT, Method::DELETE],
        get(token).put(update_token).delete(delete_token),
    );
    let router = route(router, "/_synapse/admin/v1/federation/destinations", &[Method::GET], get(destinations));
    let router =
        route(router, "/_synapse/admin/v1/federation/destinations/{destination}", &[Method::GET], get(destination));
    let router = route(
        router,
        "/_synapse/admin/v1/federation/destinations/{destination}/reset_connection",
        &[Method::POST],
        post(reset_destination),
    );
    let router = route(
        router,
        "/_synapse/admin/v1/federation/destinations/{destination}/rooms",
        &[Method::GET],
        get(destination_rooms),
    );
    let router = route(
        router,
        "/_synapse/admin/v1/users/{user_id}/media",
        &[Method::GET, Method::DELETE],
        get(user_media).delete(delete_user_media),
    );
    route(router, "/_synapse/admin/v1/statistics/users/media", &[Method::GET], get(media_statistics))
}

/// A page in Synapse's shape: the items under `key`, `total`, and `next_token` when there is
/// more.
fn page_json<T>(page: &Page<T>, key: &str, item: impl Fn(&T) -> Value) -> Value {
    let mut answer = json!({ key: page.items.iter().map(item).collect::<Vec<_>>(), "total": page.total });
    if let Some(next) = page.next {
        answer["next_token"] = json!(next);
    }
    answer
}

/// What some listings are narrowed by.
#[derive(Deserialize)]
struct ListFilter {
    user_id: Option<String>,
    room_id: Option<String>,
    destination: Option<String>,
}

/// `GET /_synapse/admin/v1/server_version`: public, as in Synapse (synapse-admin asks it without
/// a token, before and after logging in, to show what it manages).
async fn server_version() -> axum::Json<Value> {
    axum::Json(json!({ "server_version": concat!("Hearth ", env!("CARGO_PKG_VERSION")) }))
}

/// `GET /_synapse/admin/v1/background_updates/status`: Hearth has none (its migrations run,
/// whole, at start-up), so none is ever running.
async fn background_updates(_admin: Admin) -> axum::Json<Value> {
    axum::Json(json!({ "enabled": true, "current_updates": {} }))
}

/// `GET /_synapse/admin/v1/background_updates/enabled`.
async fn background_updates_enabled(_admin: Admin) -> axum::Json<Value> {
    axum::Json(json!({ "enabled": true }))
}

fn report_json(report: &EventReport) -> Value {
    json!({
        "id": report.id,
        "received_ts": report.received_ts,
        "room_id": report.room_id,
        "name": report.name,
        "event_id": report.event_id,
        "user_id": report.user_id,
        "reason": report.reason,
        "score": report.score,
        "sender": report.sender,
        "canonical_alias": report.canonical_alias,
    })
}

/// `GET /_synapse/admin/v1/event_reports`: newest first unless `dir=f`.
async fn event_reports(
    State(state): State<AppState>,
    _admin: Admin,
    paged: Paged,
    Query(query): Query<ListFilter>,
) -> Result<axum::Json<Value>> {
    let (paging, newest_first) = (paged.paging, paged.descending_unless_forwards());
    let page =
        server::event_reports(&state.pool, query.user_id.as_deref(), query.room_id.as_deref(), newest_first, paging)
            .await?;
    Ok(axum::Json(page_json(&page, "event_reports", report_json)))
}

/// `GET /_synapse/admin/v1/event_reports/{reportId}`: with the reported event.
async fn event_report(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let report = server::event_report(&state.pool, args.get(0)?).await?;
    let mut answer = report_json(&report);
    answer["event_json"] =
        report.event_json.as_deref().and_then(|json| serde_json::from_str(json).ok()).unwrap_or(Value::Null);
    admin.audit("read event report", &report.id.to_string());
    Ok(axum::Json(answer))
}

/// `DELETE /_synapse/admin/v1/event_reports/{reportId}`.
async fn delete_event_report(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let id = args.get(0)?;
    server::delete_event_report(&state.pool, id).await?;
    admin.audit("delete event report", id);
    Ok(axum::Json(json!({})))
}

fn token_json(token: &RegistrationToken) -> Value {
    json!({
        "token": token.token,
        "uses_allowed": token.uses_allowed,
        // Hearth counts a use when the registration completes; none are held pending.
        "pending": 0,
        "completed": token.completed,
        "expiry_time": token.expiry_ts,
    })
}

#[derive(Deserialize)]
struct TokensQuery {
    valid: Option<bool>,
}

/// `GET /_synapse/admin/v1/registration_tokens`.
async fn tokens(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<TokensQuery>,
) -> Result<axum::Json<Value>> {
    let tokens = server::registration_tokens(&state.pool, query.valid, now_ms()).await?;
    Ok(axum::Json(json!({ "registration_tokens": tokens.iter().map(token_json).collect::<Vec<_>>() })))
}

/// `GET /_synapse/admin/v1/registration_tokens/{token}`.
async fn token(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    Ok(axum::Json(token_json(&server::registration_token(&state.pool, args.get(0)?).await?)))
}

#[derive(Deserialize)]
struct NewToken {
    token: Option<String>,
    length: Option<i64>,
    uses_allowed: Option<i64>,
    expiry_time: Option<i64>,
}

/// `POST /_synapse/admin/v1/registration_tokens/new`.
async fn new_token(
    State(state): State<AppState>,
    admin: Admin,
    Json(body): Json<NewToken>,
) -> Result<axum::Json<Value>> {
    let token = server::create_registration_token(
        &state.pool,
        body.token.as_deref(),
        body.length,
        body.uses_allowed,
        body.expiry_time,
        now_ms(),
    )
    .await?;
    admin.audit("create registration token", &token.token);
    Ok(axum::Json(token_json(&token)))
}

/// A field that may be given as `null` (which means "no limit") or left out.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
struct TokenChanges {
    #[serde(default, deserialize_with = "present")]
    uses_allowed: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    expiry_time: Option<Option<i64>>,
}

/// `PUT /_synapse/admin/v1/registration_tokens/{token}`.
async fn update_token(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Json(body): Json<TokenChanges>,
) -> Result<axum::Json<Value>> {
    let token = args.get(0)?;
    let updated =
        server::update_registration_token(&state.pool, token, body.uses_allowed, body.expiry_time, now_ms()).await?;
    admin.audit("change registration token", token);
    Ok(axum::Json(token_json(&updated)))
}

/// `DELETE /_synapse/admin/v1/registration_tokens/{token}`.
async fn delete_token(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let token = args.get(0)?;
    server::delete_registration_token(&state.pool, token).await?;
    admin.audit("delete registration token", token);
    Ok(axum::Json(json!({})))
}

fn destination_json(status: &DestinationStatus) -> Value {
    let interval = status.backoff_ms.unwrap_or(0);
    json!({
        "destination": status.destination,
        "retry_last_ts": status.retry_at_ts.map_or(0, |due| due - interval),
        "retry_interval": interval,
        "failure_ts": status.failing_since_ts,
        "last_successful_stream_ordering": Value::Null,
        // Beyond Synapse: what Hearth knows besides.
        "queue_depth": status.depth,
        "failures": status.failures.unwrap_or(0),
        "last_success_ts": status.last_success_ts,
        "last_error": status.last_error,
    })
}

/// `GET /_synapse/admin/v1/federation/destinations`.
async fn destinations(
    State(state): State<AppState>,
    _admin: Admin,
    paged: Paged,
    Query(query): Query<ListFilter>,
) -> Result<axum::Json<Value>> {
    let paging = paged.paging;
    let page = server::destinations(&state.pool, query.destination.as_deref(), paging).await?;
    let mut answer = page_json(&page, "destinations", destination_json);
    add_next_token(&mut answer, page.next);
    Ok(axum::Json(answer))
}

/// `GET /_synapse/admin/v1/federation/destinations/{destination}`.
async fn destination(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    Ok(axum::Json(destination_json(&server::destination(&state.pool, args.get(0)?).await?)))
}

/// `GET /_synapse/admin/v1/federation/destinations/{destination}/rooms`.
async fn destination_rooms(
    State(state): State<AppState>,
    _admin: Admin,
    args: Args,
    paged: Paged,
) -> Result<axum::Json<Value>> {
    let descending = paged.descending();
    let page =
        server::destination_rooms(&state.pool, &state.server_name, args.get(0)?, descending, paged.paging).await?;
    let room_json =
        |room: &DestinationRoom| json!({ "room_id": room.room_id, "stream_ordering": room.stream_ordering });
    let mut answer = page_json(&page, "rooms", room_json);
    add_next_token(&mut answer, page.next);
    Ok(axum::Json(answer))
}

/// `POST /_synapse/admin/v1/federation/destinations/{destination}/reset_connection`.
async fn reset_destination(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let destination = args.get(0)?;
    server::reset_destination(&state.pool, &state.federation_sender, &state.server_name, destination).await?;
    admin.audit("reset federation backoff", destination);
    Ok(axum::Json(json!({})))
}

fn media_json(media: &Media) -> Value {
    json!({
        "media_id": media.media_id,
        "created_ts": media.created_at,
        "last_access_ts": Value::Null,
        "media_length": media.size,
        "media_type": media.content_type,
        "upload_name": media.filename,
        // Hearth records that media is quarantined, not who did it.
        "quarantined_by": if media.quarantined { json!("admin") } else { Value::Null },
        "safe_from_quarantine": media.safe_from_quarantine,
    })
}

/// `GET /_synapse/admin/v1/users/{userId}/media`: newest first.
async fn user_media(
    State(state): State<AppState>,
    _admin: Admin,
    args: Args,
    paged: Paged,
) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let paging = paged.paging;
    let page = server::media_of(&state.pool, &user_id, paging).await?;
    Ok(axum::Json(page_json(&page, "media", media_json)))
}

/// `DELETE /_synapse/admin/v1/users/{userId}/media`: a page of the user's uploads.
async fn delete_user_media(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    paged: Paged,
) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let paging = paged.paging;
    let deleted = server::delete_media_of(&state.pool, &state.media, &state.server_name, &user_id, paging).await?;
    admin.audit("delete media of user", &format!("{user_id} ({} items)", deleted.len()));
    Ok(axum::Json(json!({ "total": deleted.len(), "deleted_media": deleted })))
}

/// `GET /_synapse/admin/v1/statistics/users/media`.
async fn media_statistics(State(state): State<AppState>, _admin: Admin, paged: Paged) -> Result<axum::Json<Value>> {
    let paging = paged.paging;
    let page = server::media_statistics(&state.pool, &state.server_name, paging).await?;
    Ok(axum::Json(page_json(&page, "users", |stats| {
        json!({
            "user_id": stats.user_id,
            "displayname": stats.displayname,
            "media_count": stats.media_count,
            "media_length": stats.media_length,
        })
    })))
}
