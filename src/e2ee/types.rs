//! What the encryption domain takes and gives, independent of the API that carried it: the
//! client-server `/keys/*` endpoints today, federation's `/user/keys/*` next. The edges
//! convert their ruma request and response types to and from these.

use ruma::encryption::{CrossSigningKey, DeviceKeys, OneTimeKey};
use ruma::serde::Raw;
use ruma::{OwnedDeviceId, OwnedOneTimeKeyId, OwnedUserId};
use serde_json::Value;
use serde_json::value::RawValue as RawJsonValue;
use std::collections::BTreeMap;

pub(crate) type OneTimeKeys = BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>;

/// What a device publishes at once (`/keys/upload`).
pub(crate) struct KeysUpload<'a> {
    pub device_keys: Option<&'a Raw<DeviceKeys>>,
    pub one_time_keys: &'a OneTimeKeys,
    pub fallback_keys: &'a OneTimeKeys,
}

/// A user's new cross-signing keys (`/keys/device_signing/upload`).
pub(crate) struct SigningKeysUpload<'a> {
    pub master_key: Option<&'a Raw<CrossSigningKey>>,
    pub self_signing_key: Option<&'a Raw<CrossSigningKey>>,
    pub user_signing_key: Option<&'a Raw<CrossSigningKey>>,
}

/// Signatures made by the uploader, per target user and key id, as uploaded.
pub(crate) type SignedKeys = BTreeMap<OwnedUserId, BTreeMap<String, Box<RawJsonValue>>>;

/// Why a signature was refused, per target user and key id.
pub(crate) type SignatureFailures = BTreeMap<OwnedUserId, BTreeMap<String, String>>;

/// Per server that could not be asked, the reason (`{"status": …, "message": …}`).
pub(crate) type ServerFailures = BTreeMap<String, Value>;

/// The keys a `/keys/query` found.
#[derive(Default)]
pub(crate) struct QueriedKeys {
    pub device_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Raw<DeviceKeys>>>,
    pub master_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    pub self_signing_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    /// Only ever the requester's own.
    pub user_signing_keys: BTreeMap<OwnedUserId, Raw<CrossSigningKey>>,
    pub failures: ServerFailures,
}

/// The keys a `/keys/claim` handed out.
#[derive(Default)]
pub(crate) struct ClaimedKeys {
    pub one_time_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeys>>,
    pub failures: ServerFailures,
}

/// Whose device lists a user should refresh, and whom they no longer share a room with.
#[derive(Default, Debug)]
pub struct DeviceListChanges {
    pub changed: Vec<OwnedUserId>,
    pub left: Vec<OwnedUserId>,
}

impl DeviceListChanges {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.left.is_empty()
    }
}
