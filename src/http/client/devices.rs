//! Devices: list, inspect, rename, delete.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::state::AppState;
use crate::users::devices;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use ruma::api::client::device::{delete_device, delete_devices, get_device, get_devices, update_device};
use ruma::api::{OutgoingResponse, OutgoingResponseExt};
use serde_json::Value;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<get_devices::v3::Request, _, _>(list)
        .ruma::<get_device::v3::Request, _, _>(get)
        .ruma::<update_device::v3::Request, _, _>(update)
        .ruma::<delete_device::v3::Request, _, _>(delete_one)
        .ruma::<delete_devices::v3::Request, _, _>(delete_many)
}

/// `GET /_matrix/client/*/devices`: get registered devices for authenticated user.
async fn list(State(state): State<AppState>, request: Authed<get_devices::v3::Request>) -> Result<Response> {
    let devices = devices::list(&state.pool, &request.session.user_id).await?;
    without_null_names(get_devices::v3::Response::new(devices))
}

/// `GET /_matrix/client/*/devices/{deviceId}`: get a device for authenticated user.
async fn get(State(state): State<AppState>, request: Authed<get_device::v3::Request>) -> Result<Response> {
    let device = devices::get(&state.pool, &request.session.user_id, request.body.device_id.as_str()).await?;
    without_null_names(get_device::v3::Response::new(device))
}

/// ruma's `Device` writes a device without a name as `"display_name": null`, which the spec's
/// schema (a string) rejects, and clients validating against it choke on: the field is left
/// out instead.
fn without_null_names(response: impl OutgoingResponse) -> Result<Response> {
    let internal = |error: &dyn std::fmt::Display| Error::internal(format!("serialising devices: {error}"));
    let (parts, body) = response.try_into_http_response::<Vec<u8>>().map_err(|e| internal(&e))?.into_parts();
    let mut json: Value = serde_json::from_slice(&body).map_err(|e| internal(&e))?;
    let strip = |device: &mut Value| {
        if let Some(device) = device.as_object_mut()
            && device.get("display_name").is_some_and(Value::is_null)
        {
            device.remove("display_name");
        }
    };
    match json.get_mut("devices") {
        Some(Value::Array(devices)) => devices.iter_mut().for_each(strip),
        _ => strip(&mut json),
    }
    let body = serde_json::to_vec(&json).map_err(|e| internal(&e))?;
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// `PUT /_matrix/client/*/devices/{deviceId}`: update metadata for a device, or create a new device.
async fn update(
    State(state): State<AppState>,
    request: Authed<update_device::v3::Request>,
) -> Result<RumaResponse<update_device::v3::Response>> {
    let body = &request.body;
    devices::rename(&state.pool, &request.session.user_id, body.device_id.as_str(), body.display_name.as_deref())
        .await?;
    Ok(update_device::v3::Response::new().into())
}

/// `DELETE /_matrix/client/*/devices/{deviceId}`: delete a device for authenticated user.
async fn delete_one(
    State(state): State<AppState>,
    request: Authed<delete_device::v3::Request>,
) -> Result<RumaResponse<delete_device::v3::Response>> {
    let body = &request.body;
    devices::delete(
        &state.pool,
        &state.streams,
        &state.server_name,
        &request.session,
        devices::Deletion::One(body.device_id.as_str()),
        body.auth.as_ref(),
    )
    .await?;
    Ok(delete_device::v3::Response::new().into())
}

/// `POST /_matrix/client/*/delete_devices`: delete specified devices.
async fn delete_many(
    State(state): State<AppState>,
    request: Authed<delete_devices::v3::Request>,
) -> Result<RumaResponse<delete_devices::v3::Response>> {
    let body = &request.body;
    let ids: Vec<String> = body.devices.iter().map(ToString::to_string).collect();
    let deletion = devices::Deletion::Many(&ids);
    devices::delete(&state.pool, &state.streams, &state.server_name, &request.session, deletion, body.auth.as_ref())
        .await?;
    Ok(delete_devices::v3::Response::new().into())
}
