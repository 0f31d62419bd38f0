//! Cross-signing (spec: "Cross-signing"): a user's master key, and the self-signing and
//! user-signing keys it signs (`POST /keys/device_signing/upload`); signatures of devices and
//! of other users' master keys made with them (`POST /keys/signatures/upload`).

use crate::db;
use crate::db::e2ee_cross_signing::{StoredCrossSigningKey, StoredSignature};
use crate::e2ee::to_raw;
use crate::e2ee::types::{QueriedKeys, SignatureFailures, SignedKeys, SigningKeysUpload};
use crate::e2ee::{device_keys, device_lists, remote_identities, signatures};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::Streams;
use crate::users::{Session, uia};
use ruma::api::client::uiaa::{AuthData, AuthType};
use ruma::encryption::{CrossSigningKey, KeyUsage};
use ruma::serde::Raw;
use ruma::{OwnedUserId, ServerName, UserId};
use serde_json::Value;
use sqlx::PgConnection;
use std::collections::BTreeMap;

pub(crate) const MASTER: &str = "master";
pub(crate) const SELF_SIGNING: &str = "self_signing";
pub(crate) const USER_SIGNING: &str = "user_signing";

/// A validated uploaded cross-signing key.
struct Uploaded {
    key_type: &'static str,
    public_key: String,
    json: Value,
}

fn parse(raw: &Raw<CrossSigningKey>, key_type: &'static str, usage: KeyUsage, user: &UserId) -> Result<Uploaded> {
    let field = format!("{key_type}_key");
    let key: CrossSigningKey =
        raw.deserialize().map_err(|error| Error::bad_json(format!("Invalid {field}: {error}")))?;
    if key.user_id != user {
        return Err(Error::invalid_param(format!("{field}.user_id must be {user}")));
    }
    if !key.usage.contains(&usage) {
        return Err(Error::invalid_param(format!("{field}.usage must contain {}", usage.as_str())));
    }
    // Exactly one ed25519 key, named by its public key.
    let mut keys = key.keys.iter();
    let (Some((id, public_key)), None) = (keys.next(), keys.next()) else {
        return Err(Error::invalid_param(format!("{field}.keys must hold exactly one key")));
    };
    if id.as_str() != format!("ed25519:{public_key}") {
        return Err(Error::invalid_param(format!("{field}.keys must map ed25519:<public key> to that public key")));
    }
    let json =
        serde_json::from_str(raw.json().get()).map_err(|error| Error::bad_json(format!("Invalid {field}: {error}")))?;
    signatures::require_canonical(&json, &field)?;
    Ok(Uploaded { key_type, public_key: public_key.clone(), json })
}

