//! Random secrets and identifiers.

use base64::Engine;
use rand::{Rng, RngCore, distributions::Alphanumeric, rngs::OsRng};
use sha2::{Digest, Sha256};

/// An access token: 256 random bits. Only its SHA-256 digest is stored.
pub(crate) fn new_access_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("hth_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub(crate) fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Device ids in the familiar Synapse shape: ten upper-case letters.
pub(crate) fn new_device_id() -> String {
    (0..10).map(|_| char::from(OsRng.gen_range(b'A'..=b'Z'))).collect()
}

pub(crate) fn random_alphanumeric(length: usize) -> String {
    OsRng.sample_iter(&Alphanumeric).take(length).map(char::from).collect()
}
