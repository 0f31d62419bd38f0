//! What this server answers other servers about its users' keys: the same `e2ee` domain
//! functions a local client's `/keys/query` and `/keys/claim` use, for local users only, and
//! never a user-signing key.

use crate::db;
use crate::e2ee::types::{ClaimedKeys, QueriedKeys};
use crate::e2ee::{device_keys, one_time_keys};
use crate::error::{Error, Result};
use crate::store::Store;
use ruma::api::federation::device::get_devices::v1 as get_devices;
use ruma::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedUserId, ServerName, UInt, UserId};
use std::collections::BTreeMap;

/// `POST /user/keys/query`: the keys of the local users named (others are left out).
pub(crate) async fn query(
    pool: &Store,
    server_name: &ServerName,
    wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
) -> Result<QueriedKeys> {
    device_keys::query(pool, server_name, None, wanted).await
}

/// `POST /user/keys/claim`: each one-time key goes to one claimer, then the fallback key.
pub(crate) async fn claim(
    pool: &Store,
    server_name: &ServerName,
    wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>,
) -> Result<ClaimedKeys> {
    one_time_keys::claim(pool, server_name, wanted).await
}

/// `GET /user/devices/{userId}`: a local user's devices that have keys, their cross-signing
/// keys, and the stream id of their latest device-list change (what the `stream_id` of the
/// `m.device_list_update` EDUs that follow will build on).
pub(crate) async fn devices(pool: &Store, server_name: &ServerName, user_id: &UserId) -> Result<get_devices::Response> {
    if user_id.server_name() != server_name {
        return Err(Error::not_found(format!("{user_id} is not a user of this server")));
    }
    let stream_id = db::e2ee_device_lists::previous_change(pool, user_id.as_str(), i64::MAX).await?.unwrap_or(0);
    let wanted = BTreeMap::from([(user_id.to_owned(), Vec::new())]);
    let mut found = device_keys::query(pool, server_name, None, &wanted).await?;
    let mut response = get_devices::Response::new(user_id.to_owned(), UInt::try_from(stream_id).unwrap_or_default());
    for (device_id, keys) in found.device_keys.remove(user_id).unwrap_or_default() {
        let display_name = keys
            .get_field::<serde_json::Value>("unsigned")
            .ok()
            .flatten()
            .and_then(|unsigned| unsigned["device_display_name"].as_str().map(str::to_owned));
        let mut device = get_devices::UserDevice::new(device_id, keys);
        device.device_display_name = display_name;
        response.devices.push(device);
    }
    response.master_key = found.master_keys.remove(user_id);
    response.self_signing_key = found.self_signing_keys.remove(user_id);
    Ok(response)
}
