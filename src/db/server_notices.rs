//! Each user's server-notices room (`creators::notices`).

use sqlx::PgExecutor;

pub(crate) async fn room_of(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT room_id FROM server_notice_rooms WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await
}

/// Records the user's room; the first recorded stays (`false`: another was recorded first).
pub(crate) async fn record(db: impl PgExecutor<'_>, user_id: &str, room_id: &str) -> sqlx::Result<bool> {
    let inserted =
        sqlx::query("INSERT INTO server_notice_rooms (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(user_id)
            .bind(room_id)
            .execute(db)
            .await?;
    Ok(inserted.rows_affected() == 1)
}
