//! Logging in and out, and turning an access token back into a session.

use crate::db;
use crate::db::admin_users::RateLimitOverride;
use crate::db::devices::SeenFrom;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::Streams;
use crate::time::now_ms;
use crate::users::{ClientInfo, Session, devices, localpart, password, token_cache, tokens};
use ruma::{OwnedDeviceId, OwnedUserId, ServerName, UserId};
use sqlx::PgConnection;

/// How stale a device's last-seen record may get before a request refreshes it. Writing on
/// every request would turn each read into a write.
const LAST_SEEN_GRANULARITY_MS: i64 = 60_000;
/// Device ids come from clients; keep them to a sane size.
const MAX_DEVICE_ID_LENGTH: usize = 255;

#[derive(Clone, Debug)]
pub struct NewSession {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub access_token: String,
}

/// Opens a session for `user_id` inside the caller's transaction: creates (or reuses) the
/// device, revokes any token it had, and issues a new token.
pub(crate) async fn open(
    tx: &mut PgConnection,
    user_id: &UserId,
    device_id: Option<&str>,
    display_name: Option<&str>,
    client: &ClientInfo,
) -> Result<NewSession> {
    devices::check_display_name(display_name)?;
    let device_id = match device_id {
        Some(id) if id.is_empty() || id.len() > MAX_DEVICE_ID_LENGTH => {
            return Err(Error::invalid_param(format!("device_id must be 1 to {MAX_DEVICE_ID_LENGTH} bytes")));
        }
        Some(id) => id.to_owned(),
        None => tokens::new_device_id(),
    };
    let now = now_ms();
    let seen = SeenFrom { ip: client.ip.as_deref(), user_agent: client.user_agent.as_deref(), now_ms: now };
    db::devices::upsert(&mut *tx, user_id.as_str(), &device_id, display_name, &seen).await?;
    db::devices::delete_tokens_of_device(&mut *tx, user_id.as_str(), &device_id).await?;
    let access_token = tokens::new_access_token();
    db::devices::insert_token(&mut *tx, &tokens::hash_token(&access_token), user_id.as_str(), &device_id, now).await?;
    Ok(NewSession { user_id: user_id.to_owned(), device_id: device_id.into(), access_token })
}

pub(crate) struct PasswordLogin<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub device_id: Option<&'a str>,
    pub initial_device_display_name: Option<&'a str>,
}

pub(crate) async fn login_with_password(
    pool: &Store,
    server_name: &ServerName,
    login: PasswordLogin<'_>,
    client: &ClientInfo,
) -> Result<NewSession> {
    let user_id = check_password(pool, server_name, login.user, login.password).await?;
    let mut tx = pool.begin().await?;
    let session = open(&mut tx, &user_id, login.device_id, login.initial_device_display_name, client).await?;
    tx.commit().await?;
    // The device's previous token, if it had one, is revoked.
    token_cache::forget_user(pool, user_id.as_str());
    Ok(session)
}

/// Whose password this is: the account `user` names, if `password` is its password and the
/// account may log in. Opens no session (the XMPP edge binds its own devices).
pub(crate) async fn check_password(
    pool: &Store,
    server_name: &ServerName,
    user: &str,
    password: &str,
) -> Result<OwnedUserId> {
    let invalid = || Error::forbidden("Invalid username or password");
    let user_id = localpart::login_user_id(user, server_name).ok_or_else(invalid)?;
    let account = db::users::get(pool, user_id.as_str()).await?;
    // Every refusal spends the effort of a real verification (against a decoy where there is
    // no hash to check), so timing does not reveal which names exist, nor which are
    // deactivated or have no password.
    let hash = account.as_ref().and_then(|account| account.password_hash.as_deref());
    let has_hash = hash.is_some();
    let verified = password::verify(hash.unwrap_or(DUMMY_HASH), password).await?;
    let Some(account) = account else { return Err(invalid()) };
    if account.deactivated {
        return Err(Error::user_deactivated());
    }
    if !has_hash || !verified {
        return Err(invalid());
    }
    if account.locked {
        return Err(Error::user_locked());
    }
    Ok(user_id)
}

