//! Rooms joined with a partial state (migration 0040), until their full state is fetched.

use sqlx::{FromRow, PgConnection, PgExecutor};

#[derive(Debug, Clone, FromRow)]
pub(crate) struct PartialStateRoom {
    pub room_id: String,
    pub join_event_id: String,
    /// The resident server first.
    pub servers_in_room: Vec<String>,
    /// The second key of the room's resync lock: `hashtext(room_id)`.
    pub lock_key: i32,
}

/// Records `room_id` as partial (joined again with a partial state: the newer join).
pub(crate) async fn insert(
    conn: &mut PgConnection,
    room_id: &str,
    join_event_id: &str,
    servers_in_room: &[String],
    joined_ts: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO partial_state_rooms (room_id, join_event_id, servers_in_room, joined_ts)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (room_id) DO UPDATE SET join_event_id = EXCLUDED.join_event_id,
             servers_in_room = EXCLUDED.servers_in_room, joined_ts = EXCLUDED.joined_ts",
    )
    .bind(room_id)
    .bind(join_event_id)
    .bind(servers_in_room)
    .bind(joined_ts)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every partial room, the oldest join first.
pub(crate) async fn all(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<PartialStateRoom>> {
    sqlx::query_as(
        "SELECT room_id, join_event_id, servers_in_room, joined_ts, hashtext(room_id) AS lock_key FROM partial_state_rooms ORDER BY joined_ts",
    )
    .fetch_all(db)
    .await
}

pub(crate) async fn get(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<Option<PartialStateRoom>> {
    sqlx::query_as(
        "SELECT room_id, join_event_id, servers_in_room, joined_ts, hashtext(room_id) AS lock_key FROM partial_state_rooms WHERE room_id = $1",
    )
    .bind(room_id)
    .fetch_optional(db)
    .await
}

pub(crate) async fn is_partial(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM partial_state_rooms WHERE room_id = $1)")
        .bind(room_id)
        .fetch_one(db)
        .await
}

/// Clears the flag, if it is still for `join_event_id` (a later partial join stays partial).
pub(crate) async fn remove(conn: &mut PgConnection, room_id: &str, join_event_id: &str) -> sqlx::Result<bool> {
    let removed = sqlx::query("DELETE FROM partial_state_rooms WHERE room_id = $1 AND join_event_id = $2")
        .bind(room_id)
        .bind(join_event_id)
        .execute(conn)
        .await?;
    Ok(removed.rows_affected() == 1)
}

/// Records that `room_id` got its full state at `position` (the completion's transaction).
pub(crate) async fn record_completion(conn: &mut PgConnection, room_id: &str, position: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO partial_state_completed (room_id, stream_position) VALUES ($1, $2)
         ON CONFLICT (room_id) DO UPDATE SET stream_position = EXCLUDED.stream_position",
    )
    .bind(room_id)
    .bind(position)
    .execute(conn)
    .await?;
    Ok(())
}

/// A timeline event placed since a partial join.
#[derive(Debug, FromRow)]
pub(crate) struct PlacedEvent {
    pub event_nid: i64,
    pub event_id: String,
    pub json: String,
}

/// The accepted timeline events of `room_id` from the one at `from_position` on (the join),
/// in stream order.
pub(crate) async fn timeline_from(
    db: impl PgExecutor<'_>,
    room_id: &str,
    from_position: i64,
) -> sqlx::Result<Vec<PlacedEvent>> {
    sqlx::query_as(
        "SELECT e.event_nid, i.event_id, e.json
         FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
         WHERE e.room_id = $1 AND e.stream_position >= $2 AND NOT e.outlier AND e.rejection IS NULL
         ORDER BY e.stream_position",
    )
    .bind(room_id)
    .bind(from_position)
    .fetch_all(db)
    .await
}

/// Re-places a timeline event on a recomputed state (the resync of a partial room).
pub(crate) async fn set_states(conn: &mut PgConnection, event_nid: i64, before: i64, after: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE events SET state_before = $2, state_after = $3 WHERE event_nid = $1")
        .bind(event_nid)
        .bind(before)
        .bind(after)
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks a timeline event rejected on the full state: it stays where it is (clients saw it)
/// but changes no state and authorises nothing.
pub(crate) async fn reject(conn: &mut PgConnection, event_nid: i64, reason: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE events SET rejection = $2 WHERE event_nid = $1")
        .bind(event_nid)
        .bind(reason)
        .execute(conn)
        .await?;
    Ok(())
}
