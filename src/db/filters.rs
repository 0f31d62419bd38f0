//! Stored sync filters; ids are small per-user integers.

use crate::db::json::StoredJson;
use serde_json::Value;
use sqlx::PgExecutor;

/// Stores the definition under the user's next free id. Two concurrent inserts for one user
/// can pick the same id; the primary key makes one of them fail, and the caller retries.
pub(crate) async fn insert(db: impl PgExecutor<'_>, user_id: &str, definition: &Value) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "INSERT INTO filters (user_id, filter_id, definition)
         SELECT $1, COALESCE(MAX(filter_id) + 1, 0), $2 FROM filters WHERE user_id = $1
         ON CONFLICT (user_id, filter_id) DO NOTHING
         RETURNING filter_id",
    )
    .bind(user_id)
    .bind(definition)
    .fetch_optional(db)
    .await
}

/// The definition, or `None`; one that cannot be read counts as none (see [`StoredJson`]).
pub(crate) async fn get(db: impl PgExecutor<'_>, user_id: &str, filter_id: i64) -> sqlx::Result<Option<Value>> {
    let found: Option<StoredJson> =
        sqlx::query_scalar("SELECT definition FROM filters WHERE user_id = $1 AND filter_id = $2")
            .bind(user_id)
            .bind(filter_id)
            .fetch_optional(db)
            .await?;
    Ok(found.and_then(StoredJson::into_value))
}
