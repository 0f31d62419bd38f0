//! Per-device encryption keys: identity keys, one-time keys and fallback keys.

use crate::db::json::StoredJson;
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};

#[derive(Clone, Debug, FromRow)]
pub(crate) struct StoredDeviceKeys {
    pub user_id: String,
    pub device_id: String,
    pub key_json: StoredJson,
    pub display_name: Option<String>,
}

/// The device's stored keys; keys that cannot be read count as none (see [`StoredJson`]).
pub(crate) async fn device_keys(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
) -> sqlx::Result<Option<Value>> {
    let found: Option<StoredJson> =
        sqlx::query_scalar("SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2")
            .bind(user_id)
            .bind(device_id)
            .fetch_optional(db)
            .await?;
    Ok(found.and_then(StoredJson::into_value))
}

/// Stores a device's identity keys; `false` when the device already has keys (the caller
/// decides beforehand whether those are the same).
pub(crate) async fn insert_device_keys(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    key_json: &Value,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(key_json)
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The identity keys of the users' devices (all of a user's devices when `device_ids` is
/// empty for that user), with the devices' display names.
pub(crate) async fn query_device_keys(
    db: impl PgExecutor<'_>,
    user_ids: &[String],
    all_devices: &[bool],
    device_ids: &[String],
    device_users: &[String],
) -> sqlx::Result<Vec<StoredDeviceKeys>> {
    sqlx::query_as(
        "SELECT k.user_id, k.device_id, k.key_json, d.display_name
         FROM e2e_device_keys k
         JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id
         WHERE k.user_id IN (SELECT u FROM UNNEST($1::text[], $2::bool[]) AS t(u, a) WHERE a)
            OR (k.user_id, k.device_id) IN (SELECT * FROM UNNEST($4::text[], $3::text[]))
         ORDER BY k.user_id, k.device_id",
    )
    .bind(user_ids)
    .bind(all_devices)
    .bind(device_ids)
    .bind(device_users)
    .fetch_all(db)
    .await
}

/// Adds one-time keys; ids the device already uploaded are kept as they are.
pub(crate) async fn insert_one_time_keys(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    algorithms: &[String],
    key_ids: &[String],
    keys: &[Value],
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)
         SELECT $1, $2, a, k, j FROM UNNEST($3::text[], $4::text[], $5::jsonb[]) AS t(a, k, j)
         ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(algorithms)
    .bind(key_ids)
    .bind(keys)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Clone, Debug, FromRow)]
pub struct KeyCount {
    pub algorithm: String,
    pub count: i64,
}

pub(crate) async fn one_time_key_counts(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
) -> sqlx::Result<Vec<KeyCount>> {
    sqlx::query_as(
        "SELECT algorithm, COUNT(*) AS count FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2
         GROUP BY algorithm ORDER BY algorithm",
    )
    .bind(user_id)
    .bind(device_id)
    .fetch_all(db)
    .await
}

/// The columns `one_time_key_algorithms`, `one_time_key_counts` (in the same order) and
/// `unused_fallback_key_types` of the device `device` of the user `user` (parameters or
/// columns, e.g. `"$1"`, `"$2"`), for statements that carry them beside other things (every
/// `/sync` response holds them).
pub(crate) fn key_count_columns(user: &str, device: &str) -> String {
    format!(
        "ARRAY(SELECT algorithm FROM e2e_one_time_keys WHERE user_id = {user} AND device_id = {device}
               GROUP BY algorithm ORDER BY algorithm) AS one_time_key_algorithms,
         ARRAY(SELECT COUNT(*) FROM e2e_one_time_keys WHERE user_id = {user} AND device_id = {device}
               GROUP BY algorithm ORDER BY algorithm) AS one_time_key_counts,
         ARRAY(SELECT algorithm FROM e2e_fallback_keys WHERE user_id = {user} AND device_id = {device} AND NOT used
               ORDER BY algorithm) AS unused_fallback_key_types"
    )
}

/// What [`key_count_columns`] read.
#[derive(Clone, Debug, Default, FromRow)]
pub struct DeviceKeyCounts {
    pub one_time_key_algorithms: Vec<String>,
    pub one_time_key_counts: Vec<i64>,
    pub unused_fallback_key_types: Vec<String>,
}

impl DeviceKeyCounts {
    pub fn counts(&self) -> Vec<KeyCount> {
        let algorithms = self.one_time_key_algorithms.iter();
        algorithms
            .zip(&self.one_time_key_counts)
            .map(|(algorithm, count)| KeyCount { algorithm: algorithm.clone(), count: *count })
            .collect()
    }
}

/// [`one_time_key_counts`] and the algorithms with an unused fallback key, in one round trip.
pub(crate) async fn key_counts_and_fallbacks(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
) -> sqlx::Result<DeviceKeyCounts> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {}", key_count_columns("$1", "$2"))))
        .bind(user_id)
        .bind(device_id)
        .fetch_one(db)
        .await
}

/// Replaces the device's fallback key for the algorithm with a new, unused one. Uploading
/// the same key again keeps whether it was used (clients re-send it with other keys).
pub(crate) async fn set_fallback_key(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
    key_id: &str,
    key_json: &Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
         VALUES ($1, $2, $3, $4, $5, FALSE)
         ON CONFLICT (user_id, device_id, algorithm) DO UPDATE
           SET key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json,
               used = e2e_fallback_keys.used AND e2e_fallback_keys.key_json = EXCLUDED.key_json",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(algorithm)
    .bind(key_id)
    .bind(key_json)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Clone, Debug, FromRow)]
pub(crate) struct ClaimedKey {
    pub key_id: String,
    pub key_json: StoredJson,
}

/// Takes one one-time key of the algorithm from the device, or `None` when none is left.
/// Concurrent claims skip rows another claim has locked, so each key goes to exactly one
/// claimer and no claim waits for another.
pub(crate) async fn claim_one_time_key(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
) -> sqlx::Result<Option<ClaimedKey>> {
    sqlx::query_as(
        "DELETE FROM e2e_one_time_keys WHERE (user_id, device_id, algorithm, key_id) = (
             SELECT user_id, device_id, algorithm, key_id FROM e2e_one_time_keys
             WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
             ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING key_id, key_json",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(algorithm)
    .fetch_optional(db)
    .await
}

/// Hands out the device's fallback key for the algorithm (marking it used), if it has one.
pub(crate) async fn claim_fallback_key(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
) -> sqlx::Result<Option<ClaimedKey>> {
    sqlx::query_as(
        "UPDATE e2e_fallback_keys SET used = TRUE WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
         RETURNING key_id, key_json",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(algorithm)
    .fetch_optional(db)
    .await
}

pub(crate) async fn replace_device_keys(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    key_json: &Value,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE e2e_device_keys SET key_json = $3 WHERE user_id = $1 AND device_id = $2")
        .bind(user_id)
        .bind(device_id)
        .bind(key_json)
        .execute(db)
        .await?;
    Ok(())
}
