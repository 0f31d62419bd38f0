//! Devices: list, inspect, rename, delete.

use crate::error::Result;
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::state::AppState;
use crate::users::devices;
use axum::Router;
use axum::extract::State;
use ruma::api::client::device::{delete_device, delete_devices, get_device, get_devices, update_device};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<get_devices::v3::Request, _, _>(list)
        .ruma::<get_device::v3::Request, _, _>(get)
        .ruma::<update_device::v3::Request, _, _>(update)
        .ruma::<delete_device::v3::Request, _, _>(delete_one)
        .ruma::<delete_devices::v3::Request, _, _>(delete_many)
}

/// `GET /_matrix/client/*/devices`: get registered devices for authenticated user.
async fn list(
    State(state): State<AppState>,
    request: Authed<get_devices::v3::Request>,
) -> Result<RumaResponse<get_devices::v3::Response>> {
    let devices = devices::list(&state.pool, &request.session.user_id).await?;
    Ok(get_devices::v3::Response::new(devices).into())
}

/// `GET /_matrix/client/*/devices/{deviceId}`: get a device for authenticated user.
async fn get(
    State(state): State<AppState>,
    request: Authed<get_device::v3::Request>,
) -> Result<RumaResponse<get_device::v3::Response>> {
    let device = devices::get(&state.pool, &request.session.user_id, request.body.device_id.as_str()).await?;
    Ok(get_device::v3::Response::new(device).into())
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
