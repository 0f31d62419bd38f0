//! Server-side key backups: versions (`key_backup_versions`) and their session keys
//! (`key_backup_sessions`).
//!
//! Writers take [`lock_user`] first, so that version numbers, the "current version" check, the
//! etag and the count of one user's backups change one request at a time.

use crate::db::json::StoredJson;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};

#[derive(Debug, FromRow)]
pub(crate) struct VersionRow {
    pub version: i64,
    pub algorithm: String,
    pub auth_data: StoredJson,
    pub etag: i64,
    pub deleted: bool,
}

/// A live version with the number of keys it holds, read in one snapshot so that the two agree.
#[derive(Debug, FromRow)]
pub(crate) struct VersionInfoRow {
    #[sqlx(flatten)]
    pub row: VersionRow,
    pub count: i64,
}

#[derive(Debug, FromRow)]
pub(crate) struct SessionRow {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: StoredJson,
}

/// A session key to store, already checked by the domain.
pub(crate) struct NewSession<'a> {
    pub room_id: &'a str,
    pub session_id: &'a str,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: &'a Value,
}

/// Serialises backup writes of one user until the transaction ends. The key is namespaced so
/// that it does not share a value with the per-room locks by anything but hash chance (which
/// would only make two unrelated writers wait for each other).
pub(crate) async fn lock_user(conn: &mut PgConnection, user_id: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('key_backup ' || $1, 0))")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores a new version numbered one past every version the user ever had (deleted ones too,
/// so a number is never reused). Callers hold [`lock_user`].
pub(crate) async fn create_version(
    db: impl PgExecutor<'_>,
    user_id: &str,
    algorithm: &str,
    auth_data: &Value,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data)
         SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3 FROM key_backup_versions WHERE user_id = $1
         RETURNING version",
    )
    .bind(user_id)
    .bind(algorithm)
    .bind(auth_data)
    .fetch_one(db)
    .await
}

/// Erases every version and key of a user (account deactivation: nobody can read them again).
pub(crate) async fn delete_all_for_user(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM key_backup_versions WHERE user_id = $1").bind(user_id).execute(db).await?;
    Ok(())
}

/// A version, deleted or not.
pub(crate) async fn version(db: impl PgExecutor<'_>, user_id: &str, version: i64) -> sqlx::Result<Option<VersionRow>> {
    sqlx::query_as(
        "SELECT version, algorithm, auth_data, etag, deleted FROM key_backup_versions
         WHERE user_id = $1 AND version = $2",
    )
    .bind(user_id)
    .bind(version)
    .fetch_optional(db)
    .await
}

