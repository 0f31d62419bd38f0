//! Creating, changing and closing accounts.

use crate::config::RegistrationConfig;
use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::Streams;
use crate::time::now_ms;
use crate::users::sessions::{self, NewSession};
use crate::users::{ClientInfo, Session, devices, localpart, password, token_cache, uia};
use rand::Rng;
use ruma::api::client::uiaa::{AuthData, AuthType};
use ruma::{OwnedUserId, ServerName, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::PgConnection;

/// Is this localpart free and acceptable for a new account?
pub async fn check_username_available(pool: &Store, server_name: &ServerName, username: &str) -> Result<()> {
    let user_id = localpart::new_user_id(username, server_name)?;
    if db::users::exists(pool, user_id.as_str()).await? {
        return Err(Error::user_in_use());
    }
    Ok(())
}

pub struct Registration<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub initial_device_display_name: Option<&'a str>,
    pub inhibit_login: bool,
    pub guest: bool,
    pub auth: Option<&'a AuthData>,
}

pub struct Registered {
    pub user_id: OwnedUserId,
    /// Absent when the client asked for `inhibit_login`.
    pub session: Option<NewSession>,
}

/// `POST /register`: open registration (with a dummy or registration-token stage) or guest
/// registration, as configured.
pub async fn register(
    pool: &Store,
    server_name: &ServerName,
    config: &RegistrationConfig,
    request: Registration<'_>,
    client: &ClientInfo,
) -> Result<Registered> {
    if request.guest {
        if !config.allow_guests {
            return Err(Error::guest_access_forbidden("Guest access is disabled on this server"));
        }
        return register_guest(pool, server_name, request, client).await;
    }
    if !config.enabled {
        return Err(Error::forbidden("Registration is disabled on this server"));
    }
    // As Synapse: someone who asks for "Alice" gets @alice rather than a refusal (logins match
    // localparts case-insensitively, so "Alice" still logs in).
    let username = request.username.map(str::to_lowercase);
    let request = Registration { username: username.as_deref(), ..request };
    // A client that lost the answer to its final request retries it: the account its session
    // created is the answer again (as Synapse does), logged in anew.
    if let Some((user_id, remembered)) = uia::recorded_outcome(pool, "register", request.auth).await? {
        return registered_again(pool, server_name, &user_id, &request, remembered, client).await;
    }
    // Refuse a bad or taken name before any authentication stage, so clients can say so at
    // once (Synapse does the same).
    if let Some(username) = request.username {
        check_username_available(pool, server_name, username).await?;
    }
    if let Some(password) = request.password {
        password::check_acceptable(password)?;
    }
    let remember = remembered_parameters(&request).await?;
    let stage = if config.token_required { AuthType::RegistrationToken } else { AuthType::Dummy };
    // Registration binds no subject: it acts on no existing account, and its parameters may
    // come with the first request only (they are remembered instead, see `remember`).
    let requirement = uia::Requirement {
        operation: "register",
        subject: Value::Null,
        user: None,
        flows: vec![vec![stage]],
        remember,
    };
    let completed = uia::authenticate_keeping_session(pool, server_name, &requirement, request.auth).await?;

    // What this request says wins; what earlier requests of the session said fills the gaps.
    let earlier: RememberedRegistration =
        completed.remembered.and_then(|params| serde_json::from_value(params).ok()).unwrap_or_default();
    let user_id = match request.username.map(str::to_owned).or(earlier.username) {
        Some(username) => localpart::new_user_id(&username, server_name)?,
        None => generated_user_id(pool, server_name).await?,
    };
    let password_hash = match request.password {
        Some(password) => password::hash(password).await?,
        None => earlier.password_hash.ok_or_else(|| Error::missing_param("A password is required"))?,
    };
    let device_id = request.device_id.map(str::to_owned).or(earlier.device_id);
    let display_name = request.initial_device_display_name.map(str::to_owned).or(earlier.initial_device_display_name);
    let inhibit_login = request.inhibit_login || earlier.inhibit_login;

    let mut tx = pool.begin().await?;
    insert_account(&mut tx, &user_id, Some(&password_hash), false, false).await?;
    if let Some(password) = request.password {
        crate::users::scram::remember(&mut tx, user_id.as_str(), password, &password_hash).await?;
    }
    if !uia::record_outcome(&mut tx, &completed.session_id, user_id.as_str()).await? {
        return Err(Error::forbidden("This authentication session has already registered an account"));
    }
    if let Some(token) = &completed.registration_token
        && !db::registration::consume_token(&mut *tx, token, now_ms()).await?
    {
        return Err(Error::forbidden("The registration token is no longer valid"));
    }
    let session = if inhibit_login {
        None
    } else {
        Some(sessions::open(&mut tx, &user_id, device_id.as_deref(), display_name.as_deref(), client).await?)
    };
    tx.commit().await?;
    tracing::info!(%user_id, "registered a new account");
    Ok(Registered { user_id, session })
}

