//! SCRAM credentials (see migration 0037): the keys a SASL SCRAM login checks against.

use sqlx::{FromRow, PgExecutor};

#[derive(Clone, Debug, FromRow)]
pub(crate) struct ScramRow {
    pub salt: Vec<u8>,
    pub iterations: i32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// The user's credentials for `mechanism`, if they were derived from the current password of
/// an active account.
pub(crate) async fn current(db: impl PgExecutor<'_>, user_id: &str, mechanism: &str) -> sqlx::Result<Option<ScramRow>> {
    sqlx::query_as(
        "SELECT s.salt, s.iterations, s.stored_key, s.server_key
         FROM scram_credentials s JOIN users u ON u.user_id = s.user_id
         WHERE s.user_id = $1 AND s.mechanism = $2 AND s.password_hash = u.password_hash
           AND NOT u.deactivated",
    )
    .bind(user_id)
    .bind(mechanism)
    .fetch_optional(db)
    .await
}

pub(crate) struct NewScram<'a> {
    pub user_id: &'a str,
    pub mechanism: &'a str,
    pub password_hash: &'a str,
    pub row: &'a ScramRow,
}

pub(crate) async fn put(db: impl PgExecutor<'_>, new: NewScram<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO scram_credentials (user_id, mechanism, password_hash, salt, iterations, stored_key, server_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (user_id, mechanism) DO UPDATE SET password_hash = EXCLUDED.password_hash,
             salt = EXCLUDED.salt, iterations = EXCLUDED.iterations,
             stored_key = EXCLUDED.stored_key, server_key = EXCLUDED.server_key",
    )
    .bind(new.user_id)
    .bind(new.mechanism)
    .bind(new.password_hash)
    .bind(&new.row.salt)
    .bind(new.row.iterations)
    .bind(&new.row.stored_key)
    .bind(&new.row.server_key)
    .execute(db)
    .await?;
    Ok(())
}
