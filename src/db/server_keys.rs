//! Servers' verify keys, ours and other servers' (migration 0018).

use sqlx::{FromRow, PgExecutor};

#[derive(Clone, Debug, FromRow)]
pub(crate) struct StoredKey {
    pub key_id: String,
    /// Unpadded base64, as served.
    pub public_key: String,
    pub valid_until_ts: i64,
    /// Set for a key the server no longer uses.
    pub expired_ts: Option<i64>,
    /// The signed key object the key came in (other servers' keys only).
    pub response: Option<String>,
}

/// One key of a fetched key object.
pub(crate) struct NewKey<'a> {
    pub key_id: &'a str,
    pub public_key: &'a str,
    pub expired_ts: Option<i64>,
}

/// Every key known for `server_name`.
pub(crate) async fn keys_of(db: impl PgExecutor<'_>, server_name: &str) -> sqlx::Result<Vec<StoredKey>> {
    sqlx::query_as(
        "SELECT server_name, key_id, public_key, valid_until_ts, expired_ts, response \
         FROM server_keys WHERE server_name = $1 ORDER BY key_id",
    )
    .bind(server_name)
    .fetch_all(db)
    .await
}

/// Stores the keys of one key object a server served (directly or through a notary). A key
/// seen before keeps the newest validity; a key once reported expired stays expired.
pub(crate) async fn store_response(
    db: impl PgExecutor<'_>,
    server_name: &str,
    keys: &[NewKey<'_>],
    valid_until_ts: i64,
    response: &str,
    now_ms: i64,
) -> sqlx::Result<()> {
    let key_ids: Vec<&str> = keys.iter().map(|key| key.key_id).collect();
    let public_keys: Vec<&str> = keys.iter().map(|key| key.public_key).collect();
    let expired: Vec<Option<i64>> = keys.iter().map(|key| key.expired_ts).collect();
    sqlx::query(
        "INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, response, fetched_ts) \
         SELECT $1, key_id, public_key, $5, expired_ts, $6, $7 \
         FROM UNNEST($2::text[], $3::text[], $4::bigint[]) AS k(key_id, public_key, expired_ts) \
         ON CONFLICT (server_name, key_id) DO UPDATE SET \
             public_key = EXCLUDED.public_key, \
             valid_until_ts = GREATEST(server_keys.valid_until_ts, EXCLUDED.valid_until_ts), \
             expired_ts = COALESCE(LEAST(server_keys.expired_ts, EXCLUDED.expired_ts), \
                                   server_keys.expired_ts, EXCLUDED.expired_ts), \
             response = CASE WHEN EXCLUDED.valid_until_ts >= server_keys.valid_until_ts \
                             THEN EXCLUDED.response ELSE server_keys.response END, \
             fetched_ts = EXCLUDED.fetched_ts",
    )
    .bind(server_name)
    .bind(&key_ids)
    .bind(&public_keys)
    .bind(&expired)
    .bind(valid_until_ts)
    .bind(response)
    .bind(now_ms)
    .execute(db)
    .await?;
    Ok(())
}

/// Records `key_id` as our current key and every other key of ours as expired from now on
/// (if not already): what lets `/key/v2/server` list the keys we signed with before a
/// rotation under `old_verify_keys`.
pub(crate) async fn record_own_key(
    db: impl PgExecutor<'_>,
    server_name: &str,
    key_id: &str,
    public_key: &str,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "WITH current AS ( \
             INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, response, fetched_ts) \
             VALUES ($1, $2, $3, 0, NULL, NULL, $4) \
             ON CONFLICT (server_name, key_id) DO UPDATE SET expired_ts = NULL, public_key = EXCLUDED.public_key \
         ) \
         UPDATE server_keys SET expired_ts = $4 \
         WHERE server_name = $1 AND key_id <> $2 AND expired_ts IS NULL",
    )
    .bind(server_name)
    .bind(key_id)
    .bind(public_key)
    .bind(now_ms)
    .execute(db)
    .await?;
    Ok(())
}
