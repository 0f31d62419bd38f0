//! Registration tokens and shared-secret registration nonces.

use sqlx::{FromRow, PgExecutor};

#[derive(Clone, Debug, FromRow)]
pub(crate) struct RegistrationToken {
    pub token: String,
    pub uses_allowed: Option<i32>,
    pub completed: i32,
    pub expiry_ts: Option<i64>,
}

pub(crate) async fn create_token(
    db: impl PgExecutor<'_>,
    token: &str,
    uses_allowed: Option<i32>,
    expiry_ts: Option<i64>,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO registration_tokens (token, uses_allowed, expiry_ts, created_ts) VALUES ($1, $2, $3, $4)
         ON CONFLICT (token) DO NOTHING",
    )
    .bind(token)
    .bind(uses_allowed)
    .bind(expiry_ts)
    .bind(now_ms)
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub(crate) async fn list_tokens(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<RegistrationToken>> {
    sqlx::query_as("SELECT token, uses_allowed, completed, expiry_ts FROM registration_tokens ORDER BY created_ts")
        .fetch_all(db)
        .await
}

pub(crate) async fn get_token(db: impl PgExecutor<'_>, token: &str) -> sqlx::Result<Option<RegistrationToken>> {
    sqlx::query_as("SELECT token, uses_allowed, completed, expiry_ts FROM registration_tokens WHERE token = $1")
        .bind(token)
        .fetch_optional(db)
        .await
}

/// Changes what is given (`Some(None)` clears a limit); false if there is no such token.
pub(crate) async fn update_token(
    db: impl PgExecutor<'_>,
    token: &str,
    uses_allowed: Option<Option<i32>>,
    expiry_ts: Option<Option<i64>>,
) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE registration_tokens
         SET uses_allowed = CASE WHEN $2 THEN $3 ELSE uses_allowed END,
             expiry_ts = CASE WHEN $4 THEN $5 ELSE expiry_ts END
         WHERE token = $1",
    )
    .bind(token)
    .bind(uses_allowed.is_some())
    .bind(uses_allowed.flatten())
    .bind(expiry_ts.is_some())
    .bind(expiry_ts.flatten())
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

pub(crate) async fn delete_token(db: impl PgExecutor<'_>, token: &str) -> sqlx::Result<bool> {
    let deleted = sqlx::query("DELETE FROM registration_tokens WHERE token = $1").bind(token).execute(db).await?;
    Ok(deleted.rows_affected() == 1)
}

/// Whether the token exists, has uses left and has not expired.
pub(crate) async fn token_is_valid(db: impl PgExecutor<'_>, token: &str, now_ms: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM registration_tokens WHERE token = $1
           AND (uses_allowed IS NULL OR completed < uses_allowed)
           AND (expiry_ts IS NULL OR expiry_ts > $2))",
    )
    .bind(token)
    .bind(now_ms)
    .fetch_one(db)
    .await
}

/// Counts one completed registration against the token, only if it is still valid; run in
/// the registration's transaction so a token with one use left admits exactly one account.
pub(crate) async fn consume_token(db: impl PgExecutor<'_>, token: &str, now_ms: i64) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE registration_tokens SET completed = completed + 1 WHERE token = $1
           AND (uses_allowed IS NULL OR completed < uses_allowed)
           AND (expiry_ts IS NULL OR expiry_ts > $2)",
    )
    .bind(token)
    .bind(now_ms)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

pub(crate) async fn insert_nonce(db: impl PgExecutor<'_>, nonce: &str, now_ms: i64) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO registration_nonces (nonce, created_ts) VALUES ($1, $2)")
        .bind(nonce)
        .bind(now_ms)
        .execute(db)
        .await?;
    Ok(())
}

/// Removes the nonce; `true` only if it existed and was issued after `issued_after_ms`.
/// Deleting is what makes a nonce single-use, even across processes.
pub(crate) async fn take_nonce(db: impl PgExecutor<'_>, nonce: &str, issued_after_ms: i64) -> sqlx::Result<bool> {
    let taken: Option<i64> =
        sqlx::query_scalar("DELETE FROM registration_nonces WHERE nonce = $1 RETURNING created_ts")
            .bind(nonce)
            .fetch_optional(db)
            .await?;
    Ok(taken.is_some_and(|created| created > issued_after_ms))
}

pub(crate) async fn delete_nonces_older_than(db: impl PgExecutor<'_>, cutoff_ms: i64) -> sqlx::Result<u64> {
    let deleted =
        sqlx::query("DELETE FROM registration_nonces WHERE created_ts < $1").bind(cutoff_ms).execute(db).await?;
    Ok(deleted.rows_affected())
}