/// `POST /keys/device_signing/upload`. The first master key needs no authentication (a new
/// account's client sets cross-signing up at once); replacing keys needs the password, since
/// whoever holds the master key is who others trust.
pub(crate) async fn upload_keys(
    pool: &Store,
    streams: &Streams,
    server_name: &ServerName,
    session: &Session,
    upload: SigningKeysUpload<'_>,
    auth: Option<&AuthData>,
) -> Result<()> {
    let user = &session.user_id;
    let mut uploaded = Vec::new();
    if let Some(raw) = upload.master_key {
        uploaded.push(parse(raw, MASTER, KeyUsage::Master, user)?);
    }
    if let Some(raw) = upload.self_signing_key {
        uploaded.push(parse(raw, SELF_SIGNING, KeyUsage::SelfSigning, user)?);
    }
    if let Some(raw) = upload.user_signing_key {
        uploaded.push(parse(raw, USER_SIGNING, KeyUsage::UserSigning, user)?);
    }

    let users = [user.to_string()];
    let existing = db::e2ee_cross_signing::keys_of(pool, &users, &[MASTER, SELF_SIGNING, USER_SIGNING]).await?;
    let needs_auth = needs_authentication(&existing, &uploaded);
    if needs_auth {
        // The session authorises these keys only: a completed one cannot upload others.
        let subject = serde_json::json!({
            "master_key": upload.master_key,
            "self_signing_key": upload.self_signing_key,
            "user_signing_key": upload.user_signing_key,
        });
        let requirement = uia::Requirement {
            operation: "upload_cross_signing_keys",
            subject,
            user: Some(user),
            flows: vec![vec![AuthType::Password]],
            remember: None,
        };
        uia::authenticate(pool, server_name, &requirement, auth).await?;
    }

    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    db::e2ee_cross_signing::lock_user(&mut *tx, user.as_str()).await?;
    let existing = db::e2ee_cross_signing::keys_of(&mut *tx, &users, &[MASTER, SELF_SIGNING, USER_SIGNING]).await?;
    if !needs_auth && needs_authentication(&existing, &uploaded) {
        return Err(Error::forbidden("Cross-signing keys were set up concurrently; authenticate to replace them"));
    }
    // Self- and user-signing keys must carry the master key's signature: the new master key
    // when one comes with them, else the stored one.
    let master = uploaded
        .iter()
        .find(|key| key.key_type == MASTER)
        .map(|key| key.public_key.clone())
        .or_else(|| existing.iter().find(|key| key.key_type == MASTER).map(|key| key.public_key.clone()));
    let mut changed = false;
    for key in &uploaded {
        if key.key_type != MASTER {
            let Some(master) = &master else {
                return Err(Error::invalid_param("Upload a master key before the keys it signs"));
            };
            signatures::verify(&key.json, user.as_str(), &format!("ed25519:{master}"), master)
                .map_err(|error| Error::invalid_param(format!("{}_key: {error}", key.key_type)))?;
        }
        let same = existing
            .iter()
            .any(|stored| stored.key_type == key.key_type && stored.key_json.as_value() == Some(&key.json));
        if !same {
            db::e2ee_cross_signing::set_key(&mut *tx, user.as_str(), key.key_type, &key.public_key, &key.json).await?;
            changed = true;
        }
    }
    let mut audience = Vec::new();
    if changed {
        let position = reservation.next(&mut tx).await?;
        device_lists::record(&mut tx, user.as_str(), position).await?;
        audience = device_lists::audience(&mut tx, &[user.to_string()]).await?;
        // Other servers learn the public keys; the user-signing key is the user's own business.
        let public = |kind: &str| uploaded.iter().find(|key| key.key_type == kind).map(|key| to_raw(&key.json));
        let master_key = public(MASTER).transpose()?;
        let self_signing_key = public(SELF_SIGNING).transpose()?;
        if master_key.is_some() || self_signing_key.is_some() {
            crate::outbox::federation::signing_key_update(&mut tx, user, master_key, self_signing_key, position)
                .await?;
        }
    }
    tx.commit().await?;
    reservation.committed_for(audience).await?;
    Ok(())
}

/// Authentication is needed to replace a master key, or any key once a master key exists;
/// re-uploading exactly the stored keys (a client retrying) needs none.
fn needs_authentication(existing: &[StoredCrossSigningKey], uploaded: &[Uploaded]) -> bool {
    let has_master = existing.iter().any(|key| key.key_type == MASTER);
    let all_same = uploaded.iter().all(|key| {
        existing.iter().any(|stored| stored.key_type == key.key_type && stored.key_json.as_value() == Some(&key.json))
    });
    has_master && !all_same
}

/// Adds the cross-signing keys of `users` to a `/keys/query` response: master and
/// self-signing keys of everyone, the user-signing key only of the requester themselves.
pub(crate) async fn attach_to_query(
    conn: &mut PgConnection,
    requester: Option<&UserId>,
    users: &[String],
    uploaded: &BTreeMap<(&str, &str), Vec<&StoredSignature>>,
    response: &mut QueriedKeys,
) -> Result<()> {
    let keys = db::e2ee_cross_signing::keys_of(&mut *conn, users, &[MASTER, SELF_SIGNING, USER_SIGNING]).await?;
    for key in keys {
        if key.key_type == USER_SIGNING && requester.is_none_or(|requester| key.user_id != requester.as_str()) {
            continue;
        }
        let Ok(user) = OwnedUserId::try_from(key.user_id.as_str()) else { continue };
        let Some(mut json) = key.key_json.into_value() else { continue };
        if let Some(found) = uploaded.get(&(key.user_id.as_str(), key.public_key.as_str())) {
            signatures::merge(&mut json, found.iter().copied());
        }
        let raw = to_raw(&json)?;
        match key.key_type.as_str() {
            MASTER => response.master_keys.insert(user, raw),
            SELF_SIGNING => response.self_signing_keys.insert(user, raw),
            _ => response.user_signing_keys.insert(user, raw),
        };
    }
    Ok(())
}