/// argon2id of a random password nobody knows, with the parameters new hashes use.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Zq3R8jCqHhX6k6V9y3rC6cQ2dXh0Lw0m1qj3yXz5o2E";

/// Resolves an access token to its session, refreshing the device's last sighting now and
/// then.
pub(crate) async fn authenticate(pool: &Store, access_token: &str, client: &ClientInfo) -> Result<Session> {
    let token = tokens::hash_token(access_token);
    let cache = token_cache::of(pool);
    let owner = match cache.get(&token) {
        Some(owner) => owner,
        None => {
            let ticket = cache.ticket();
            let owner = db::devices::token_owner(pool, &token).await?;
            let Some(owner) = owner else { return Err(Error::unknown_token("Unknown access token")) };
            cache.fill(token, owner.clone(), ticket);
            owner
        }
    };
    if owner.deactivated {
        return Err(Error::unknown_token("This account has been deactivated"));
    }
    if owner.locked {
        return Err(Error::user_locked());
    }
    let now = now_ms();
    if owner.valid_until_ms.is_some_and(|until| now >= until) {
        return Err(Error::unknown_token("Access token has expired"));
    }
    let stale = owner.last_seen_ts.is_none_or(|seen| now - seen > LAST_SEEN_GRANULARITY_MS);
    if stale || owner.last_seen_ip.as_deref() != client.ip.as_deref() {
        let seen = SeenFrom { ip: client.ip.as_deref(), user_agent: client.user_agent.as_deref(), now_ms: now };
        // Bookkeeping, not the request: a database that only reads (a replica being promoted,
        // an operator's read-only switch) must still serve reads, so a sighting that cannot be
        // written is logged and tried again at the next request.
        match db::devices::record_sighting(pool, &owner.user_id, &owner.device_id, &seen).await {
            Ok(()) => cache.saw(&token, now, client.ip.as_deref()),
            Err(error) => {
                // Through `Error`, so that a dead connection is noted for the pool as anywhere else.
                let error = Error::from(error);
                tracing::warn!(%error, "could not record the device's last sighting");
            }
        }
    }
    let user_id =
        UserId::parse(owner.user_id).map_err(|e| Error::internal(format!("stored user id is invalid: {e}")))?;
    let message_limit = match (owner.override_messages_per_second, owner.override_burst_count) {
        (Some(messages_per_second), Some(burst_count)) => Some(RateLimitOverride { messages_per_second, burst_count }),
        _ => None,
    };
    Ok(Session {
        user_id,
        device_id: owner.device_id.into(),
        is_admin: owner.is_admin,
        is_guest: owner.is_guest,
        shadow_banned: owner.shadow_banned,
        message_limit,
    })
}

/// Ends this session: the device and its token are deleted.
pub(crate) async fn logout(pool: &Store, streams: &Streams, session: &Session) -> Result<()> {
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let deleted = db::devices::delete(&mut *tx, session.user_id.as_str(), &[session.device_id.to_string()]).await?;
    let mut audience = Vec::new();
    if !deleted.is_empty() {
        audience = devices::record_deletion(&mut tx, &mut reservation, &session.user_id, &deleted).await?;
    }
    tx.commit().await?;
    token_cache::forget_user(pool, session.user_id.as_str());
    reservation.committed_for(audience).await?;
    Ok(())
}

/// Ends every session of the user.
pub(crate) async fn logout_all(pool: &Store, streams: &Streams, user_id: &UserId) -> Result<()> {
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let deleted = db::devices::delete_all_except(&mut *tx, user_id.as_str(), None).await?;
    let mut audience = Vec::new();
    if !deleted.is_empty() {
        audience = devices::record_deletion(&mut tx, &mut reservation, user_id, &deleted).await?;
    }
    tx.commit().await?;
    token_cache::forget_user(pool, user_id.as_str());
    reservation.committed_for(audience).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::DUMMY_HASH;
    use argon2::password_hash::PasswordHash;

    /// The unknown-user path must cost a real argon2 verification; a hash that fails to
    /// parse would return at once and reveal which user names exist.
    #[test]
    fn the_timing_decoy_is_a_parseable_argon2id_hash() {
        let parsed = PasswordHash::new(DUMMY_HASH).expect("decoy hash parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }
}