/// The current version: the most recently created one that is not deleted.
pub(crate) async fn current_version(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Option<VersionRow>> {
    sqlx::query_as(
        "SELECT version, algorithm, auth_data, etag, deleted FROM key_backup_versions
         WHERE user_id = $1 AND NOT deleted ORDER BY version DESC LIMIT 1",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// A live version with its key count: the given one, or the current one for `None`.
pub(crate) async fn live_version_info(
    db: impl PgExecutor<'_>,
    user_id: &str,
    version: Option<i64>,
) -> sqlx::Result<Option<VersionInfoRow>> {
    sqlx::query_as(
        "SELECT v.version, v.algorithm, v.auth_data, v.etag, v.deleted,
           (SELECT COUNT(*) FROM key_backup_sessions s WHERE s.user_id = v.user_id AND s.version = v.version) AS count
         FROM key_backup_versions v
         WHERE v.user_id = $1 AND NOT v.deleted AND ($2::bigint IS NULL OR v.version = $2)
         ORDER BY v.version DESC LIMIT 1",
    )
    .bind(user_id)
    .bind(version)
    .fetch_optional(db)
    .await
}

pub(crate) async fn update_auth_data(
    db: impl PgExecutor<'_>,
    user_id: &str,
    version: i64,
    auth_data: &Value,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE key_backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2")
        .bind(user_id)
        .bind(version)
        .bind(auth_data)
        .execute(db)
        .await?;
    Ok(())
}

pub(crate) async fn mark_deleted(db: impl PgExecutor<'_>, user_id: &str, version: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE key_backup_versions SET deleted = TRUE WHERE user_id = $1 AND version = $2")
        .bind(user_id)
        .bind(version)
        .execute(db)
        .await?;
    Ok(())
}

/// Records a change to the version's keys; returns the new etag.
pub(crate) async fn bump_etag(db: impl PgExecutor<'_>, user_id: &str, version: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2 RETURNING etag",
    )
    .bind(user_id)
    .bind(version)
    .fetch_one(db)
    .await
}

pub(crate) async fn count_sessions(db: impl PgExecutor<'_>, user_id: &str, version: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM key_backup_sessions WHERE user_id = $1 AND version = $2")
        .bind(user_id)
        .bind(version)
        .fetch_one(db)
        .await
}

/// Inserts the sessions, or replaces a stored one where the new key is better by the spec's
/// rule: verified beats unverified, then the lower first message index, then the lower
/// forwarded count; an equal key keeps the stored one. The rule runs inside the upsert, so a
/// concurrent writer cannot slip a worse key past it. Returns how many rows changed.
pub(crate) async fn upsert_sessions(
    db: impl PgExecutor<'_>,
    user_id: &str,
    version: i64,
    sessions: &[NewSession<'_>],
) -> sqlx::Result<u64> {
    let room_ids: Vec<&str> = sessions.iter().map(|s| s.room_id).collect();
    let session_ids: Vec<&str> = sessions.iter().map(|s| s.session_id).collect();
    let first_indexes: Vec<i64> = sessions.iter().map(|s| s.first_message_index).collect();
    let forwarded: Vec<i64> = sessions.iter().map(|s| s.forwarded_count).collect();
    let verified: Vec<bool> = sessions.iter().map(|s| s.is_verified).collect();
    let data: Vec<&Value> = sessions.iter().map(|s| s.session_data).collect();
    let result = sqlx::query(
        "INSERT INTO key_backup_sessions
           (user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)
         SELECT $1, $2, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
         FROM UNNEST($3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::boolean[], $8::jsonb[])
           AS incoming (room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)
         ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
           first_message_index = EXCLUDED.first_message_index,
           forwarded_count = EXCLUDED.forwarded_count,
           is_verified = EXCLUDED.is_verified,
           session_data = EXCLUDED.session_data
         WHERE (EXCLUDED.is_verified, -EXCLUDED.first_message_index, -EXCLUDED.forwarded_count)
             > (key_backup_sessions.is_verified, -key_backup_sessions.first_message_index,
                -key_backup_sessions.forwarded_count)",
    )
    .bind(user_id)
    .bind(version)
    .bind(&room_ids)
    .bind(&session_ids)
    .bind(&first_indexes)
    .bind(&forwarded)
    .bind(&verified)
    .bind(&data)
    .execute(db)
    .await?;
    Ok(result.rows_affected())
}

/// Which sessions of a version a read or delete concerns.
#[derive(Clone, Copy)]
pub(crate) enum Scope<'a> {
    All,
    Room(&'a str),
    Session(&'a str, &'a str),
}

impl Scope<'_> {
    /// The condition for this scope. A separate statement per scope (rather than one with
    /// `$3 IS NULL OR …`) lets PostgreSQL's cached generic plans still use the primary key.
    fn condition(self) -> &'static str {
        match self {
            Scope::All => "user_id = $1 AND version = $2",
            Scope::Room(_) => "user_id = $1 AND version = $2 AND room_id = $3",
            Scope::Session(..) => "user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4",
        }
    }

    fn bind<'q, O>(
        self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>
    where
        Self: 'q,
    {
        match self {
            Scope::All => query,
            Scope::Room(room_id) => query.bind(room_id),
            Scope::Session(room_id, session_id) => query.bind(room_id).bind(session_id),
        }
    }
}

/// The version's sessions within `scope`.
pub(crate) async fn sessions(
    db: impl PgExecutor<'_>,
    user_id: &str,
    version: i64,
    scope: Scope<'_>,
) -> sqlx::Result<Vec<SessionRow>> {
    let sql = format!(
        "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
         FROM key_backup_sessions WHERE {}",
        scope.condition()
    );
    scope.bind(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(user_id).bind(version)).fetch_all(db).await
}

/// Deletes the version's sessions within `scope`; returns how many were deleted.
pub(crate) async fn delete_sessions(
    db: impl PgExecutor<'_>,
    user_id: &str,
    version: i64,
    scope: Scope<'_>,
) -> sqlx::Result<u64> {
    let sql = format!(
        "WITH gone AS (DELETE FROM key_backup_sessions WHERE {} RETURNING 1) SELECT COUNT(*) FROM gone",
        scope.condition()
    );
    let (deleted,): (i64,) =
        scope.bind(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(user_id).bind(version)).fetch_one(db).await?;
    Ok(u64::try_from(deleted).unwrap_or(0))
}
