//! Accounts as an admin manages them: listing, looking up, creating and changing them, and the
//! flags only admins set (admin, shadow ban, lock, user type, rate-limit overrides).

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::store::Store;
use crate::users::actor::Actor;
use crate::users::{accounts, devices, localpart, password, profile, token_cache};
use ruma::{OwnedMxcUri, UserId};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub(crate) use crate::db::admin_users::{AccountFilter, AccountOrder, AccountSummary, RateLimitOverride};

/// The user types Synapse knows besides "none".
const USER_TYPES: [&str; 2] = ["bot", "support"];

/// A page of a listing, with how many match in all.
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    /// Where the next page starts, if there is one.
    pub next: Option<i64>,
}

/// Where a listing starts and how long a page is, checked as Synapse does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Paging {
    pub from: i64,
    pub limit: i64,
}

impl Paging {
    pub(crate) fn new(from: Option<i64>, limit: Option<i64>, default_limit: i64) -> Result<Paging> {
        let from = from.unwrap_or(0);
        let limit = limit.unwrap_or(default_limit);
        if from < 0 {
            return Err(Error::invalid_param("Query parameter from must be a string representing a positive integer."));
        }
        if limit < 0 {
            return Err(Error::invalid_param(
                "Query parameter limit must be a string representing a positive integer.",
            ));
        }
        Ok(Paging { from, limit })
    }

    /// The page's `next` for `returned` items out of `total`.
    pub(crate) fn next(&self, returned: usize, total: i64) -> Option<i64> {
        let end = self.from.saturating_add(i64::try_from(returned).unwrap_or(i64::MAX));
        (end < total && returned > 0).then_some(end)
    }
}

/// `GET /v2/users`.
pub(crate) async fn list(
    pool: &Store,
    filter: &AccountFilter<'_>,
    order: AccountOrder,
    descending: bool,
    paging: Paging,
) -> Result<Page<AccountSummary>> {
    let items = db::admin_users::list(pool, filter, order, descending, paging.from, paging.limit).await?;
    let total = db::admin_users::count(pool, filter).await?;
    let next = paging.next(items.len(), total);
    Ok(Page { items, total, next })
}

/// `GET /v2/users/{userId}`: M_NOT_FOUND for an account that does not exist.
pub(crate) async fn get(pool: &Store, user_id: &UserId) -> Result<AccountSummary> {
    db::admin_users::get(pool, user_id.as_str()).await?.ok_or_else(|| Error::not_found("User not found"))
}

/// `GET /v1/users/{userId}/sent_invite_count` and `/cumulative_joined_room_count`: the
/// invitations the user sent and the rooms they joined since `from_ts` (ms).
pub(crate) struct MembershipActivity {
    pub invites_sent: i64,
    pub rooms_joined: i64,
}

pub(crate) async fn membership_activity_since(
    pool: &Store,
    user_id: &UserId,
    from_ts: i64,
) -> Result<MembershipActivity> {
    let (invites_sent, rooms_joined) =
        db::admin_users::membership_activity_since(pool, user_id.as_str(), from_ts).await?;
    Ok(MembershipActivity { invites_sent, rooms_joined })
}

/// What `PUT /v2/users/{userId}` may set; absent fields are left as they are.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct UserChanges {
    pub password: Option<String>,
    /// Whether a new password ends the user's sessions (default: yes).
    pub logout_devices: Option<bool>,
    /// `""` removes the display name.
    pub displayname: Option<String>,
    /// `""` removes the avatar.
    pub avatar_url: Option<String>,
    pub admin: Option<bool>,
    pub deactivated: Option<bool>,
    pub locked: Option<bool>,
    /// Absent: unchanged; `null`: cleared.
    #[serde(default, deserialize_with = "present")]
    pub user_type: Option<Option<String>>,
    /// Hearth keeps no third-party ids or SSO mappings: only empty lists are accepted (tools
    /// send back what they read).
    #[serde(default)]
    pub threepids: Vec<Value>,
    #[serde(default)]
    pub external_ids: Vec<Value>,
}

/// A field that may be given as `null` (which means something) or left out.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

impl UserChanges {
    /// Everything that can be refused, refused before anything is written.
    async fn check(&self) -> Result<()> {
        if !self.threepids.is_empty() || !self.external_ids.is_empty() {
            return Err(Error::invalid_param("This server keeps no third-party ids or external ids"));
        }
        if let Some(password) = &self.password {
            password::check_acceptable(password)?;
        }
        if let Some(Some(user_type)) = &self.user_type
            && !USER_TYPES.contains(&user_type.as_str())
        {
            return Err(Error::invalid_param(format!("Invalid user type {user_type:?}")));
        }
        if let Some(url) = self.avatar_url.as_deref().filter(|url| !url.is_empty())
            && !OwnedMxcUri::from(url).is_valid()
        {
            return Err(Error::invalid_param("avatar_url must be an mxc:// URI"));
        }
        Ok(())
    }
}

