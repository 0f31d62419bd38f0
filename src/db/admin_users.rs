//! What the admin API reads and sets about accounts beyond what their owners do: listings,
//! flags (shadow ban, lock, user type) and rate-limit overrides.

use sqlx::{FromRow, PgExecutor};

/// One account as an admin sees it.
#[derive(Clone, Debug, FromRow)]
pub(crate) struct AccountSummary {
    pub user_id: String,
    pub is_guest: bool,
    pub is_admin: bool,
    pub user_type: Option<String>,
    pub deactivated: bool,
    pub erased: bool,
    pub shadow_banned: bool,
    pub locked: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub created_ts: i64,
    pub last_seen_ts: Option<i64>,
}

/// The columns of [`AccountSummary`]; `profile->>` reads a field as text whatever JSON it
/// holds, so an odd stored value never fails a listing.
const SUMMARY: &str = "SELECT u.user_id, u.is_guest, u.is_admin, u.user_type, u.deactivated,
        EXISTS (SELECT 1 FROM erased_users e WHERE e.user_id = u.user_id) AS erased,
        u.shadow_banned, u.locked, u.profile->>'displayname' AS displayname,
        u.profile->>'avatar_url' AS avatar_url, u.created_ts,
        (SELECT max(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id) AS last_seen_ts
     FROM users u";

/// Which accounts a listing holds. `None` filters do not filter.
pub(crate) struct AccountFilter<'a> {
    /// Accounts whose id contains this text.
    pub user_id: Option<&'a str>,
    /// Accounts whose localpart or display name contains this text, in any case.
    pub name: Option<&'a str>,
    pub include_guests: bool,
    /// Only deactivated accounts (`true`), only active ones (`false`), or both (`None`).
    pub deactivated: Option<bool>,
    pub include_locked: bool,
    /// Only admins (`true`) or only non-admins (`false`).
    pub admins: Option<bool>,
}

/// The filter as SQL over `u`, with its parameters as `$1`…`$6` in the order `bind_filter!`
/// binds them.
const FILTER: &str = " WHERE ($1::text IS NULL OR strpos(u.user_id, $1) > 0)
       AND ($2::text IS NULL
            OR strpos(lower(split_part(substr(u.user_id, 2), ':', 1)), lower($2)) > 0
            OR strpos(lower(coalesce(u.profile->>'displayname', '')), lower($2)) > 0)
       AND ($3 OR NOT u.is_guest)
       AND ($4::boolean IS NULL OR u.deactivated = $4)
       AND ($5 OR NOT u.locked)
       AND ($6::boolean IS NULL OR u.is_admin = $6)";

/// Binds an [`AccountFilter`] as `$1`…`$6` of [`FILTER`] (a macro: sqlx's query kinds share
/// `bind` by name only).
macro_rules! bind_filter {
    ($query:expr, $filter:expr) => {
        $query
            .bind($filter.user_id)
            .bind($filter.name)
            .bind($filter.include_guests)
            .bind($filter.deactivated)
            .bind($filter.include_locked)
            .bind($filter.admins)
    };
}

/// A column accounts can be listed by (Synapse's `order_by` values); the SQL is fixed here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AccountOrder {
    Name,
    IsGuest,
    Admin,
    UserType,
    Deactivated,
    ShadowBanned,
    Displayname,
    AvatarUrl,
    CreationTs,
    LastSeenTs,
}

impl AccountOrder {
    fn column(self) -> &'static str {
        match self {
            AccountOrder::Name => "user_id",
            AccountOrder::IsGuest => "is_guest",
            AccountOrder::Admin => "is_admin",
            AccountOrder::UserType => "user_type",
            AccountOrder::Deactivated => "deactivated",
            AccountOrder::ShadowBanned => "shadow_banned",
            AccountOrder::Displayname => "displayname",
            AccountOrder::AvatarUrl => "avatar_url",
            AccountOrder::CreationTs => "created_ts",
            AccountOrder::LastSeenTs => "last_seen_ts",
        }
    }
}

/// A page of accounts, ordered by `order` (then by user id, so pages are stable).
pub(crate) async fn list(
    db: impl PgExecutor<'_>,
    filter: &AccountFilter<'_>,
    order: AccountOrder,
    descending: bool,
    offset: i64,
    limit: i64,
) -> sqlx::Result<Vec<AccountSummary>> {
    let direction = if descending { "DESC" } else { "ASC" };
    // Only fixed text is formatted into the statement: the column comes from `AccountOrder`.
    let sql = format!(
        "SELECT * FROM ({SUMMARY}{FILTER}) AS listed ORDER BY {} {direction}, user_id ASC LIMIT $7 OFFSET $8",
        order.column()
    );
    bind_filter!(sqlx::query_as(sqlx::AssertSqlSafe(sql)), filter).bind(limit).bind(offset).fetch_all(db).await
}

