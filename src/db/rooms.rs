//! Rooms, memberships and idempotent-send transaction ids.

use sqlx::{FromRow, PgConnection, PgExecutor};

pub async fn insert(
    conn: &mut PgConnection,
    room_id: &str,
    room_version: &str,
    creator: &str,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO rooms (room_id, room_version, creator, created_ts) VALUES ($1, $2, $3, $4)
         ON CONFLICT (room_id) DO NOTHING",
    )
    .bind(room_id)
    .bind(room_version)
    .bind(creator)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub async fn version(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT room_version FROM rooms WHERE room_id = $1").bind(room_id).fetch_optional(db).await
}

pub async fn set_membership(
    conn: &mut PgConnection,
    room_id: &str,
    user_id: &str,
    membership: &str,
    event_nid: i64,
    stream_position: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO room_memberships (room_id, user_id, membership, event_nid, stream_position)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (room_id, user_id) DO UPDATE
           SET membership = EXCLUDED.membership, event_nid = EXCLUDED.event_nid,
               stream_position = EXCLUDED.stream_position",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(membership)
    .bind(event_nid)
    .bind(stream_position)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Clone, Debug, FromRow)]
pub struct Membership {
    pub membership: String,
    pub stream_position: i64,
}

pub async fn membership(db: impl PgExecutor<'_>, room_id: &str, user_id: &str) -> sqlx::Result<Option<Membership>> {
    sqlx::query_as("SELECT membership, stream_position FROM room_memberships WHERE room_id = $1 AND user_id = $2")
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(db)
        .await
}

/// Rooms the user is joined to.
pub async fn joined_rooms(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT room_id FROM room_memberships WHERE user_id = $1 AND membership = 'join' ORDER BY room_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// Joined members of a room.
pub async fn joined_members(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT user_id FROM room_memberships WHERE room_id = $1 AND membership = 'join' ORDER BY user_id",
    )
    .bind(room_id)
    .fetch_all(db)
    .await
}

pub async fn transaction_event(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    txn_id: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT event_id FROM event_transactions WHERE user_id = $1 AND device_id = $2 AND txn_id = $3")
        .bind(user_id)
        .bind(device_id)
        .bind(txn_id)
        .fetch_optional(db)
        .await
}

pub async fn record_transaction(
    conn: &mut PgConnection,
    user_id: &str,
    device_id: &str,
    txn_id: &str,
    event_id: &str,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO event_transactions (user_id, device_id, txn_id, event_id) VALUES ($1, $2, $3, $4)")
        .bind(user_id)
        .bind(device_id)
        .bind(txn_id)
        .bind(event_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Serialises event creation in one room across every Hearth process on this database, for
/// the rest of the caller's transaction.
pub async fn lock_room(conn: &mut PgConnection, room_id: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(room_id).execute(conn).await?;
    Ok(())
}

/// The state after the user's latest membership event in the room (e.g. when they left).
pub async fn membership_event_state_after(
    db: impl PgExecutor<'_>,
    room_id: &str,
    user_id: &str,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT e.state_after FROM room_memberships m JOIN events e ON e.event_nid = m.event_nid
         WHERE m.room_id = $1 AND m.user_id = $2",
    )
    .bind(room_id)
    .bind(user_id)
    .fetch_optional(db)
    .await
    .map(Option::flatten)
}