/// `PUT /v2/users/{userId}`: creates the account if it does not exist (`true`), else changes
/// it; either way the whole change commits or none of it does. An admin asking may not take
/// their own admin flag away.
pub(crate) async fn create_or_modify(
    ctx: RoomCtx<'_>,
    user_id: &UserId,
    changes: UserChanges,
    actor: Actor<'_>,
) -> Result<(bool, AccountSummary)> {
    let RoomCtx { pool, streams, server_name, .. } = ctx;
    changes.check().await?;
    let existing = db::users::get(pool, user_id.as_str()).await?;
    if actor.user_id() == Some(user_id) && changes.admin == Some(false) {
        return Err(Error::invalid_param("You may not demote yourself."));
    }
    let hash = match &changes.password {
        Some(password) => Some(password::hash(password).await?),
        None => None,
    };
    let created = existing.is_none();
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let mut audience = Vec::new();
    match &existing {
        None => {
            // The same name rules as registration (a new account's id must be valid today).
            localpart::new_user_id(user_id.localpart(), server_name)?;
            let admin = changes.admin.unwrap_or(false);
            accounts::insert_account(&mut tx, user_id, hash.as_deref(), admin, false).await?;
        }
        Some(account) => {
            if account.deactivated && changes.deactivated == Some(false) {
                if hash.is_none() {
                    return Err(Error::invalid_param("Must provide a password to re-activate an account."));
                }
                db::admin_users::reactivate(&mut *tx, user_id.as_str()).await?;
            }
            if let Some(hash) = &hash {
                db::users::set_password_hash(&mut *tx, user_id.as_str(), Some(hash)).await?;
                if changes.logout_devices.unwrap_or(true) {
                    let deleted = db::devices::delete_all_except(&mut *tx, user_id.as_str(), None).await?;
                    if !deleted.is_empty() {
                        audience = devices::record_deletion(&mut tx, &mut reservation, user_id, &deleted).await?;
                    }
                }
            }
            if let Some(admin) = changes.admin {
                db::users::set_admin(&mut *tx, user_id.as_str(), admin).await?;
            }
        }
    }
    let deactivating =
        changes.deactivated == Some(true) && existing.as_ref().is_none_or(|account| !account.deactivated);
    if !deactivating {
        if let Some(name) = changes.displayname {
            profile::write_field(&mut tx, user_id, "displayname", Some(Value::String(name))).await?;
        }
        if let Some(url) = changes.avatar_url {
            profile::write_field(&mut tx, user_id, "avatar_url", Some(Value::String(url))).await?;
        }
    }
    if let Some(locked) = changes.locked {
        db::admin_users::set_locked(&mut *tx, user_id.as_str(), locked).await?;
    }
    if let Some(user_type) = &changes.user_type {
        db::admin_users::set_user_type(&mut *tx, user_id.as_str(), user_type.as_deref()).await?;
    }
    if let (Some(password), Some(hash), false) = (&changes.password, &hash, deactivating) {
        crate::users::scram::remember(&mut tx, user_id.as_str(), password, hash).await?;
    }
    if deactivating {
        accounts::deactivate_in(&mut tx, user_id, false).await?;
    }
    tx.commit().await?;
    // Its sessions may have ended, its flags changed.
    token_cache::forget_user(pool, user_id.as_str());
    reservation.committed_for(audience).await?;
    if deactivating {
        // As every deactivation: the account leaves its rooms (events, so after the commit).
        crate::rooms::membership::leave_all(ctx, user_id).await?;
    }
    Ok((created, get(pool, user_id).await?))
}

/// `GET /v1/users/{userId}/admin`.
pub(crate) async fn is_admin(pool: &Store, user_id: &UserId) -> Result<bool> {
    Ok(get(pool, user_id).await?.is_admin)
}

/// `PUT /v1/users/{userId}/admin`. An admin cannot demote themselves (someone must remain).
pub(crate) async fn set_admin(pool: &Store, actor: Actor<'_>, user_id: &UserId, admin: bool) -> Result<()> {
    if actor.user_id() == Some(user_id) && !admin {
        return Err(Error::invalid_param("You may not demote yourself."));
    }
    if !db::users::set_admin(pool, user_id.as_str(), admin).await? {
        return Err(Error::not_found("User not found"));
    }
    token_cache::forget_user(pool, user_id.as_str());
    Ok(())
}

/// `POST`/`DELETE /v1/users/{userId}/shadow_ban`.
pub(crate) async fn set_shadow_banned(pool: &Store, user_id: &UserId, banned: bool) -> Result<()> {
    if !db::admin_users::set_shadow_banned(pool, user_id.as_str(), banned).await? {
        return Err(Error::not_found("User not found"));
    }
    token_cache::forget_user(pool, user_id.as_str());
    Ok(())
}

/// `GET /v1/users/{userId}/override_ratelimit`: `None` when the user has no override.
pub(crate) async fn ratelimit_override(pool: &Store, user_id: &UserId) -> Result<Option<RateLimitOverride>> {
    get(pool, user_id).await?;
    Ok(db::admin_users::ratelimit_override(pool, user_id.as_str()).await?)
}

/// `POST /v1/users/{userId}/override_ratelimit`: absent values are 0 (no limit), as Synapse.
pub(crate) async fn set_ratelimit_override(
    pool: &Store,
    user_id: &UserId,
    messages_per_second: Option<i64>,
    burst_count: Option<i64>,
) -> Result<RateLimitOverride> {
    let value = |name: &str, given: Option<i64>| {
        i32::try_from(given.unwrap_or(0))
            .ok()
            .filter(|value| *value >= 0)
            .ok_or_else(|| Error::invalid_param(format!("{name} must be a positive integer")))
    };
    let limit = RateLimitOverride {
        messages_per_second: value("messages_per_second", messages_per_second)?,
        burst_count: value("burst_count", burst_count)?,
    };
    get(pool, user_id).await?;
    db::admin_users::set_ratelimit_override(pool, user_id.as_str(), limit).await?;
    token_cache::forget_user(pool, user_id.as_str());
    Ok(limit)
}

/// `DELETE /v1/users/{userId}/override_ratelimit`.
pub(crate) async fn delete_ratelimit_override(pool: &Store, user_id: &UserId) -> Result<()> {
    get(pool, user_id).await?;
    db::admin_users::delete_ratelimit_override(pool, user_id.as_str()).await?;
    token_cache::forget_user(pool, user_id.as_str());
    Ok(())
}
