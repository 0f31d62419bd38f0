//! Cached device lists of other servers' users (migration 0034).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use std::collections::BTreeMap;

/// What is kept of a remote user's devices: per device its signed keys and display name, and
/// the user's public cross-signing keys.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct CachedDevices {
    pub devices: BTreeMap<String, CachedDevice>,
    pub master_key: Option<Value>,
    pub self_signing_key: Option<Value>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CachedDevice {
    pub keys: Value,
    pub display_name: Option<String>,
}

#[derive(Debug, FromRow)]
pub(crate) struct CachedRow {
    pub stream_id: i64,
    pub devices: String,
}

pub(crate) async fn get(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Option<CachedRow>> {
    sqlx::query_as("SELECT stream_id, devices FROM remote_device_lists WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await
}

/// The cached list, locked for the rest of the transaction (an EDU's update reads and writes it).
pub(crate) async fn get_for_update(conn: &mut sqlx::PgConnection, user_id: &str) -> sqlx::Result<Option<CachedRow>> {
    sqlx::query_as("SELECT stream_id, devices FROM remote_device_lists WHERE user_id = $1 FOR UPDATE")
        .bind(user_id)
        .fetch_optional(conn)
        .await
}

/// Stores a list: fetched whole (`resynced`, which is counted; the row may be new) or
/// updated from an EDU (the row exists).
pub(crate) async fn put(
    db: impl PgExecutor<'_>,
    user_id: &str,
    stream_id: i64,
    devices: &str,
    resynced: bool,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO remote_device_lists (user_id, stream_id, devices, resyncs, updated_ts)
         VALUES ($1, $2, $3, $4::INTEGER, $5)
         ON CONFLICT (user_id) DO UPDATE SET stream_id = EXCLUDED.stream_id, devices = EXCLUDED.devices,
           resyncs = remote_device_lists.resyncs + $4::INTEGER, updated_ts = EXCLUDED.updated_ts",
    )
    .bind(user_id)
    .bind(stream_id)
    .bind(devices)
    .bind(i32::from(resynced))
    .bind(now_ms)
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) async fn delete(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM remote_device_lists WHERE user_id = $1").bind(user_id).execute(db).await?;
    Ok(())
}

/// Whether a user of `server` shares a joined room with any user not of `server` (a local
/// one, as this server only holds rooms with local members): then the server sends us that
/// user's device-list updates, and a cached copy stays current.
pub(crate) async fn shares_a_room_with_us(db: impl PgExecutor<'_>, user_id: &str, local: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM room_memberships theirs
           JOIN room_servers s ON s.room_id = theirs.room_id AND s.server_name = $2
           WHERE theirs.user_id = $1 AND theirs.membership = 'join')",
    )
    .bind(user_id)
    .bind(local)
    .fetch_one(db)
    .await
}
