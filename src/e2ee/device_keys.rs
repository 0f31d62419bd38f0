//! Device identity keys (`POST /keys/upload`'s `device_keys`, `POST /keys/query`).

use crate::db;
use crate::db::e2ee_cross_signing::StoredSignature;
use crate::e2ee::types::{KeysUpload, QueriedKeys};
use crate::e2ee::{cross_signing, device_lists, one_time_keys, signatures, to_raw};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::{Reservation, Streams};
use crate::users::Session;
use ruma::encryption::DeviceKeys;
use ruma::serde::Raw;
use ruma::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedUserId, ServerName, UInt, UserId};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Stores what the device publishes, all or nothing, and answers the device's one-time key
/// counts.
pub(crate) async fn upload(
    pool: &Store,
    streams: &Streams,
    session: &Session,
    upload: KeysUpload<'_>,
) -> Result<BTreeMap<OneTimeKeyAlgorithm, UInt>> {
    let device_keys = upload.device_keys.map(|raw| validate(raw, session)).transpose()?;
    let one_time = one_time_keys::parse_all(upload.one_time_keys)?;
    let fallback = one_time_keys::parse_all(upload.fallback_keys)?;

    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let user = session.user_id.as_str();
    let device = session.device_id.as_str();
    let mut changed = false;
    if let Some(keys) = &device_keys {
        changed = store(&mut tx, user, device, keys).await?;
    }
    one_time_keys::store(&mut tx, user, device, &one_time, &fallback).await?;
    let mut audience = Vec::new();
    if changed {
        let position = reservation.next(&mut tx).await?;
        let prev_id = db::e2ee_device_lists::previous_change(&mut *tx, user, position).await?;
        device_lists::record(&mut tx, user, position).await?;
        audience = device_lists::audience(&mut tx, &[user.to_owned()]).await?;
        // Other servers sharing a room hear of the new keys (`device_keys` is set when changed).
        let change = crate::outbox::federation::DeviceChange {
            user_id: &session.user_id,
            device_id: session.device_id.clone(),
            display_name: None,
            keys: device_keys.as_ref().map(to_raw).transpose()?,
            deleted: false,
            prev_id,
        };
        crate::outbox::federation::device_list_update(&mut tx, change, position).await?;
    }
    let counts = one_time_keys::counts(&mut tx, user, device).await?;
    tx.commit().await?;
    reservation.committed_for(audience).await?;
    Ok(counts)
}

/// Checks uploaded device keys: the spec's shape, the caller's own user and device, and the
/// device's signature over them with its own ed25519 key. Returns the JSON to store, without
/// `unsigned` (the server fills that in from the device).
fn validate(raw: &Raw<DeviceKeys>, session: &Session) -> Result<Value> {
    let keys: DeviceKeys =
        raw.deserialize().map_err(|error| Error::bad_json(format!("Invalid device_keys: {error}")))?;
    if keys.user_id != session.user_id {
        return Err(Error::invalid_param(format!("device_keys.user_id must be {}", session.user_id)));
    }
    if keys.device_id != session.device_id {
        return Err(Error::invalid_param(format!("device_keys.device_id must be {}", session.device_id)));
    }
    let mut json: Value = serde_json::from_str(raw.json().get())
        .map_err(|error| Error::bad_json(format!("Invalid device_keys: {error}")))?;
    let key_id = format!("ed25519:{}", session.device_id);
    let Some(public_key) = keys.keys.iter().find(|(id, _)| id.as_str() == key_id).map(|(_, key)| key.as_str()) else {
        return Err(Error::invalid_param(format!("device_keys.keys must hold the device's {key_id} key")));
    };
    signatures::verify(&json, session.user_id.as_str(), &key_id, public_key)
        .map_err(|error| Error::invalid_param(format!("device_keys: {error}")))?;
    if let Some(object) = json.as_object_mut() {
        object.remove("unsigned");
    }
    Ok(json)
}

/// Stores the device's keys; `true` when that changed what others see. The identity keys of
/// a device never change: an upload with other keys for a device that has keys is refused
/// (clients make a new device instead), as Synapse refuses it.
async fn store(tx: &mut db::Transaction, user: &str, device: &str, keys: &Value) -> Result<bool> {
    if db::e2ee_keys::insert_device_keys(&mut **tx, user, device, keys).await? {
        return Ok(true);
    }
    // Stored keys that cannot be read (logged) are replaced by the upload.
    let existing = db::e2ee_keys::device_keys(&mut **tx, user, device).await?.unwrap_or(Value::Null);
    if existing == *keys {
        return Ok(false);
    }
    if !existing.is_null() && existing.get("keys") != keys.get("keys") {
        return Err(Error::invalid_param("This device already has different identity keys; log in as a new device"));
    }
    // Same identity, other algorithms or signatures: keep the newer object.
    db::e2ee_keys::replace_device_keys(&mut **tx, user, device, keys).await?;
    Ok(true)
}

