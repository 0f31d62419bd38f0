//! End-to-end encryption support (spec: "End-to-End Encryption"): the server stores and hands
//! out the keys clients publish, checks the signatures it can check, tells clients whose keys
//! changed, and keeps their encrypted key backups. It never sees plaintext.

pub(crate) mod backup;
pub(crate) mod cross_signing;
pub(crate) mod device_keys;
pub(crate) mod device_lists;
pub(crate) mod one_time_keys;
pub(crate) mod remote_identities;
pub(crate) mod signatures;
pub(crate) mod types;

use crate::error::{Error, Result};
use ruma::serde::Raw;
use serde_json::Value;

/// Stored key JSON as the typed raw value ruma's responses carry (keys are served as the client
/// uploaded them, signatures and unknown fields included, so they are never re-parsed).
pub(crate) fn to_raw<T>(json: &Value) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(json)
        .map(Raw::from_json)
        .map_err(|error| Error::internal(format!("could not serialise stored keys: {error}")))
}
