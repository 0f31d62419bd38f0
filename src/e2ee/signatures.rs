//! Checking ed25519 signatures on key objects (device keys, cross-signing keys), and merging
//! signatures other clients uploaded into the objects they sign.

use crate::db::e2ee_cross_signing::StoredSignature;
use ruma::serde::Base64;
use ruma::signatures::{to_canonical_json_string_for_signing, verify_canonical_json_bytes};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, SigningKeyAlgorithm};
use serde_json::{Map, Value};

/// The signature `signer`'s key `key_id` made over `object`, if the object carries one.
pub(crate) fn signature_of<'a>(object: &'a Value, signer: &str, key_id: &str) -> Option<&'a str> {
    object.get("signatures")?.get(signer)?.get(key_id)?.as_str()
}

/// Checks that `object` carries a valid signature by `signer`'s ed25519 key `key_id`, whose
/// public key (unpadded base64) is `public_key`. The error says what is wrong, for the client.
pub(crate) fn verify(object: &Value, signer: &str, key_id: &str, public_key: &str) -> Result<(), String> {
    let signature =
        signature_of(object, signer, key_id).ok_or_else(|| format!("No signature by {signer}'s key {key_id}"))?;
    verify_signature(object, signature, public_key)
}

/// Checks one given `signature` (unpadded base64) over `object` (without its `signatures`
/// and `unsigned`, as the spec signs JSON).
pub(crate) fn verify_signature(object: &Value, signature: &str, public_key: &str) -> Result<(), String> {
    let canonical = canonical_object(object)?;
    let signed =
        to_canonical_json_string_for_signing(&canonical).map_err(|error| format!("Cannot canonicalise: {error}"))?;
    let public_key = Base64::<ruma::serde::base64::Standard>::parse(public_key)
        .map_err(|error| format!("The public key is not base64: {error}"))?;
    let signature = Base64::<ruma::serde::base64::Standard>::parse(signature)
        .map_err(|error| format!("The signature is not base64: {error}"))?;
    verify_canonical_json_bytes(
        &SigningKeyAlgorithm::Ed25519,
        public_key.as_bytes(),
        signature.as_bytes(),
        signed.as_bytes(),
    )
    .map_err(|error| format!("The signature does not verify: {error}"))
}

/// Refuses JSON that canonical JSON cannot hold (fractions; integers beyond ±(2^53 − 1)):
/// whatever is signed is signed over its canonical form, so such a key or `auth_data` could
/// never be verified by the clients it is handed to.
pub(crate) fn require_canonical(json: &Value, what: &str) -> crate::error::Result<()> {
    CanonicalJsonValue::try_from(json.clone())
        .map(drop)
        .map_err(|error| crate::error::Error::bad_json(format!("{what} is not canonical JSON: {error}")))
}

fn canonical_object(object: &Value) -> Result<CanonicalJsonObject, String> {
    match CanonicalJsonValue::try_from(object.clone()) {
        Ok(CanonicalJsonValue::Object(object)) => Ok(object),
        Ok(_) => Err("A signed key must be a JSON object".to_owned()),
        Err(error) => Err(format!("The key is not canonical JSON: {error}")),
    }
}

/// Adds stored signatures to `object` (under `signatures.<signer>.<key id>`), next to those
/// it was uploaded with.
pub(crate) fn merge<'a>(object: &mut Value, signatures: impl Iterator<Item = &'a StoredSignature>) {
    let Some(map) = object.as_object_mut() else { return };
    let all = map.entry("signatures").or_insert_with(|| Value::Object(Map::new()));
    if !all.is_object() {
        *all = Value::Object(Map::new());
    }
    let Some(all) = all.as_object_mut() else { return };
    for signature in signatures {
        let by_signer = all.entry(signature.signer_user_id.clone()).or_insert_with(|| Value::Object(Map::new()));
        if let Some(by_signer) = by_signer.as_object_mut() {
            by_signer.insert(signature.signer_key_id.clone(), Value::String(signature.signature.clone()));
        }
    }
}
