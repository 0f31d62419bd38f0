//! A user's devices, sessions, rooms and account data: `/_synapse/admin/v2/users/{userId}/
//! devices…`, `/v1/whois/{userId}`, `/v1/users/{userId}/{joined_rooms,accountdata,pushers}`.

use super::extract::{Admin, Args, Json};
use super::route;
use crate::admin::devices::{self, DeviceRecord};
use crate::error::Result;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use http::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = route(router, "/_synapse/admin/v1/whois/{user_id}", &[Method::GET], get(whois));
    let router = route(router, "/_synapse/admin/v2/users/{user_id}/devices", &[Method::GET], get(list));
    let router = route(router, "/_synapse/admin/v2/users/{user_id}/delete_devices", &[Method::POST], post(delete_many));
    let router = route(
        router,
        "/_synapse/admin/v2/users/{user_id}/devices/{device_id}",
        &[Method::GET, Method::PUT, Method::DELETE],
        get(show).put(rename).delete(delete_one),
    );
    let router = route(router, "/_synapse/admin/v1/users/{user_id}/login", &[Method::POST], post(login_as));
    let router = route(router, "/_synapse/admin/v1/users/{user_id}/joined_rooms", &[Method::GET], get(joined_rooms));
    let router = route(router, "/_synapse/admin/v1/users/{user_id}/memberships", &[Method::GET], get(memberships));
    let router = route(router, "/_synapse/admin/v1/users/{user_id}/pushers", &[Method::GET], get(pushers));
    route(router, "/_synapse/admin/v1/users/{user_id}/accountdata", &[Method::GET], get(account_data))
}

/// `GET /_synapse/admin/v1/users/{userId}/pushers`: the user's pushers in the client API's
/// shape, with their count.
async fn pushers(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    crate::admin::users::get(&state.pool, &user_id).await?;
    let pushers = crate::push::pushers::list(&state.pool, &user_id).await?;
    Ok(axum::Json(json!({ "total": pushers.len(), "pushers": pushers })))
}

#[derive(Deserialize)]
struct LoginAs {
    valid_until_ms: Option<i64>,
}

/// `POST /_synapse/admin/v1/users/{userId}/login`: an access token to act as the user.
async fn login_as(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Json(body): Json<LoginAs>,
) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let access_token = devices::login_as(&state.pool, admin.user_id(), &user_id, body.valid_until_ms).await?;
    admin.audit("login as user", user_id.as_str());
    Ok(axum::Json(json!({ "access_token": access_token })))
}

fn device_json(user_id: &str, device: &DeviceRecord) -> Value {
    json!({
        "device_id": device.device_id,
        "display_name": device.display_name,
        "last_seen_ip": device.last_seen_ip,
        "last_seen_user_agent": device.last_seen_user_agent,
        "last_seen_ts": device.last_seen_ts,
        "user_id": user_id,
        "dehydrated": false,
    })
}

/// `GET /_synapse/admin/v1/whois/{userId}`: where each device was last seen, in the client
/// API's `whois` shape (one session, one connection per device: Hearth keeps the latest).
async fn whois(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let devices = devices::list(&state.pool, &user_id).await?;
    let by_device: Map<String, Value> = devices
        .iter()
        .map(|device| {
            let connection = json!({
                "ip": device.last_seen_ip,
                "last_seen": device.last_seen_ts,
                "user_agent": device.last_seen_user_agent,
            });
            (device.device_id.clone(), json!({ "sessions": [{ "connections": [connection] }] }))
        })
        .collect();
    admin.audit("whois", user_id.as_str());
    Ok(axum::Json(json!({ "user_id": user_id, "devices": by_device })))
}

/// `GET /_synapse/admin/v2/users/{userId}/devices`.
async fn list(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let devices = devices::list(&state.pool, &user_id).await?;
    let listed: Vec<Value> = devices.iter().map(|device| device_json(user_id.as_str(), device)).collect();
    Ok(axum::Json(json!({ "total": listed.len(), "devices": listed })))
}

/// `GET /_synapse/admin/v2/users/{userId}/devices/{deviceId}`.
async fn show(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let device = devices::get(&state.pool, &user_id, args.get(1)?).await?;
    Ok(axum::Json(device_json(user_id.as_str(), &device)))
}

#[derive(Deserialize)]
struct Rename {
    display_name: Option<String>,
}

/// `PUT /_synapse/admin/v2/users/{userId}/devices/{deviceId}`.
async fn rename(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Json(body): Json<Rename>,
) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let device_id = args.get(1)?;
    devices::rename(&state.pool, &user_id, device_id, body.display_name.as_deref()).await?;
    admin.audit("rename device", &format!("{user_id} {device_id}"));
    Ok(axum::Json(json!({})))
}

/// `DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}`.
async fn delete_one(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let device_id = args.get(1)?;
    devices::delete(&state.pool, &state.streams, &user_id, &[device_id.to_owned()]).await?;
    admin.audit("delete device", &format!("{user_id} {device_id}"));
    Ok(axum::Json(json!({})))
}

#[derive(Deserialize)]
struct DeleteMany {
    devices: Vec<String>,
}

/// `POST /_synapse/admin/v2/users/{userId}/delete_devices`.
async fn delete_many(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Json(body): Json<DeleteMany>,
) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    devices::delete(&state.pool, &state.streams, &user_id, &body.devices).await?;
    admin.audit("delete devices", &format!("{user_id} {}", body.devices.join(",")));
    Ok(axum::Json(json!({})))
}

/// `GET /_synapse/admin/v1/users/{userId}/joined_rooms`.
async fn joined_rooms(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let rooms = devices::joined_rooms(&state.pool, &user_id).await?;
    Ok(axum::Json(json!({ "total": rooms.len(), "joined_rooms": rooms })))
}

/// `GET /_synapse/admin/v1/users/{userId}/memberships`: for local and remote users alike.
async fn memberships(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = ruma::UserId::parse(args.get(0)?)
        .map_err(|error| crate::error::Error::invalid_param(format!("Invalid user id: {error}")))?;
    let memberships: Map<String, Value> = devices::memberships(&state.pool, &user_id)
        .await?
        .into_iter()
        .map(|(room_id, membership)| (room_id, Value::String(membership)))
        .collect();
    Ok(axum::Json(json!({ "memberships": memberships })))
}

/// `GET /_synapse/admin/v1/users/{userId}/accountdata`.
async fn account_data(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let data = devices::account_data(&state.pool, &user_id).await?;
    admin.audit("read account data", user_id.as_str());
    Ok(axum::Json(json!({ "account_data": { "global": data.global, "rooms": data.rooms } })))
}
