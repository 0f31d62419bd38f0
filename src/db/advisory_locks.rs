//! Session-level advisory locks (two-key form: a class, and a key within it), held on a
//! connection of the caller's own so they last exactly as long as it does.

use sqlx::PgConnection;

/// Takes the lock if it is free.
pub(crate) async fn try_lock(conn: &mut PgConnection, class: i32, key: i32) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)").bind(class).bind(key).fetch_one(conn).await
}

pub(crate) async fn unlock(conn: &mut PgConnection, class: i32, key: i32) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_unlock($1, $2)").bind(class).bind(key).execute(conn).await?;
    Ok(())
}
