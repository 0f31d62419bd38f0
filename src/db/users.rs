//! The `users` table: accounts, their flags and their profiles.

use crate::db::json::StoredJson;
use serde_json::{Map, Value};
use sqlx::{FromRow, PgExecutor};
use std::collections::HashMap;

#[derive(Clone, Debug, FromRow)]
pub struct Account {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub is_guest: bool,
    pub deactivated: bool,
    /// Locked by an admin: the account's requests and logins are refused until unlocked.
    pub locked: bool,
}

pub struct NewAccount<'a> {
    pub user_id: &'a str,
    pub password_hash: Option<&'a str>,
    pub is_admin: bool,
    pub is_guest: bool,
    pub profile: Map<String, Value>,
    pub now_ms: i64,
}

/// Inserts the account; `false` when the user id is taken (the unique key decides, so two
/// concurrent registrations of one name cannot both succeed).
pub async fn insert(db: impl PgExecutor<'_>, account: NewAccount<'_>) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO users (user_id, password_hash, is_admin, is_guest, created_ts, profile)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(account.user_id)
    .bind(account.password_hash)
    .bind(account.is_admin)
    .bind(account.is_guest)
    .bind(account.now_ms)
    .bind(Value::Object(account.profile))
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub async fn exists(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $1)").bind(user_id).fetch_one(db).await
}

pub async fn get(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Option<Account>> {
    sqlx::query_as(
        "SELECT user_id, password_hash, is_admin, is_guest, deactivated, locked FROM users WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await
}

pub async fn set_password_hash(db: impl PgExecutor<'_>, user_id: &str, hash: Option<&str>) -> sqlx::Result<bool> {
    let updated = sqlx::query("UPDATE users SET password_hash = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(hash)
        .execute(db)
        .await?;
    Ok(updated.rows_affected() == 1)
}

pub async fn set_admin(db: impl PgExecutor<'_>, user_id: &str, is_admin: bool) -> sqlx::Result<bool> {
    let updated = sqlx::query("UPDATE users SET is_admin = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(is_admin)
        .execute(db)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Marks the account deactivated, forgets its password and empties its profile.
pub async fn deactivate(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE users SET deactivated = TRUE, password_hash = NULL, profile = '{}'::jsonb WHERE user_id = $1",
    )
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Records that the user asked for their content to be erased (see `erased_users`).
pub async fn mark_erased(db: impl PgExecutor<'_>, user_id: &str, now_ms: i64) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO erased_users (user_id, erased_ts) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING")
        .bind(user_id)
        .bind(now_ms)
        .execute(db)
        .await?;
    Ok(())
}

/// The profile of an existing, active account. Read field by field, so that a field which
/// cannot be read is left out (see [`crate::db::json`]) instead of failing every read of the
/// profile, and with it every join and room creation of its owner.
pub async fn profile(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Option<Map<String, Value>>> {
    let fields = sqlx::query_as(
        "SELECT field.key, field.value FROM users LEFT JOIN LATERAL jsonb_each(users.profile) AS field ON TRUE
         WHERE user_id = $1 AND NOT deactivated",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    Ok(profile_of(fields))
}

/// One `(key, value)` row of a profile, as `jsonb_each` gives it (none for a profile without
/// fields).
type ProfileField = (Option<String>, Option<StoredJson>);

/// Several users at once: whether each has an account (active or not), and the profile of
/// each active one, as [`profile`] reads it. Users without an account are left out.
pub async fn accounts_and_profiles(
    db: impl PgExecutor<'_>,
    user_ids: &[&str],
) -> sqlx::Result<HashMap<String, Option<Map<String, Value>>>> {
    let rows: Vec<(String, bool, Option<String>, Option<StoredJson>)> = sqlx::query_as(
        "SELECT user_id, deactivated, field.key, field.value
         FROM users LEFT JOIN LATERAL jsonb_each(users.profile) AS field ON NOT deactivated
         WHERE user_id = ANY($1)",
    )
    .bind(user_ids)
    .fetch_all(db)
    .await?;
    let mut fields: HashMap<String, (bool, Vec<ProfileField>)> = HashMap::new();
    for (user_id, deactivated, key, value) in rows {
        let entry = fields.entry(user_id).or_insert_with(|| (deactivated, Vec::new()));
        entry.1.push((key, value));
    }
    Ok(fields
        .into_iter()
        .map(|(user_id, (deactivated, fields))| (user_id, if deactivated { None } else { profile_of(fields) }))
        .collect())
}

/// [`profile`], locking the row for a read-modify-write inside a transaction. (A field that
/// cannot be read is dropped by the write.)
pub async fn profile_for_update(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Option<Map<String, Value>>> {
    let fields = sqlx::query_as(
        "SELECT field.key, field.value FROM users LEFT JOIN LATERAL jsonb_each(users.profile) AS field ON TRUE
         WHERE user_id = $1 AND NOT deactivated FOR UPDATE OF users",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    Ok(profile_of(fields))
}

/// A profile from its `(key, value)` rows: none without a row (no such active account); an
/// account without fields has one row of nulls.
fn profile_of(fields: Vec<(Option<String>, Option<StoredJson>)>) -> Option<Map<String, Value>> {
    if fields.is_empty() {
        return None;
    }
    let readable = fields.into_iter().filter_map(|(key, value)| Some((key?, value?.into_value()?)));
    Some(readable.collect())
}

pub async fn set_profile(db: impl PgExecutor<'_>, user_id: &str, profile: Map<String, Value>) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET profile = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(Value::Object(profile))
        .execute(db)
        .await?;
    Ok(())
}
