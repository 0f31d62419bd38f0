//! Remote users' device lists, cached: fetched whole (`GET /user/devices/{userId}`, a
//! *resync*) when first needed, then kept current from the user's server's EDUs. Each
//! `m.device_list_update` names the update it follows (`prev_id`); when that is newer than
//! the copy here an update was missed, and the list is fetched whole once more. Whether the
//! copy is trusted at all is the caller's choice (`fan_out`): only while the user shares a
//! room with a local user does their server keep sending us updates.

use crate::db;
use crate::db::remote_device_lists::{CachedDevice, CachedDevices};
use crate::e2ee::to_raw;
use crate::e2ee::types::QueriedKeys;
use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::time::now_ms;
use ruma::api::federation::device::get_devices::v1 as get_devices;
use ruma::api::federation::transactions::edu::{DeviceListUpdateContent, SigningKeyUpdateContent};
use ruma::serde::Raw;
use ruma::{OwnedDeviceId, UserId};
use serde_json::Value;

fn parse(stored: &str) -> Result<CachedDevices> {
    serde_json::from_str(stored).map_err(|error| Error::internal(format!("a cached device list: {error}")))
}

fn serialize(devices: &CachedDevices) -> Result<String> {
    serde_json::to_string(devices).map_err(|error| Error::internal(error.to_string()))
}

fn json_of<T>(raw: &Raw<T>) -> Option<Value> {
    serde_json::from_str(raw.json().get()).ok()
}

/// The cached copy of `user_id`'s devices, if any.
pub(crate) async fn cached(ctx: FedCtx<'_>, user_id: &UserId) -> Result<Option<CachedDevices>> {
    db::remote_device_lists::get(ctx.rooms.pool, user_id.as_str()).await?.map(|row| parse(&row.devices)).transpose()
}

/// Fetches `user_id`'s list whole from their server and keeps it.
pub(crate) async fn resync(ctx: FedCtx<'_>, user_id: &UserId) -> Result<CachedDevices> {
    let request = get_devices::Request::new(user_id.to_owned());
    let response = ctx.client.send(user_id.server_name(), request).await?;
    if response.user_id != user_id {
        return Err(Error::bad_json(format!(
            "{} answered for {} instead of {user_id}",
            user_id.server_name(),
            response.user_id
        )));
    }
    let mut devices = CachedDevices {
        master_key: response.master_key.as_ref().and_then(json_of),
        self_signing_key: response.self_signing_key.as_ref().and_then(json_of),
        ..CachedDevices::default()
    };
    for device in response.devices {
        // Keys that name another user or device are not this device's.
        let Some(keys) = json_of(&device.keys) else { continue };
        if keys["user_id"] != user_id.as_str() || keys["device_id"] != device.device_id.as_str() {
            continue;
        }
        devices
            .devices
            .insert(device.device_id.to_string(), CachedDevice { keys, display_name: device.device_display_name });
    }
    let stream_id = i64::try_from(u64::from(response.stream_id)).unwrap_or(i64::MAX);
    db::remote_device_lists::put(ctx.rooms.pool, user_id.as_str(), stream_id, &serialize(&devices)?, true, now_ms())
        .await?;
    Ok(devices)
}

/// Adds a cached list to a `/keys/query` answer: the devices asked for (all when none are
/// named) and the public cross-signing keys.
pub(crate) fn answer(
    user_id: &UserId,
    cached: &CachedDevices,
    wanted: &[OwnedDeviceId],
    into: &mut QueriedKeys,
) -> Result<()> {
    let devices = into.device_keys.entry(user_id.to_owned()).or_default();
    for (device_id, device) in &cached.devices {
        let device_id = OwnedDeviceId::from(device_id.as_str());
        if !wanted.is_empty() && !wanted.contains(&device_id) {
            continue;
        }
        let mut keys = device.keys.clone();
        if let Some(object) = keys.as_object_mut() {
            object.insert("unsigned".to_owned(), serde_json::json!({ "device_display_name": device.display_name }));
        }
        devices.insert(device_id, to_raw(&keys)?);
    }
    if let Some(master) = &cached.master_key {
        into.master_keys.insert(user_id.to_owned(), to_raw(master)?);
    }
    if let Some(self_signing) = &cached.self_signing_key {
        into.self_signing_keys.insert(user_id.to_owned(), to_raw(self_signing)?);
    }
    Ok(())
}

/// An `m.device_list_update` for a user with a cached list: applied when it follows what the
/// copy holds, ignored when the copy already covers it, and a resync when one was missed.
/// Nothing is cached for a user nobody asked about yet (their list is fetched when needed).
pub(crate) async fn device_list_update(ctx: FedCtx<'_>, update: &DeviceListUpdateContent) -> Result<()> {
    let user = update.user_id.as_str();
    let stream_id = i64::try_from(u64::from(update.stream_id)).unwrap_or(i64::MAX);
    let mut tx = ctx.rooms.pool.begin().await?;
    let Some(row) = db::remote_device_lists::get_for_update(&mut tx, user).await? else { return Ok(()) };
    if stream_id <= row.stream_id {
        return Ok(());
    }
    let follows =
        update.prev_id.iter().all(|prev| i64::try_from(u64::from(*prev)).unwrap_or(i64::MAX) <= row.stream_id);
    if !follows {
        drop(tx);
        tracing::info!(user, stream_id, cached = row.stream_id, "a device-list update was missed; fetching the list");
        if let Err(error) = resync(ctx, &update.user_id).await {
            // A copy known to be stale must not answer queries: without it the next query
            // fetches the list again.
            tracing::info!(user, %error, "fetching a device list failed; dropping the stale copy");
            db::remote_device_lists::delete(ctx.rooms.pool, user).await?;
        }
        return Ok(());
    }
    let mut devices = parse(&row.devices)?;
    let device_id = update.device_id.to_string();
    if update.deleted == Some(true) {
        devices.devices.remove(&device_id);
    } else if let Some(keys) = update.keys.as_ref().and_then(json_of) {
        devices.devices.insert(device_id, CachedDevice { keys, display_name: update.device_display_name.clone() });
    } else if let Some(device) = devices.devices.get_mut(&device_id) {
        device.display_name = update.device_display_name.clone();
    }
    db::remote_device_lists::put(&mut *tx, user, stream_id, &serialize(&devices)?, false, now_ms()).await?;
    tx.commit().await?;
    Ok(())
}

/// An `m.signing_key_update`: the cached copy takes the new public cross-signing keys.
pub(crate) async fn signing_key_update(ctx: FedCtx<'_>, update: &SigningKeyUpdateContent) -> Result<()> {
    let user = update.user_id.as_str();
    let mut tx = ctx.rooms.pool.begin().await?;
    let Some(row) = db::remote_device_lists::get_for_update(&mut tx, user).await? else { return Ok(()) };
    let mut devices = parse(&row.devices)?;
    if let Some(master) = update.master_key.as_ref().and_then(json_of) {
        devices.master_key = Some(master);
    }
    if let Some(self_signing) = update.self_signing_key.as_ref().and_then(json_of) {
        devices.self_signing_key = Some(self_signing);
    }
    db::remote_device_lists::put(&mut *tx, user, row.stream_id, &serialize(&devices)?, false, now_ms()).await?;
    tx.commit().await?;
    Ok(())
}