/// My devices' keys gained my self-signing key's signature: each device's keys as now
/// published take a position of their own (a receiver orders updates by `stream_id`), and
/// other servers sharing a room get them in an `m.device_list_update`, as after an upload,
/// so that their users see the devices cross-signed.
pub(crate) async fn announce_signed(
    tx: &mut db::Transaction,
    reservation: &mut Reservation<'_>,
    user_id: &UserId,
    devices: &[String],
) -> Result<()> {
    let user = user_id.as_str();
    let on_user = db::e2ee_cross_signing::signatures_on(&mut **tx, &[user.to_owned()]).await?;
    for device in devices {
        let Some(mut keys) = db::e2ee_keys::device_keys(&mut **tx, user, device).await? else { continue };
        signatures::merge(&mut keys, on_user.iter().filter(|signature| signature.target_key_id == *device));
        let position = reservation.next(tx).await?;
        let prev_id = db::e2ee_device_lists::previous_change(&mut **tx, user, position).await?;
        device_lists::record(tx, user, position).await?;
        let change = crate::outbox::federation::DeviceChange {
            user_id,
            device_id: device.as_str().into(),
            display_name: None,
            keys: Some(to_raw(&keys)?),
            deleted: false,
            prev_id,
        };
        crate::outbox::federation::device_list_update(tx, change, position).await?;
    }
    Ok(())
}

/// `POST /keys/query`: the keys of the requested local users' devices (all of them when the
/// list is empty) and their cross-signing keys, with every signature uploaded for them. The
/// requester is `None` for another server, which never sees user-signing keys. Remote users
/// are left to `federation::user_keys`.
pub(crate) async fn query(
    pool: &Store,
    server_name: &ServerName,
    requester: Option<&UserId>,
    wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
) -> Result<QueriedKeys> {
    let mut response = QueriedKeys::default();
    let mut users = Vec::new();
    let mut all_devices = Vec::new();
    let (mut device_users, mut device_ids) = (Vec::new(), Vec::new());
    for (user, devices) in wanted {
        if user.server_name() != server_name {
            continue;
        }
        users.push(user.to_string());
        all_devices.push(devices.is_empty());
        for device in devices {
            device_users.push(user.to_string());
            device_ids.push(device.to_string());
        }
        response.device_keys.insert(user.clone(), BTreeMap::new());
    }
    if users.is_empty() {
        return Ok(response);
    }

    let mut conn = pool.acquire().await?;
    let stored = db::e2ee_keys::query_device_keys(&mut *conn, &users, &all_devices, &device_ids, &device_users).await?;
    let uploaded = db::e2ee_cross_signing::signatures_on(&mut *conn, &users).await?;
    let mut by_target: BTreeMap<(&str, &str), Vec<&StoredSignature>> = BTreeMap::new();
    // A user's signatures on their own keys are for everyone; a signature by another user's
    // user-signing key says whom that user verified, which is theirs alone to see (as Synapse:
    // another server, asking for no one, sees none of them).
    let visible = |signature: &StoredSignature| {
        signature.signer_user_id == signature.target_user_id
            || requester.is_some_and(|requester| signature.signer_user_id == requester.as_str())
    };
    for signature in uploaded.iter().filter(|signature| visible(signature)) {
        by_target.entry((&signature.target_user_id, &signature.target_key_id)).or_default().push(signature);
    }
    for keys in stored {
        let Ok(user) = UserId::parse(&keys.user_id) else { continue };
        let device = OwnedDeviceId::from(keys.device_id.as_str());
        let Some(mut json) = keys.key_json.into_value() else { continue };
        if let Some(found) = by_target.get(&(keys.user_id.as_str(), keys.device_id.as_str())) {
            signatures::merge(&mut json, found.iter().copied());
        }
        if let Some(object) = json.as_object_mut() {
            object.insert("unsigned".to_owned(), json!({ "device_display_name": keys.display_name }));
        }
        response.device_keys.entry(user).or_default().insert(device, to_raw(&json)?);
    }
    cross_signing::attach_to_query(&mut conn, requester, &users, &by_target, &mut response).await?;
    Ok(response)
}