/// The answer to a retried registration: the account the session created, with a new login
/// (unless the client asks for none). The retry may not name another account.
async fn registered_again(
    pool: &Store,
    server_name: &ServerName,
    user_id: &str,
    request: &Registration<'_>,
    remembered: Option<Value>,
    client: &ClientInfo,
) -> Result<Registered> {
    let user_id = UserId::parse(user_id).map_err(|e| Error::internal(format!("stored user id: {e}")))?;
    if let Some(username) = request.username
        && localpart::new_user_id(username, server_name)? != user_id
    {
        return Err(Error::forbidden("This authentication session has registered another account"));
    }
    let earlier: RememberedRegistration =
        remembered.and_then(|params| serde_json::from_value(params).ok()).unwrap_or_default();
    if request.inhibit_login || earlier.inhibit_login {
        return Ok(Registered { user_id, session: None });
    }
    let device_id = request.device_id.map(str::to_owned).or(earlier.device_id);
    let display_name = request.initial_device_display_name.map(str::to_owned).or(earlier.initial_device_display_name);
    let mut tx = pool.begin().await?;
    let session = sessions::open(&mut tx, &user_id, device_id.as_deref(), display_name.as_deref(), client).await?;
    tx.commit().await?;
    // The device's previous token, if it had one, is revoked.
    token_cache::forget_user(pool, user_id.as_str());
    Ok(Registered { user_id, session: Some(session) })
}

/// Registration parameters kept in the UIA session between requests. The password is kept
/// only as its argon2 hash.
#[derive(Default, Serialize, Deserialize)]
struct RememberedRegistration {
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    initial_device_display_name: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    inhibit_login: bool,
}

async fn remembered_parameters(request: &Registration<'_>) -> Result<Option<Value>> {
    // Hashing is costly, so the password is kept only from a request that opens the session
    // (no `auth` yet); later requests either carry it again or rely on the kept hash.
    let password_hash = match (request.password, request.auth) {
        (Some(password), None) => Some(password::hash(password).await?),
        _ => None,
    };
    let remembered = RememberedRegistration {
        username: request.username.map(str::to_owned),
        password_hash,
        device_id: request.device_id.map(str::to_owned),
        initial_device_display_name: request.initial_device_display_name.map(str::to_owned),
        inhibit_login: request.inhibit_login,
    };
    let value = serde_json::to_value(&remembered).map_err(|e| Error::internal(e.to_string()))?;
    Ok(value.as_object().is_some_and(|object| !object.is_empty()).then_some(value))
}

async fn register_guest(
    pool: &Store,
    server_name: &ServerName,
    request: Registration<'_>,
    client: &ClientInfo,
) -> Result<Registered> {
    let user_id = generated_user_id(pool, server_name).await?;
    let mut tx = pool.begin().await?;
    let inserted = db::users::insert(
        &mut *tx,
        db::users::NewAccount {
            user_id: user_id.as_str(),
            password_hash: None,
            is_admin: false,
            is_guest: true,
            profile: Map::new(),
            now_ms: now_ms(),
        },
    )
    .await?;
    if !inserted {
        return Err(Error::user_in_use());
    }
    let session = sessions::open(&mut tx, &user_id, None, request.initial_device_display_name, client).await?;
    tx.commit().await?;
    Ok(Registered { user_id, session: Some(session) })
}

