//! A user's devices: listing, naming and deleting them.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::{Reservation, Streams};
use crate::users::{Session, token_cache, uia};
use ruma::api::client::device::Device;
use ruma::api::client::uiaa::{AuthData, AuthType};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedDeviceId, ServerName, UInt, UserId};
use serde_json::json;
use std::collections::BTreeSet;

fn to_ruma(device: db::devices::Device) -> Device {
    let mut out = Device::new(OwnedDeviceId::from(device.device_id));
    out.display_name = device.display_name;
    out.last_seen_ip = device.last_seen_ip;
    out.last_seen_ts = device.last_seen_ts.and_then(|ts| UInt::try_from(ts).ok()).map(MilliSecondsSinceUnixEpoch);
    out
}

pub(crate) async fn list(pool: &Store, user_id: &UserId) -> Result<Vec<Device>> {
    Ok(db::devices::list(pool, user_id.as_str()).await?.into_iter().map(to_ruma).collect())
}

pub(crate) async fn get(pool: &Store, user_id: &UserId, device_id: &str) -> Result<Device> {
    db::devices::get(pool, user_id.as_str(), device_id)
        .await?
        .map(to_ruma)
        .ok_or_else(|| Error::not_found("No such device"))
}

/// The longest device display name, in characters: Synapse's limit (the spec names none).
pub(crate) const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// The one check of a device display name, wherever one is set (registration, login, rename).
pub(crate) fn check_display_name(display_name: Option<&str>) -> Result<()> {
    if display_name.is_some_and(|name| name.chars().count() > MAX_DISPLAY_NAME_CHARS) {
        return Err(Error::too_large(format!(
            "A device display name may be at most {MAX_DISPLAY_NAME_CHARS} characters"
        )));
    }
    Ok(())
}

pub(crate) async fn rename(pool: &Store, user_id: &UserId, device_id: &str, display_name: Option<&str>) -> Result<()> {
    check_display_name(display_name)?;
    if !db::devices::set_display_name(pool, user_id.as_str(), device_id, display_name).await? {
        return Err(Error::not_found("No such device"));
    }
    Ok(())
}

/// Which devices to delete, and through which endpoint: a UIA session opened by one request
/// authorises only that request (the same endpoint, the same devices).
pub(crate) enum Deletion<'a> {
    /// `DELETE /devices/{deviceId}`.
    One(&'a str),
    /// `POST /delete_devices`.
    Many(&'a [String]),
}

impl Deletion<'_> {
    fn device_ids(&self) -> Vec<String> {
        match self {
            Deletion::One(device_id) => vec![(*device_id).to_owned()],
            Deletion::Many(device_ids) => device_ids.to_vec(),
        }
    }

    fn requirement<'u>(&self, user: &'u UserId) -> uia::Requirement<'u> {
        let (operation, subject) = match self {
            Deletion::One(device_id) => ("delete_device", json!({ "device_id": device_id })),
            Deletion::Many(device_ids) => {
                // The same devices in another order are the same request.
                let set: BTreeSet<&String> = device_ids.iter().collect();
                ("delete_devices", json!({ "devices": set }))
            }
        };
        uia::Requirement { operation, subject, user: Some(user), flows: vec![vec![AuthType::Password]], remember: None }
    }
}

/// Deletes devices after the user proves who they are again (their password). Device ids
/// that do not exist are ignored, as the spec's responses allow.
pub(crate) async fn delete(
    pool: &Store,
    streams: &Streams,
    server_name: &ServerName,
    session: &Session,
    deletion: Deletion<'_>,
    auth: Option<&AuthData>,
) -> Result<()> {
    uia::authenticate(pool, server_name, &deletion.requirement(&session.user_id), auth).await?;
    delete_now(pool, streams, &session.user_id, &deletion.device_ids()).await?;
    Ok(())
}

/// Deletes devices without asking (after UIA, or for an operator); ids that do not exist are
/// ignored. Returns how many existed.
pub(crate) async fn delete_now(
    pool: &Store,
    streams: &Streams,
    user_id: &UserId,
    device_ids: &[String],
) -> Result<u64> {
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let mut audience = Vec::new();
    let deleted = db::devices::delete(&mut *tx, user_id.as_str(), device_ids).await?;
    if !deleted.is_empty() {
        audience = record_deletion(&mut tx, &mut reservation, user_id, &deleted).await?;
    }
    tx.commit().await?;
    token_cache::forget_user(pool, user_id.as_str());
    reservation.committed_for(audience).await?;
    Ok(deleted.len() as u64)
}

/// Deleting a device deletes its encryption keys (through foreign keys) and changes the
/// user's device list: others who share a room must learn of it through `/sync`, so the
/// change takes a stream position, and other servers sharing a room hear of each device
/// (`m.device_list_update` with `deleted`). Signatures on the vanished device go too. Returns
/// whose syncs to wake (the user's, and those of everyone in their rooms).
pub(crate) async fn record_deletion(
    tx: &mut db::Transaction,
    reservation: &mut Reservation<'_>,
    user_id: &UserId,
    deleted: &[String],
) -> Result<Vec<String>> {
    let user = user_id.as_str();
    for device_id in deleted {
        // Each device its own position: a receiver orders updates by `stream_id`.
        let position = reservation.next(tx).await?;
        let prev_id = db::e2ee_device_lists::previous_change(&mut **tx, user, position).await?;
        db::e2ee_device_lists::record_change(&mut **tx, user, position).await?;
        let change = crate::outbox::federation::DeviceChange {
            user_id,
            device_id: device_id.as_str().into(),
            display_name: None,
            keys: None,
            deleted: true,
            prev_id,
        };
        crate::outbox::federation::device_list_update(tx, change, position).await?;
    }
    db::e2ee_cross_signing::delete_orphan_signatures(&mut **tx, user).await?;
    Ok(db::e2ee_device_lists::audience(&mut **tx, &[user.to_owned()]).await?)
}
