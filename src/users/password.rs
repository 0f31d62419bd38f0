//! Password hashing with argon2id. Hashing is deliberately slow, so it runs on the blocking
//! pool and never stalls the async workers. It is also deliberately memory-hard (19 MiB per
//! hash with the default parameters), so only as many hashes run at once as there are cores:
//! a burst of logins must queue, not grow the process by a blocking thread and 19 MiB each
//! (memory the allocator then keeps).

use crate::error::{Error, Result};
use anyhow::anyhow;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use std::sync::LazyLock;
use tokio::sync::Semaphore;

/// Synapse's limit; longer inputs are refused before any hashing work is done.
pub(crate) const MAX_PASSWORD_LENGTH: usize = 512;

pub(crate) fn check_acceptable(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(Error::new(ruma::api::error::ErrorKind::WeakPassword, "The password must not be empty"));
    }
    if password.len() > MAX_PASSWORD_LENGTH {
        return Err(Error::invalid_param(format!("The password is longer than {MAX_PASSWORD_LENGTH} bytes")));
    }
    Ok(())
}

/// Runs one argon2 computation on the blocking pool, once a slot is free.
async fn run_limited<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    static SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
        Semaphore::new(std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(2))
    });
    let _slot = SLOTS.acquire().await.map_err(|error| Error::Internal(anyhow!("password hashing slots: {error}")))?;
    tokio::task::spawn_blocking(work).await.map_err(|error| Error::Internal(anyhow!("password hashing task: {error}")))
}

pub(crate) async fn hash(password: &str) -> Result<String> {
    let password = password.to_owned();
    run_limited(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| Error::Internal(anyhow!("hashing a password: {error}")))
    })
    .await?
}

/// Constant-time verification (argon2's comparison); a malformed stored hash never matches.
pub(crate) async fn verify(stored_hash: &str, password: &str) -> Result<bool> {
    if password.len() > MAX_PASSWORD_LENGTH {
        return Ok(false);
    }
    let stored_hash = stored_hash.to_owned();
    let password = password.to_owned();
    run_limited(move || {
        let Ok(parsed) = PasswordHash::new(&stored_hash) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
    })
    .await
}
