//! The server's ed25519 signing key.
//!
//! Stored in Synapse's file format (`ed25519 <version> <unpadded base64 seed>`), so an operator
//! moving a server name between implementations can keep its key. Generated on first start.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rand::RngCore;
use ruma::signatures::Ed25519KeyPair;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// PKCS#8 v1 prefix for an Ed25519 private key; followed by the 32-byte seed it makes the DER
/// document ruma's key pair reads.
const PKCS8_ED25519_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

pub struct SigningKey {
    pub key_pair: Ed25519KeyPair,
    /// The key id's version part, e.g. `a_Xy12`.
    pub version: String,
}

impl SigningKey {
    pub fn generate() -> anyhow::Result<SigningKey> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let version = format!("a_{}", crate::users::tokens::random_alphanumeric(4));
        Self::from_seed(&seed, version)
    }

    fn from_seed(seed: &[u8], version: String) -> anyhow::Result<SigningKey> {
        if seed.len() != 32 {
            bail!("an ed25519 seed is 32 bytes, not {}", seed.len());
        }
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(seed);
        let key_pair = Ed25519KeyPair::from_der(&der, version.clone()).context("loading the ed25519 key")?;
        Ok(SigningKey { key_pair, version })
    }

    /// Loads `path`, creating it (mode 0600) with a fresh key when it does not exist.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<SigningKey> {
        if path.exists() {
            let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            return Self::parse(&text).with_context(|| format!("parsing the signing key {}", path.display()));
        }
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let version = format!("a_{}", crate::users::tokens::random_alphanumeric(4));
        let key = Self::from_seed(&seed, version.clone())?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        writeln!(file, "ed25519 {version} {}", STANDARD_NO_PAD.encode(seed))?;
        file.sync_all()?;
        tracing::info!(path = %path.display(), key_id = %format!("ed25519:{version}"), "generated the server signing key");
        Ok(key)
    }

    fn parse(text: &str) -> anyhow::Result<SigningKey> {
        let line = text.lines().find(|line| !line.trim().is_empty()).context("the file is empty")?;
        let mut parts = line.split_whitespace();
        let (Some("ed25519"), Some(version), Some(seed)) = (parts.next(), parts.next(), parts.next()) else {
            bail!("expected `ed25519 <version> <base64 seed>`");
        };
        let seed = STANDARD_NO_PAD.decode(seed.trim_end_matches('=')).context("the seed is not base64")?;
        Self::from_seed(&seed, version.to_owned())
    }

    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.version)
    }

    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.key_pair.public_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_key_loads_back_identically() {
        let dir = std::env::temp_dir().join(format!("hearth-key-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("signing.key");
        let first = SigningKey::load_or_generate(&path).expect("generate");
        let second = SigningKey::load_or_generate(&path).expect("load");
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.public_key_base64(), second.public_key_base64());
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(SigningKey::parse("rsa a_1 AAAA").is_err());
        assert!(SigningKey::parse("ed25519 a_1 !!!").is_err());
        assert!(SigningKey::parse("ed25519 a_1 AAAA").is_err());
    }
}
