//! SCRAM credentials (RFC 5802, RFC 7677): what a SASL SCRAM login is checked against. They are
//! derived from the password whenever Hearth sees it (set, or checked at a PLAIN login) and
//! stored beside the argon2 hash they belong to; the argon2 hash stays the password's only
//! authority (a changed password makes older SCRAM keys stale, see migration 0037).
//!
//! The protocol exchange itself belongs to the edge that speaks SASL (`xmpp::sasl`); this
//! module holds the keys and the arithmetic on them.

use crate::db;
use crate::db::scram::{NewScram, ScramRow};
use crate::error::{Error, Result};
use anyhow::anyhow;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sqlx::PgConnection;
use subtle::ConstantTimeEq;

/// RFC 7677's recommended minimum (and what Prosody and ejabberd use).
pub(crate) const ITERATIONS: u32 = 4096;
const SALT_BYTES: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Sha1,
    Sha256,
}

impl Mechanism {
    pub(crate) const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha1];

    /// The SASL mechanism name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mechanism::Sha1 => "SCRAM-SHA-1",
            Mechanism::Sha256 => "SCRAM-SHA-256",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|mechanism| mechanism.name() == name)
    }

    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail; an empty MAC would
        // only make the login fail.
        match self {
            Mechanism::Sha1 => Hmac::<sha1::Sha1>::new_from_slice(key)
                .map(|mut mac| {
                    mac.update(data);
                    mac.finalize().into_bytes().to_vec()
                })
                .unwrap_or_default(),
            Mechanism::Sha256 => Hmac::<sha2::Sha256>::new_from_slice(key)
                .map(|mut mac| {
                    mac.update(data);
                    mac.finalize().into_bytes().to_vec()
                })
                .unwrap_or_default(),
        }
    }

    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Mechanism::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Mechanism::Sha256 => sha2::Sha256::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha1 => {
                pbkdf2::pbkdf2_hmac_array::<sha1::Sha1, 20>(password.as_bytes(), salt, iterations).to_vec()
            }
            Mechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(password.as_bytes(), salt, iterations).to_vec()
            }
        }
    }

    /// StoredKey and ServerKey for a password (RFC 5802 §3).
    pub(crate) fn derive(self, password: &str, salt: Vec<u8>, iterations: u32) -> ScramRow {
        let salted = self.salted_password(password, &salt, iterations);
        let client_key = self.hmac(&salted, b"Client Key");
        ScramRow {
            stored_key: self.hash(&client_key),
            server_key: self.hmac(&salted, b"Server Key"),
            salt,
            iterations: i32::try_from(iterations).unwrap_or(i32::MAX),
        }
    }

    /// Whether `proof` proves knowledge of the password behind `credentials` for this
    /// exchange's `auth_message` (constant time).
    pub(crate) fn proof_matches(self, credentials: &ScramRow, auth_message: &[u8], proof: &[u8]) -> bool {
        let signature = self.hmac(&credentials.stored_key, auth_message);
        if proof.len() != signature.len() {
            return false;
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        bool::from(self.hash(&client_key).ct_eq(&credentials.stored_key))
    }

    /// What the server proves back (`v=`), so the client knows it talked to the holder of the keys.
    pub(crate) fn server_signature(self, credentials: &ScramRow, auth_message: &[u8]) -> Vec<u8> {
        self.hmac(&credentials.server_key, auth_message)
    }
}

/// Derives and stores the user's SCRAM keys for `password`, whose argon2 hash is
/// `password_hash`, in the caller's transaction. PBKDF2 is deliberately slow, so it runs on
/// the blocking pool.
pub(crate) async fn remember(tx: &mut PgConnection, user_id: &str, password: &str, password_hash: &str) -> Result<()> {
    let password = password.to_owned();
    let derived = tokio::task::spawn_blocking(move || {
        Mechanism::ALL.map(|mechanism| {
            let mut salt = vec![0u8; SALT_BYTES];
            rand::rngs::OsRng.fill_bytes(&mut salt);
            (mechanism, mechanism.derive(&password, salt, ITERATIONS))
        })
    })
    .await
    .map_err(|error| Error::Internal(anyhow!("deriving SCRAM keys: {error}")))?;
    for (mechanism, row) in &derived {
        let new = NewScram { user_id, mechanism: mechanism.name(), password_hash, row };
        db::scram::put(&mut *tx, new).await?;
    }
    Ok(())
}

/// After a password was checked some other way (a PLAIN login): keys for an account that has
/// none yet, or only stale ones.
pub(crate) async fn remember_checked(pool: &crate::store::Store, user_id: &str, password: &str) -> Result<()> {
    if credentials(pool, user_id, Mechanism::Sha256).await?.is_some() {
        return Ok(());
    }
    let Some(hash) = db::users::get(pool, user_id).await?.and_then(|account| account.password_hash) else {
        return Ok(());
    };
    let mut tx = pool.begin().await?;
    remember(&mut tx, user_id, password, &hash).await?;
    tx.commit().await?;
    Ok(())
}

/// The user's current keys for `mechanism`, if any (see migration 0037 for when they are stale).
pub(crate) async fn credentials(
    pool: &crate::store::Store,
    user_id: &str,
    mechanism: Mechanism,
) -> Result<Option<ScramRow>> {
    Ok(db::scram::current(pool, user_id, mechanism.name()).await?)
}

/// Keys for a user who has none (or does not exist), so that a refusal takes the same steps
/// as a real attempt and does not tell which names exist. The salt is stable per name.
pub(crate) fn decoy(mechanism: Mechanism, user_id: &str) -> ScramRow {
    let salt = mechanism.hash(format!("hearth decoy salt {user_id}").as_bytes())[..SALT_BYTES].to_vec();
    let mut random = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut random);
    ScramRow {
        salt,
        iterations: i32::try_from(ITERATIONS).unwrap_or(i32::MAX),
        stored_key: mechanism.hash(&random),
        server_key: mechanism.hash(&random),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3's example exchange (user "user", password "pencil").
    #[test]
    fn rfc7677_example_verifies() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credentials = Mechanism::Sha256.derive("pencil", salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = b64.decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").unwrap();
        assert!(Mechanism::Sha256.proof_matches(&credentials, auth_message.as_bytes(), &proof));
        let signature = Mechanism::Sha256.server_signature(&credentials, auth_message.as_bytes());
        assert_eq!(b64.encode(signature), "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        let mut wrong = proof.clone();
        wrong[0] ^= 1;
        assert!(!Mechanism::Sha256.proof_matches(&credentials, auth_message.as_bytes(), &wrong));
    }
}
