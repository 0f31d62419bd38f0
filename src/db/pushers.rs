//! Pushers and their delivery progress (migration 0013).

use serde_json::Value;
use sqlx::{FromRow, PgExecutor};

#[derive(Clone, Debug, FromRow)]
pub(crate) struct Pusher {
    pub user_id: String,
    pub app_id: String,
    pub pushkey: String,
    pub kind: String,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: Option<String>,
    pub lang: String,
    pub data: Value,
    pub pushkey_ts: i64,
    pub delivered_upto: i64,
}

/// What a client sets.
pub(crate) struct NewPusher<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub app_id: &'a str,
    pub pushkey: &'a str,
    pub kind: &'a str,
    pub app_display_name: &'a str,
    pub device_display_name: &'a str,
    pub profile_tag: Option<&'a str>,
    pub lang: &'a str,
    pub data: &'a Value,
    pub now_ms: i64,
}

pub(crate) async fn list(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Vec<Pusher>> {
    sqlx::query_as("SELECT * FROM pushers WHERE user_id = $1 ORDER BY pusher_id").bind(user_id).fetch_all(db).await
}

pub(crate) async fn get(db: impl PgExecutor<'_>, pusher_id: i64) -> sqlx::Result<Option<Pusher>> {
    sqlx::query_as("SELECT * FROM pushers WHERE pusher_id = $1").bind(pusher_id).fetch_optional(db).await
}

/// Creates the pusher, delivering from after `start_after`; or updates the user's pusher with
/// the same app id and pushkey, keeping its device (it may be another device changing it, as
/// Synapse allows) and its delivery progress (nothing pending is dropped or sent twice).
pub(crate) async fn upsert(db: impl PgExecutor<'_>, pusher: &NewPusher<'_>, start_after: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO pushers (user_id, device_id, app_id, pushkey, kind, app_display_name, device_display_name,
                              profile_tag, lang, data, pushkey_ts, delivered_upto)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (user_id, app_id, pushkey) DO UPDATE
           SET kind = EXCLUDED.kind, app_display_name = EXCLUDED.app_display_name,
               device_display_name = EXCLUDED.device_display_name, profile_tag = EXCLUDED.profile_tag,
               lang = EXCLUDED.lang, data = EXCLUDED.data, pushkey_ts = EXCLUDED.pushkey_ts",
    )
    .bind(pusher.user_id)
    .bind(pusher.device_id)
    .bind(pusher.app_id)
    .bind(pusher.pushkey)
    .bind(pusher.kind)
    .bind(pusher.app_display_name)
    .bind(pusher.device_display_name)
    .bind(pusher.profile_tag)
    .bind(pusher.lang)
    .bind(pusher.data)
    .bind(pusher.now_ms)
    .bind(start_after)
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes the user's pusher with this app id and pushkey; returns whether there was one.
pub(crate) async fn delete(db: impl PgExecutor<'_>, user_id: &str, app_id: &str, pushkey: &str) -> sqlx::Result<bool> {
    let deleted = sqlx::query("DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3")
        .bind(user_id)
        .bind(app_id)
        .bind(pushkey)
        .execute(db)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

/// Deletes other users' pushers with this app id and pushkey (a device changed hands).
pub(crate) async fn delete_for_other_users(
    db: impl PgExecutor<'_>,
    app_id: &str,
    pushkey: &str,
    user_id: &str,
) -> sqlx::Result<u64> {
    let deleted = sqlx::query("DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3")
        .bind(app_id)
        .bind(pushkey)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(deleted.rows_affected())
}

/// Records that everything up to `position` has been handled and that delivery works.
/// Returns false if the pusher no longer exists (deleted meanwhile).
pub(crate) async fn advance(db: impl PgExecutor<'_>, pusher_id: i64, position: i64) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE pushers SET delivered_upto = GREATEST(delivered_upto, $2), failing_since = NULL WHERE pusher_id = $1",
    )
    .bind(pusher_id)
    .bind(position)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() > 0)
}

/// Records that delivery is failing (from the first failure on; later ones keep that time).
/// Returns since when it has been failing, or `None` if the pusher no longer exists.
pub(crate) async fn mark_failing(db: impl PgExecutor<'_>, pusher_id: i64, now_ms: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "UPDATE pushers SET failing_since = COALESCE(failing_since, $2) WHERE pusher_id = $1 RETURNING failing_since",
    )
    .bind(pusher_id)
    .bind(now_ms)
    .fetch_optional(db)
    .await
    .map(Option::flatten)
}

/// Deletes one pusher by id (its gateway rejected its pushkey).
pub(crate) async fn delete_by_id(db: impl PgExecutor<'_>, pusher_id: i64) -> sqlx::Result<bool> {
    let deleted = sqlx::query("DELETE FROM pushers WHERE pusher_id = $1").bind(pusher_id).execute(db).await?;
    Ok(deleted.rows_affected() > 0)
}
