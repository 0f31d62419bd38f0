//! Cross-signing keys and the signatures clients upload for keys.

use crate::db::json::StoredJson;
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};

#[derive(Clone, Debug, FromRow)]
pub(crate) struct StoredCrossSigningKey {
    pub user_id: String,
    pub key_type: String,
    pub public_key: String,
    pub key_json: StoredJson,
}

/// The user's cross-signing keys of the given types.
pub(crate) async fn keys_of(
    db: impl PgExecutor<'_>,
    user_ids: &[String],
    key_types: &[&str],
) -> sqlx::Result<Vec<StoredCrossSigningKey>> {
    let key_types: Vec<String> = key_types.iter().map(|t| (*t).to_owned()).collect();
    sqlx::query_as(
        "SELECT user_id, key_type, public_key, key_json FROM e2e_cross_signing_keys
         WHERE user_id = ANY($1) AND key_type = ANY($2) ORDER BY user_id, key_type",
    )
    .bind(user_ids)
    .bind(key_types)
    .fetch_all(db)
    .await
}

pub(crate) async fn set_key(
    db: impl PgExecutor<'_>,
    user_id: &str,
    key_type: &str,
    public_key: &str,
    key_json: &Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO e2e_cross_signing_keys (user_id, key_type, public_key, key_json) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, key_type) DO UPDATE SET public_key = EXCLUDED.public_key, key_json = EXCLUDED.key_json",
    )
    .bind(user_id)
    .bind(key_type)
    .bind(public_key)
    .bind(key_json)
    .execute(db)
    .await?;
    Ok(())
}

/// Locks the user's cross-signing rows for the rest of the transaction, so that concurrent
/// uploads for one user (the first of which needs no password) happen one after the other.
pub(crate) async fn lock_user(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('e2e_cross_signing:' || $1, 0))")
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(())
}

#[derive(Clone, Debug, FromRow)]
pub(crate) struct StoredSignature {
    pub target_user_id: String,
    pub target_key_id: String,
    pub signer_user_id: String,
    pub signer_key_id: String,
    pub signature: String,
}

pub(crate) async fn add_signature(db: impl PgExecutor<'_>, signature: &StoredSignature) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO e2e_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id)
           DO UPDATE SET signature = EXCLUDED.signature",
    )
    .bind(&signature.target_user_id)
    .bind(&signature.target_key_id)
    .bind(&signature.signer_user_id)
    .bind(&signature.signer_key_id)
    .bind(&signature.signature)
    .execute(db)
    .await?;
    Ok(())
}

/// Every uploaded signature on keys of these users.
pub(crate) async fn signatures_on(
    db: impl PgExecutor<'_>,
    target_user_ids: &[String],
) -> sqlx::Result<Vec<StoredSignature>> {
    sqlx::query_as(
        "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature FROM e2e_signatures
         WHERE target_user_id = ANY($1)",
    )
    .bind(target_user_ids)
    .fetch_all(db)
    .await
}

/// Forgets signatures on devices that no longer exist (a new device may reuse the id) and on
/// cross-signing keys that were replaced.
pub(crate) async fn delete_orphan_signatures(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM e2e_signatures s WHERE s.target_user_id = $1
           AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.user_id = $1 AND d.device_id = s.target_key_id)
           AND NOT EXISTS (SELECT 1 FROM e2e_cross_signing_keys k WHERE k.user_id = $1 AND k.public_key = s.target_key_id)",
    )
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets a user's cross-signing keys and every signature by or on them (deactivation).
pub(crate) async fn delete_user(conn: &mut sqlx::PgConnection, user_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM e2e_cross_signing_keys WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    sqlx::query("DELETE FROM e2e_signatures WHERE target_user_id = $1 OR signer_user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The signatures `signer` uploaded on keys of these users (what `signer` alone may see of
/// their own verifications of others).
pub(crate) async fn signatures_by_on(
    db: impl PgExecutor<'_>,
    signer_user_id: &str,
    target_user_ids: &[String],
) -> sqlx::Result<Vec<StoredSignature>> {
    sqlx::query_as(
        "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature FROM e2e_signatures
         WHERE signer_user_id = $1 AND target_user_id = ANY($2)",
    )
    .bind(signer_user_id)
    .bind(target_user_ids)
    .fetch_all(db)
    .await
}