/// `POST /keys/signatures/upload`: each signature is checked and stored, or reported in
/// `failures` under its user and key id; the valid ones commit together.
pub(crate) async fn upload_signatures(
    pool: &Store,
    streams: &Streams,
    session: &Session,
    signed_keys: &SignedKeys,
) -> Result<SignatureFailures> {
    let me = &session.user_id;
    let mut failures = SignatureFailures::new();
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let mut changed_users = Vec::new();
    let mut signed_devices = Vec::new();
    for (target_user, keys) in signed_keys {
        for (key_id, raw) in keys.iter() {
            let checked = match serde_json::from_str::<Value>(raw.get()) {
                Ok(object) => check_signature(&mut tx, me, target_user, key_id, &object).await?,
                Err(error) => Err(format!("Not a JSON object: {error}")),
            };
            match checked {
                Ok(accepted) => {
                    for signature in &accepted.signatures {
                        db::e2ee_cross_signing::add_signature(&mut *tx, signature).await?;
                    }
                    if accepted.signatures.is_empty() {
                        continue;
                    }
                    if accepted.own_device {
                        signed_devices.push(key_id.to_owned());
                    } else if !changed_users.contains(target_user) {
                        changed_users.push(target_user.clone());
                    }
                }
                Err(message) => {
                    failures.entry(target_user.clone()).or_default().insert(key_id.to_owned(), message);
                }
            }
        }
    }
    let mut audience = Vec::new();
    if !changed_users.is_empty() {
        let position = reservation.next(&mut tx).await?;
        for user in &changed_users {
            device_lists::record(&mut tx, user.as_str(), position).await?;
        }
        let users: Vec<String> = changed_users.iter().map(ToString::to_string).collect();
        audience = device_lists::audience(&mut tx, &users).await?;
    }
    if !signed_devices.is_empty() {
        device_keys::announce_signed(&mut tx, &mut reservation, me, &signed_devices).await?;
        audience.extend(device_lists::audience(&mut tx, &[me.to_string()]).await?);
    }
    tx.commit().await?;
    reservation.committed_for(audience).await?;
    Ok(failures)
}

/// The signatures the server accepts on one key, and whether that key is one of the signer's
/// own devices (whose keys other servers then hear of again).
struct Accepted {
    signatures: Vec<StoredSignature>,
    own_device: bool,
}