/// A free all-digit localpart (the shape reserved for generated names).
async fn generated_user_id(pool: &Store, server_name: &ServerName) -> Result<OwnedUserId> {
    for _ in 0..10 {
        let number: u64 = rand::thread_rng().gen_range(1_000_000_000..10_000_000_000);
        let user_id = UserId::parse(format!("@{number}:{server_name}"))
            .map_err(|e| Error::internal(format!("generated user id is invalid: {e}")))?;
        if !db::users::exists(pool, user_id.as_str()).await? {
            return Ok(user_id);
        }
    }
    Err(Error::internal("could not find a free generated user id"))
}

/// Inserts an account with the conventional initial profile (display name = localpart).
pub async fn insert_account(
    tx: &mut PgConnection,
    user_id: &UserId,
    password_hash: Option<&str>,
    is_admin: bool,
    is_guest: bool,
) -> Result<()> {
    let mut profile = Map::new();
    profile.insert("displayname".to_owned(), Value::String(user_id.localpart().to_owned()));
    let inserted = db::users::insert(
        &mut *tx,
        db::users::NewAccount {
            user_id: user_id.as_str(),
            password_hash,
            is_admin,
            is_guest,
            profile,
            now_ms: now_ms(),
        },
    )
    .await?;
    if !inserted {
        return Err(Error::user_in_use());
    }
    Ok(())
}

/// Creates an account directly (operators: CLI, shared-secret registration).
pub async fn create_account(
    pool: &Store,
    server_name: &ServerName,
    username: &str,
    password: &str,
    is_admin: bool,
) -> Result<OwnedUserId> {
    let user_id = localpart::new_user_id(username, server_name)?;
    password::check_acceptable(password)?;
    let hash = password::hash(password).await?;
    let mut tx = pool.begin().await?;
    insert_account(&mut tx, &user_id, Some(&hash), is_admin, false).await?;
    crate::users::scram::remember(&mut tx, user_id.as_str(), password, &hash).await?;
    tx.commit().await?;
    Ok(user_id)
}

/// `POST /account/password`: re-authenticate with the current password, then set the new one;
/// other sessions end unless the client asks to keep them.
pub async fn change_password(
    pool: &Store,
    streams: &Streams,
    server_name: &ServerName,
    session: &Session,
    new_password: &str,
    logout_devices: bool,
    auth: Option<&AuthData>,
) -> Result<()> {
    password::check_acceptable(new_password)?;
    // The new password is not kept to compare (never a secret in the session); whether other
    // devices are logged out is.
    let requirement = uia::Requirement {
        operation: "change_password",
        subject: serde_json::json!({ "logout_devices": logout_devices }),
        user: Some(&session.user_id),
        flows: vec![vec![AuthType::Password]],
        remember: None,
    };
    uia::authenticate(pool, server_name, &requirement, auth).await?;
    let hash = password::hash(new_password).await?;
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    db::users::set_password_hash(&mut *tx, session.user_id.as_str(), Some(&hash)).await?;
    crate::users::scram::remember(&mut tx, session.user_id.as_str(), new_password, &hash).await?;
    let mut audience = Vec::new();
    if logout_devices {
        let user = session.user_id.as_str();
        let deleted = db::devices::delete_all_except(&mut *tx, user, Some(session.device_id.as_str())).await?;
        if !deleted.is_empty() {
            audience = devices::record_deletion(&mut tx, &mut reservation, &session.user_id, &deleted).await?;
        }
    }
    tx.commit().await?;
    token_cache::forget_user(pool, session.user_id.as_str());
    reservation.committed_for(audience).await?;
    Ok(())
}

