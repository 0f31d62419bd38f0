//! Password hashing with argon2id. Hashing is deliberately slow, so it runs on the blocking
//! pool and never stalls the async workers.

use crate::error::{Error, Result};
use anyhow::anyhow;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};

/// Synapse's limit; longer inputs are refused before any hashing work is done.
pub const MAX_PASSWORD_LENGTH: usize = 512;

pub fn check_acceptable(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(Error::new(
            http::StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::WeakPassword,
            "The password must not be empty",
        ));
    }
    if password.len() > MAX_PASSWORD_LENGTH {
        return Err(Error::invalid_param(format!("The password is longer than {MAX_PASSWORD_LENGTH} bytes")));
    }
    Ok(())
}

pub async fn hash(password: &str) -> Result<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| Error::Internal(anyhow!("hashing a password: {error}")))
    })
    .await
    .map_err(|error| Error::Internal(anyhow!("password hashing task: {error}")))?
}

/// Constant-time verification (argon2's comparison); a malformed stored hash never matches.
pub async fn verify(stored_hash: &str, password: &str) -> Result<bool> {
    if password.len() > MAX_PASSWORD_LENGTH {
        return Ok(false);
    }
    let stored_hash = stored_hash.to_owned();
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&stored_hash) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
    })
    .await
    .map_err(|error| Error::Internal(anyhow!("password verification task: {error}")))
}
