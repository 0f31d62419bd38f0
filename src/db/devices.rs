//! Devices and their access tokens.

use sqlx::{FromRow, PgExecutor};

#[derive(Clone, Debug, FromRow)]
pub(crate) struct Device {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

/// Who an access token belongs to, with what the auth layer needs to decide in one query.
#[derive(Clone, Debug, FromRow)]
pub(crate) struct TokenOwner {
    pub user_id: String,
    pub device_id: String,
    pub is_admin: bool,
    pub is_guest: bool,
    pub deactivated: bool,
    pub locked: bool,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
    /// The token stops working then (ms since the epoch), when it was issued with an expiry.
    pub valid_until_ms: Option<i64>,
    pub shadow_banned: bool,
    /// The user's message rate limit, when an admin set one (`ratelimit_overrides`).
    pub override_messages_per_second: Option<i32>,
    pub override_burst_count: Option<i32>,
}

pub(crate) struct SeenFrom<'a> {
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub now_ms: i64,
}

/// Creates the device, or (login with a known device id) keeps it and records the sighting.
pub(crate) async fn upsert(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    display_name: Option<&str>,
    seen: &SeenFrom<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts, last_seen_ip, last_seen_user_agent)
         VALUES ($1, $2, $3, $4, $4, $5, $6)
         ON CONFLICT (user_id, device_id) DO UPDATE
           SET last_seen_ts = EXCLUDED.last_seen_ts,
               last_seen_ip = EXCLUDED.last_seen_ip,
               last_seen_user_agent = EXCLUDED.last_seen_user_agent,
               display_name = COALESCE(EXCLUDED.display_name, devices.display_name)",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(display_name)
    .bind(seen.now_ms)
    .bind(seen.ip)
    .bind(seen.user_agent)
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) async fn insert_token(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
    user_id: &str,
    device_id: &str,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES ($1, $2, $3, $4)")
        .bind(token_hash)
        .bind(user_id)
        .bind(device_id)
        .bind(now_ms)
        .execute(db)
        .await?;
    Ok(())
}

pub(crate) async fn delete_tokens_of_device(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2")
        .bind(user_id)
        .bind(device_id)
        .execute(db)
        .await?;
    Ok(())
}

pub(crate) async fn token_owner(db: impl PgExecutor<'_>, token_hash: &[u8]) -> sqlx::Result<Option<TokenOwner>> {
    sqlx::query_as(
        "SELECT t.user_id, t.device_id, u.is_admin, u.is_guest, u.deactivated, u.locked, d.last_seen_ts, d.last_seen_ip,
                t.valid_until_ms, u.shadow_banned, o.messages_per_second AS override_messages_per_second,
                o.burst_count AS override_burst_count
         FROM access_tokens t
         JOIN users u ON u.user_id = t.user_id
         JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id
         LEFT JOIN ratelimit_overrides o ON o.user_id = t.user_id
         WHERE t.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(db)
    .await
}

pub(crate) async fn record_sighting(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    seen: &SeenFrom<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE devices SET last_seen_ts = $3, last_seen_ip = $4, last_seen_user_agent = COALESCE($5, last_seen_user_agent)
         WHERE user_id = $1 AND device_id = $2",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(seen.now_ms)
    .bind(seen.ip)
    .bind(seen.user_agent)
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) async fn list(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Vec<Device>> {
    sqlx::query_as(
        "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices
         WHERE user_id = $1 AND NOT hidden ORDER BY device_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

pub(crate) async fn get(db: impl PgExecutor<'_>, user_id: &str, device_id: &str) -> sqlx::Result<Option<Device>> {
    sqlx::query_as(
        "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices
         WHERE user_id = $1 AND device_id = $2 AND NOT hidden",
    )
    .bind(user_id)
    .bind(device_id)
    .fetch_optional(db)
    .await
}

pub(crate) async fn set_display_name(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    name: Option<&str>,
) -> sqlx::Result<bool> {
    let updated = sqlx::query("UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2")
        .bind(user_id)
        .bind(device_id)
        .bind(name)
        .execute(db)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Deletes the devices (their tokens go with them); returns how many existed.
pub(crate) async fn delete(db: impl PgExecutor<'_>, user_id: &str, device_ids: &[String]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("DELETE FROM devices WHERE user_id = $1 AND device_id = ANY($2) RETURNING device_id")
        .bind(user_id)
        .bind(device_ids)
        .fetch_all(db)
        .await
}

/// Deletes every device of the user except `keep` (if any); returns the ids deleted.
pub(crate) async fn delete_all_except(
    db: impl PgExecutor<'_>,
    user_id: &str,
    keep: Option<&str>,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("DELETE FROM devices WHERE user_id = $1 AND device_id IS DISTINCT FROM $2 RETURNING device_id")
        .bind(user_id)
        .bind(keep)
        .fetch_all(db)
        .await
}

/// A session an admin opens as the user (`POST /_synapse/admin/v1/users/{userId}/login`): on a
/// new device hidden from the user's device listings, with a token that may expire.
pub(crate) async fn insert_hidden_session(
    db: &mut sqlx::PgConnection,
    user_id: &str,
    device_id: &str,
    token_hash: &[u8],
    valid_until_ms: Option<i64>,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO devices (user_id, device_id, created_ts, hidden) VALUES ($1, $2, $3, TRUE)")
        .bind(user_id)
        .bind(device_id)
        .bind(now_ms)
        .execute(&mut *db)
        .await?;
    sqlx::query(
        "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, valid_until_ms)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(device_id)
    .bind(now_ms)
    .bind(valid_until_ms)
    .execute(&mut *db)
    .await?;
    Ok(())
}