/// Which signatures in `object` (a key of `target`, id `key_id`) the server accepts from `me`:
/// - on one of my devices: my self-signing key's;
/// - on my master key: my devices';
/// - on another user's master key: my user-signing key's (a remote user's as cached here).
///
/// The object must be the stored key itself (apart from signatures): a signature over
/// anything else would be attached to a key it does not cover.
async fn check_signature(
    tx: &mut db::Transaction,
    me: &UserId,
    target: &UserId,
    key_id: &str,
    object: &Value,
) -> Result<std::result::Result<Accepted, String>> {
    let users = [target.to_string(), me.to_string()];
    let cross = db::e2ee_cross_signing::keys_of(&mut **tx, &users, &[MASTER, SELF_SIGNING, USER_SIGNING]).await?;
    let key_of = |user: &UserId, key_type: &str| {
        cross
            .iter()
            .find(|key| key.user_id == user.as_str() && key.key_type == key_type)
            .map(|key| key.public_key.clone())
    };
    let signature = |signer_key_id: String, signature: String| StoredSignature {
        target_user_id: target.to_string(),
        target_key_id: key_id.to_owned(),
        signer_user_id: me.to_string(),
        signer_key_id,
        signature,
    };

    if target == me {
        if let Some(device_keys) = db::e2ee_keys::device_keys(&mut **tx, me.as_str(), key_id).await? {
            let Some(self_signing) = key_of(me, SELF_SIGNING) else {
                return Ok(Err("You have no self-signing key".to_owned()));
            };
            if let Err(error) = same_key(Some(&device_keys), object) {
                return Ok(Err(error));
            }
            let signer = format!("ed25519:{self_signing}");
            let checked = signatures::verify(object, me.as_str(), &signer, &self_signing);
            let signatures = checked.map(|()| vec![signature(signer.clone(), sig_value(object, me, &signer))]);
            return Ok(signatures.map(|signatures| Accepted { signatures, own_device: true }));
        }
        if let Some(master) = key_of(me, MASTER).filter(|master| master == key_id) {
            let stored = cross.iter().find(|key| key.user_id == me.as_str() && key.key_type == MASTER);
            if let Some(stored) = stored
                && let Err(error) = same_key(stored.key_json.as_value(), object)
            {
                return Ok(Err(error));
            }
            return Ok(device_signatures_on_master(tx, me, &master, object).await?.map(|found| Accepted {
                signatures: found
                    .into_iter()
                    .map(|(device, sig)| signature(format!("ed25519:{device}"), sig))
                    .collect(),
                own_device: false,
            }));
        }
        return Ok(Err(format!("{key_id} is neither one of your devices nor your master key")));
    }

    let target_master = match cross.iter().find(|key| key.user_id == target.as_str() && key.key_type == MASTER) {
        Some(stored) => Some((stored.public_key.clone(), stored.key_json.as_value().cloned())),
        None if target.server_name() != me.server_name() => {
            remote_identities::cached_master_key(tx, target).await?.map(|(public_key, json)| (public_key, Some(json)))
        }
        None => None,
    };
    let Some((_, master_json)) = target_master.filter(|(master, _)| master == key_id) else {
        return Ok(Err(format!("{key_id} is not {target}'s master key")));
    };
    let Some(user_signing) = key_of(me, USER_SIGNING) else {
        return Ok(Err("You have no user-signing key".to_owned()));
    };
    if let Err(error) = same_key(master_json.as_ref(), object) {
        return Ok(Err(error));
    }
    let signer = format!("ed25519:{user_signing}");
    let checked = signatures::verify(object, me.as_str(), &signer, &user_signing);
    let signatures = checked.map(|()| vec![signature(signer.clone(), sig_value(object, me, &signer))]);
    Ok(signatures.map(|signatures| Accepted { signatures, own_device: false }))
}

fn sig_value(object: &Value, signer: &UserId, key_id: &str) -> String {
    signatures::signature_of(object, signer.as_str(), key_id).unwrap_or_default().to_owned()
}

/// The device signatures on my master key that verify with my devices' stored keys.
async fn device_signatures_on_master(
    tx: &mut db::Transaction,
    me: &UserId,
    master: &str,
    object: &Value,
) -> Result<std::result::Result<Vec<(String, String)>, String>> {
    let Some(mine) = object.get("signatures").and_then(|all| all.get(me.as_str())).and_then(Value::as_object) else {
        return Ok(Err("No signatures by your devices".to_owned()));
    };
    let mut found = Vec::new();
    for (signer_key_id, signature) in mine {
        let Some(device) = signer_key_id.strip_prefix("ed25519:") else { continue };
        if device == master {
            continue;
        }
        let Some(signature) = signature.as_str() else { return Ok(Err(format!("{signer_key_id}: not a string"))) };
        let Some(device_keys) = db::e2ee_keys::device_keys(&mut **tx, me.as_str(), device).await? else {
            return Ok(Err(format!("{signer_key_id} is not a device of yours with keys")));
        };
        let Some(public_key) = device_keys.get("keys").and_then(|keys| keys.get(signer_key_id)).and_then(Value::as_str)
        else {
            return Ok(Err(format!("Device {device} has no ed25519 key")));
        };
        if let Err(error) = signatures::verify_signature(object, signature, public_key) {
            return Ok(Err(format!("{signer_key_id}: {error}")));
        }
        found.push((device.to_owned(), signature.to_owned()));
    }
    if found.is_empty() {
        return Ok(Err("No signatures by your devices".to_owned()));
    }
    Ok(Ok(found))
}

/// Whether `uploaded` is the stored key, ignoring signatures and `unsigned` (a stored key
/// that cannot be read is no key to sign).
fn same_key(stored: Option<&Value>, uploaded: &Value) -> std::result::Result<(), String> {
    let Some(stored) = stored else { return Err("The stored key cannot be read".to_owned()) };
    let strip = |value: &Value| {
        let mut value = value.clone();
        if let Some(object) = value.as_object_mut() {
            object.remove("signatures");
            object.remove("unsigned");
        }
        value
    };
    if strip(stored) == strip(uploaded) { Ok(()) } else { Err("The signed key is not the key stored".to_owned()) }
}
