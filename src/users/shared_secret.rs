//! Synapse-compatible shared-secret registration (`/_synapse/admin/v1/register`).
//!
//! Test suites and provisioning tools create accounts this way: fetch a nonce, then post the
//! account with an HMAC-SHA1 (keyed by the shared secret) over
//! `nonce NUL username NUL password NUL ("admin" | "notadmin") [NUL user_type]`.
//! Nonces are single-use and expire after a minute.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::time::now_ms;
use crate::users::sessions::{self, NewSession};
use crate::users::{ClientInfo, accounts, localpart, password, tokens};
use hmac::{Hmac, Mac};
use ruma::{OwnedUserId, ServerName};
use serde_json::Value;
use sha1::Sha1;

const NONCE_LIFETIME_MS: i64 = 60_000;

pub(crate) async fn new_nonce(pool: &Store) -> Result<String> {
    let now = now_ms();
    db::registration::delete_nonces_older_than(pool, now - NONCE_LIFETIME_MS).await?;
    let nonce = tokens::random_alphanumeric(32);
    db::registration::insert_nonce(pool, &nonce, now).await?;
    Ok(nonce)
}

pub(crate) struct SharedSecretRegistration {
    pub nonce: String,
    pub username: String,
    pub password: String,
    pub admin: bool,
    pub user_type: Option<String>,
    pub displayname: Option<String>,
    pub mac: String,
    pub inhibit_login: bool,
}

impl SharedSecretRegistration {
    /// Reads the request body, answering like Synapse for missing or mistyped fields.
    pub(crate) fn from_json(body: &Value) -> Result<Self> {
        let object = body.as_object().ok_or_else(|| Error::bad_json("The body must be a JSON object"))?;
        let string = |name: &str| -> Result<String> {
            match object.get(name) {
                Some(Value::String(value)) => Ok(value.clone()),
                Some(_) => Err(Error::invalid_param(format!("{name} must be a string"))),
                None => Err(Error::missing_param(format!("{name} must be specified"))),
            }
        };
        let optional_string = |name: &str| -> Result<Option<String>> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(value)) => Ok(Some(value.clone())),
                Some(_) => Err(Error::invalid_param(format!("{name} must be a string"))),
            }
        };
        let flag = |name: &str| -> Result<bool> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(value)) => Ok(*value),
                Some(_) => Err(Error::invalid_param(format!("{name} must be a boolean"))),
            }
        };
        Ok(SharedSecretRegistration {
            nonce: string("nonce")?,
            username: string("username")?,
            password: string("password")?,
            admin: flag("admin")?,
            user_type: optional_string("user_type")?,
            displayname: optional_string("displayname")?,
            mac: string("mac")?,
            inhibit_login: flag("inhibit_login")?,
        })
    }
}

pub(crate) struct SharedSecretRegistered {
    pub user_id: OwnedUserId,
    pub session: Option<NewSession>,
}

pub(crate) async fn register(
    pool: &Store,
    server_name: &ServerName,
    shared_secret: Option<&str>,
    request: SharedSecretRegistration,
    client: &ClientInfo,
) -> Result<SharedSecretRegistered> {
    let Some(secret) = shared_secret else {
        return Err(Error::unknown("Shared secret registration is not enabled"));
    };
    // The nonce is consumed before the MAC is checked: a wrong guess burns it.
    if !db::registration::take_nonce(pool, &request.nonce, now_ms() - NONCE_LIFETIME_MS).await? {
        return Err(Error::unknown("unrecognised nonce"));
    }
    if !mac_is_valid(secret, &request) {
        return Err(Error::forbidden("HMAC incorrect"));
    }
    // Synapse lowercases the name after checking the MAC (which covers it as sent), so
    // provisioning scripts that pass "Alice" get @alice rather than an error.
    let user_id = localpart::new_user_id(&request.username.to_lowercase(), server_name)?;
    password::check_acceptable(&request.password)?;
    let hash = password::hash(&request.password).await?;

    let mut tx = pool.begin().await?;
    accounts::insert_account(&mut tx, &user_id, Some(&hash), request.admin, false).await?;
    crate::users::scram::remember(&mut tx, user_id.as_str(), &request.password, &hash).await?;
    if let Some(displayname) = request.displayname.filter(|name| !name.is_empty()) {
        let mut profile = serde_json::Map::new();
        profile.insert("displayname".into(), Value::String(displayname));
        db::users::set_profile(&mut *tx, user_id.as_str(), profile).await?;
    }
    let session =
        if request.inhibit_login { None } else { Some(sessions::open(&mut tx, &user_id, None, None, client).await?) };
    tx.commit().await?;
    tracing::info!(%user_id, admin = request.admin, "registered an account with the shared secret");
    Ok(SharedSecretRegistered { user_id, session })
}

fn mac_is_valid(secret: &str, request: &SharedSecretRegistration) -> bool {
    let Ok(expected) = hex::decode(request.mac.trim()) else { return false };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(request.nonce.as_bytes());
    mac.update(b"\0");
    mac.update(request.username.as_bytes());
    mac.update(b"\0");
    mac.update(request.password.as_bytes());
    mac.update(b"\0");
    mac.update(if request.admin { b"admin" as &[u8] } else { b"notadmin" });
    if let Some(user_type) = &request.user_type {
        mac.update(b"\0");
        mac.update(user_type.as_bytes());
    }
    // verify_slice compares in constant time.
    mac.verify_slice(&expected).is_ok()
}
