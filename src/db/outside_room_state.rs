//! `outside_room_state`: the stripped state another server gave with an invitation or a knock.

use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};

pub(crate) async fn insert(conn: &mut PgConnection, event_nid: i64, stripped: &Value) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO outside_room_state (event_nid, stripped) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(event_nid)
        .bind(stripped)
        .execute(conn)
        .await?;
    Ok(())
}

/// The stripped state kept for the member event `event_nid`, if any.
pub(crate) async fn of_event(db: impl PgExecutor<'_>, event_nid: i64) -> sqlx::Result<Option<Value>> {
    sqlx::query_scalar("SELECT stripped FROM outside_room_state WHERE event_nid = $1")
        .bind(event_nid)
        .fetch_optional(db)
        .await
}
