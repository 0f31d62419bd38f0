//! User-interactive authentication sessions.

use serde_json::Value;
use sqlx::{FromRow, PgExecutor};

#[derive(Clone, Debug, FromRow)]
pub(crate) struct UiaSession {
    pub session_id: String,
    pub operation: String,
    pub user_id: Option<String>,
    pub completed: Vec<String>,
    pub registration_token: Option<String>,
    pub params: Option<Value>,
    pub subject: Value,
    pub outcome: Option<String>,
    pub created_ts: i64,
}

pub(crate) async fn create(
    db: impl PgExecutor<'_>,
    session_id: &str,
    operation: &str,
    user_id: Option<&str>,
    subject: &Value,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO uia_sessions (session_id, operation, user_id, subject, created_ts) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(session_id)
    .bind(operation)
    .bind(user_id)
    .bind(subject)
    .bind(now_ms)
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) async fn get(db: impl PgExecutor<'_>, session_id: &str) -> sqlx::Result<Option<UiaSession>> {
    sqlx::query_as(
        "SELECT session_id, operation, user_id, completed, registration_token, params, subject, outcome, created_ts
         FROM uia_sessions WHERE session_id = $1",
    )
    .bind(session_id)
    .fetch_optional(db)
    .await
}

pub(crate) async fn complete_stage(
    db: impl PgExecutor<'_>,
    session_id: &str,
    stage: &str,
    registration_token: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE uia_sessions
         SET completed = CASE WHEN $2 = ANY(completed) THEN completed ELSE array_append(completed, $2) END,
             registration_token = COALESCE($3, registration_token)
         WHERE session_id = $1",
    )
    .bind(session_id)
    .bind(stage)
    .bind(registration_token)
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) async fn set_params(db: impl PgExecutor<'_>, session_id: &str, params: &Value) -> sqlx::Result<()> {
    sqlx::query("UPDATE uia_sessions SET params = $2 WHERE session_id = $1")
        .bind(session_id)
        .bind(params)
        .execute(db)
        .await?;
    Ok(())
}

/// Records what the completed session achieved, unless another request of it already did
/// (`false`: the caller must not achieve it a second time).
pub(crate) async fn record_outcome(db: impl PgExecutor<'_>, session_id: &str, outcome: &str) -> sqlx::Result<bool> {
    let recorded = sqlx::query("UPDATE uia_sessions SET outcome = $2 WHERE session_id = $1 AND outcome IS NULL")
        .bind(session_id)
        .bind(outcome)
        .execute(db)
        .await?;
    Ok(recorded.rows_affected() == 1)
}

pub(crate) async fn delete(db: impl PgExecutor<'_>, session_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM uia_sessions WHERE session_id = $1").bind(session_id).execute(db).await?;
    Ok(())
}

pub(crate) async fn delete_older_than(db: impl PgExecutor<'_>, cutoff_ms: i64) -> sqlx::Result<u64> {
    let deleted = sqlx::query("DELETE FROM uia_sessions WHERE created_ts < $1").bind(cutoff_ms).execute(db).await?;
    Ok(deleted.rows_affected())
}