/// `POST /account/deactivate`: after re-authentication, the account is closed for good.
pub async fn deactivate(
    pool: &Store,
    server_name: &ServerName,
    session: &Session,
    erase: bool,
    auth: Option<&AuthData>,
) -> Result<()> {
    let requirement = uia::Requirement {
        operation: "deactivate",
        subject: serde_json::json!({ "erase": erase }),
        user: Some(&session.user_id),
        flows: vec![vec![AuthType::Password]],
        remember: None,
    };
    uia::authenticate(pool, server_name, &requirement, auth).await?;
    deactivate_now(pool, &session.user_id, erase).await
}

/// Closes an account without asking (operators). Sessions end, the password, profile and key
/// backups are erased; the user id stays taken forever, as the spec requires. With `erase`,
/// whoever was not in a room when the user sent an event is served it redacted from now on
/// (rooms::visibility).
pub async fn deactivate_now(pool: &Store, user_id: &UserId, erase: bool) -> Result<()> {
    let mut tx = pool.begin().await?;
    deactivate_in(&mut tx, user_id, erase).await?;
    tx.commit().await?;
    token_cache::forget_user(pool, user_id.as_str());
    tracing::info!(%user_id, "deactivated account");
    Ok(())
}

/// [`deactivate_now`] inside the caller's transaction; once it commits, the caller drops the
/// user's tokens from this process's cache (`token_cache::forget_user`).
pub async fn deactivate_in(tx: &mut PgConnection, user_id: &UserId, erase: bool) -> Result<()> {
    if !db::users::deactivate(&mut *tx, user_id.as_str()).await? {
        return Err(Error::not_found(format!("No account {user_id}")));
    }
    if erase {
        db::users::mark_erased(&mut *tx, user_id.as_str(), now_ms()).await?;
    }
    db::devices::delete_all_except(&mut *tx, user_id.as_str(), None).await?;
    // Device keys went with the devices; the identity others trusted goes too.
    db::e2ee_cross_signing::delete_user(tx, user_id.as_str()).await?;
    // Backed-up room keys are only readable by the account, which is gone for good.
    db::key_backup::delete_all_for_user(&mut *tx, user_id.as_str()).await?;
    Ok(())
}

/// Sets a password without asking (operators); every session of the user ends.
pub async fn reset_password(pool: &Store, user_id: &UserId, new_password: &str) -> Result<()> {
    password::check_acceptable(new_password)?;
    let account = db::users::get(pool, user_id.as_str()).await?;
    match account {
        None => return Err(Error::not_found(format!("No account {user_id}"))),
        Some(account) if account.deactivated => return Err(Error::user_deactivated()),
        Some(_) => {}
    }
    let hash = password::hash(new_password).await?;
    let mut tx = pool.begin().await?;
    db::users::set_password_hash(&mut *tx, user_id.as_str(), Some(&hash)).await?;
    crate::users::scram::remember(&mut tx, user_id.as_str(), new_password, &hash).await?;
    db::devices::delete_all_except(&mut *tx, user_id.as_str(), None).await?;
    tx.commit().await?;
    token_cache::forget_user(pool, user_id.as_str());
    Ok(())
}

/// `GET /register/m.login.registration_token/validity`.
pub async fn registration_token_is_valid(pool: &Store, token: &str) -> Result<bool> {
    if token.len() > 64 {
        return Ok(false);
    }
    Ok(db::registration::token_is_valid(pool, token, now_ms()).await?)
}

/// Creates a registration token (operators).
pub async fn create_registration_token(
    pool: &Store,
    token: Option<&str>,
    uses_allowed: Option<i32>,
    expiry_ms: Option<i64>,
) -> Result<String> {
    let token = token.map(str::to_owned).unwrap_or_else(|| crate::users::tokens::random_alphanumeric(16));
    if token.is_empty()
        || token.len() > 64
        || !token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
    {
        return Err(Error::invalid_param("A registration token is 1 to 64 characters of A-Z a-z 0-9 . _ ~ -"));
    }
    if !db::registration::create_token(pool, &token, uses_allowed, expiry_ms, now_ms()).await? {
        return Err(Error::invalid_param("That registration token already exists"));
    }
    Ok(token)
}