pub(crate) async fn count(db: impl PgExecutor<'_>, filter: &AccountFilter<'_>) -> sqlx::Result<i64> {
    bind_filter!(sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM users u{FILTER}"))), filter)
        .fetch_one(db)
        .await
}

pub(crate) async fn get(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Option<AccountSummary>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SUMMARY} WHERE u.user_id = $1")))
        .bind(user_id)
        .fetch_optional(db)
        .await
}

pub(crate) async fn set_shadow_banned(db: impl PgExecutor<'_>, user_id: &str, banned: bool) -> sqlx::Result<bool> {
    let updated = sqlx::query("UPDATE users SET shadow_banned = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(banned)
        .execute(db)
        .await?;
    Ok(updated.rows_affected() == 1)
}

pub(crate) async fn set_locked(db: impl PgExecutor<'_>, user_id: &str, locked: bool) -> sqlx::Result<bool> {
    let updated =
        sqlx::query("UPDATE users SET locked = $2 WHERE user_id = $1").bind(user_id).bind(locked).execute(db).await?;
    Ok(updated.rows_affected() == 1)
}

pub(crate) async fn set_user_type(
    db: impl PgExecutor<'_>,
    user_id: &str,
    user_type: Option<&str>,
) -> sqlx::Result<bool> {
    let updated = sqlx::query("UPDATE users SET user_type = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(user_type)
        .execute(db)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Opens a deactivated account again: it is no longer deactivated nor erased. (Its password
/// is set by the caller; deactivation forgot it.)
pub(crate) async fn reactivate(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "WITH unerased AS (DELETE FROM erased_users WHERE user_id = $1)
         UPDATE users SET deactivated = FALSE WHERE user_id = $1",
    )
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// A per-user rate limit an admin set.
#[derive(Clone, Copy, Debug, FromRow, PartialEq, Eq)]
pub struct RateLimitOverride {
    pub messages_per_second: i32,
    pub burst_count: i32,
}

pub(crate) async fn ratelimit_override(
    db: impl PgExecutor<'_>,
    user_id: &str,
) -> sqlx::Result<Option<RateLimitOverride>> {
    sqlx::query_as("SELECT messages_per_second, burst_count FROM ratelimit_overrides WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await
}

pub(crate) async fn set_ratelimit_override(
    db: impl PgExecutor<'_>,
    user_id: &str,
    limit: RateLimitOverride,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO ratelimit_overrides (user_id, messages_per_second, burst_count) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO UPDATE
           SET messages_per_second = EXCLUDED.messages_per_second, burst_count = EXCLUDED.burst_count",
    )
    .bind(user_id)
    .bind(limit.messages_per_second)
    .bind(limit.burst_count)
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) async fn delete_ratelimit_override(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM ratelimit_overrides WHERE user_id = $1").bind(user_id).execute(db).await?;
    Ok(())
}

/// A device as the admin API shows it (with its last user agent).
#[derive(Clone, Debug, FromRow)]
pub(crate) struct DeviceRecord {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
    pub last_seen_user_agent: Option<String>,
}

pub(crate) async fn devices(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Vec<DeviceRecord>> {
    sqlx::query_as(
        "SELECT device_id, display_name, last_seen_ts, last_seen_ip, last_seen_user_agent
         FROM devices WHERE user_id = $1 AND NOT hidden ORDER BY device_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// Every account data entry of the user: `(room_id, type, content)`, `room_id` '' for global.
pub(crate) async fn account_data(
    db: impl PgExecutor<'_>,
    user_id: &str,
) -> sqlx::Result<Vec<(String, String, crate::db::json::StoredJson)>> {
    sqlx::query_as(
        "SELECT room_id, data_type, content FROM account_data WHERE user_id = $1 ORDER BY room_id, data_type",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

pub(crate) async fn is_shadow_banned(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $1 AND shadow_banned)")
        .bind(user_id)
        .fetch_one(db)
        .await
}

/// What `user_id` did since `from_ts` (ms), rejected and soft-failed events aside: the
/// invitations they sent, and the rooms they joined whether or not they are still there (only
/// a user sends their own join, so their joins are among the events they sent).
pub(crate) async fn membership_activity_since(
    db: impl PgExecutor<'_>,
    user_id: &str,
    from_ts: i64,
) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE membership = 'invite'),
                count(DISTINCT room_id) FILTER (WHERE membership = 'join')
         FROM (SELECT room_id, (json::jsonb)->'content'->>'membership' AS membership FROM events
               WHERE sender = $1 AND event_type = 'm.room.member' AND origin_server_ts >= $2
                 AND rejection IS NULL AND NOT soft_failed) sent",
    )
    .bind(user_id)
    .bind(from_ts)
    .fetch_one(db)
    .await
}
