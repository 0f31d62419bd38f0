//! Removing a room's rows: the whole room (an admin's purge after a shutdown) or the timeline
//! events before a point (`purge_history`). Both run inside the caller's transaction, under the
//! room's send lock, so a purge commits whole and never races an event being appended.

use sqlx::{PgConnection, PgExecutor};

/// How a table's rows of one room are found: by its `room_id` column, or by event number
/// (tables without the room's id; the numbers are collected first so each delete is a key
/// lookup).
#[derive(Clone, Copy)]
enum RoomKey {
    RoomId,
    EventNid,
    /// `state_snapshot_entries`: by the room's snapshots.
    Snapshot,
}
use RoomKey::{EventNid, RoomId};

/// Every table holding rows of one room, ordered so that rows are deleted before the rows they
/// reference.
const ROOM_ROWS: &[(&str, RoomKey)] = &[
    ("federation_queue", EventNid),
    // A purged room can no longer carry a user's server notices: the next notice makes a new one.
    // (The tip ledger keeps its rows: they are payment records, not room content.)
    ("server_notice_rooms", RoomId),
    ("event_push_actions", RoomId),
    ("event_edges", EventNid),
    ("event_auth_edges", EventNid),
    ("forward_extremities", RoomId),
    ("partial_state_rooms", RoomId),
    ("partial_state_completed", RoomId),
    ("current_state", RoomId),
    ("room_memberships", RoomId),
    ("room_servers", RoomId),
    ("redactions", RoomId),
    ("event_relations", RoomId),
    ("receipts", RoomId),
    ("typing", RoomId),
    ("event_transactions", RoomId),
    // Room account data and tags of every user.
    ("account_data", RoomId),
    ("state_snapshot_entries", RoomKey::Snapshot),
    ("state_snapshots", RoomId),
    ("events", RoomId),
    // Interned ids of the room's events; ids only heard of (prev events never fetched) stay, as
    // they may be shared with nothing else but cost a row each.
    ("event_ids", EventNid),
    ("rooms", RoomId),
];

/// Deletes every row of the room (events, state, memberships, receipts, push actions,
/// relations, room account data, the room itself). Kept: `blocked_rooms` (the block must
/// outlive the room), `room_deletions` (its status) and abuse reports (moderation history).
/// Returns the number of events removed.
pub(crate) async fn purge_room(conn: &mut PgConnection, room_id: &str) -> sqlx::Result<u64> {
    super::rooms::lock_room(conn, room_id).await?;
    let event_nids: Vec<i64> = sqlx::query_scalar("SELECT event_nid FROM events WHERE room_id = $1")
        .bind(room_id)
        .fetch_all(&mut *conn)
        .await?;
    for (table, key) in ROOM_ROWS {
        let delete = match key {
            RoomId => sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE room_id = $1"))).bind(room_id),
            EventNid => sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE event_nid = ANY($1)")))
                .bind(&event_nids),
            RoomKey::Snapshot => sqlx::query(
                "DELETE FROM state_snapshot_entries
                 WHERE snapshot_id IN (SELECT snapshot_id FROM state_snapshots WHERE room_id = $1)",
            )
            .bind(room_id),
        };
        delete.execute(&mut *conn).await?;
    }
    Ok(u64::try_from(event_nids.len()).unwrap_or(u64::MAX))
}

/// The stream position of the room's timeline event `event_id` (None for an event of another
/// room, an outlier, or one not stored).
pub(crate) async fn timeline_position(
    db: impl PgExecutor<'_>,
    room_id: &str,
    event_id: &str,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT e.stream_position FROM event_ids i JOIN events e ON e.event_nid = i.event_nid
         WHERE i.event_id = $1 AND e.room_id = $2 AND e.stream_position IS NOT NULL",
    )
    .bind(event_id)
    .bind(room_id)
    .fetch_optional(db)
    .await
}

/// The position of the room's first timeline event sent at or after `ts` (None when every
/// event is older).
pub(crate) async fn first_position_since(db: impl PgExecutor<'_>, room_id: &str, ts: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT min(stream_position) FROM events
         WHERE room_id = $1 AND origin_server_ts >= $2 AND stream_position IS NOT NULL",
    )
    .bind(room_id)
    .bind(ts)
    .fetch_one(db)
    .await
}

/// Deletes the room's timeline events before `before_position`, as Synapse's history purge
/// does: state events stay (the room's state and every event's auth chain need them), and so
/// do the room's forward extremities (the next event's prev_events), redactions (without them
/// a kept state event would lose its redaction), and, when `keep_from_server` is given, the
/// events its users sent (they may be the only copy). Interned ids stay: kept events name the
/// deleted ones as prev_events. Returns the number of events deleted.
pub(crate) async fn purge_history(
    conn: &mut PgConnection,
    room_id: &str,
    before_position: i64,
    keep_from_server: Option<&str>,
) -> sqlx::Result<u64> {
    super::rooms::lock_room(conn, room_id).await?;
    let event_nids: Vec<i64> = sqlx::query_scalar(
        "SELECT e.event_nid FROM events e
         WHERE e.room_id = $1 AND e.stream_position < $2 AND e.state_key_nid IS NULL
           AND e.event_type <> 'm.room.redaction'
           AND NOT EXISTS (SELECT 1 FROM forward_extremities f WHERE f.event_nid = e.event_nid)
           AND ($3::TEXT IS NULL OR substr(e.sender, strpos(e.sender, ':') + 1) <> $3)",
    )
    .bind(room_id)
    .bind(before_position)
    .bind(keep_from_server)
    .fetch_all(&mut *conn)
    .await?;
    for table in
        ["federation_queue", "event_push_actions", "event_edges", "event_auth_edges", "event_relations", "events"]
    {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE event_nid = ANY($1)")))
            .bind(&event_nids)
            .execute(&mut *conn)
            .await?;
    }
    Ok(u64::try_from(event_nids.len()).unwrap_or(u64::MAX))
}

/// One background history purge, as its status endpoint shows it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub(crate) struct HistoryPurge {
    pub status: String,
    pub error: Option<String>,
}

pub(crate) async fn set_history_purge_status(
    db: impl PgExecutor<'_>,
    purge_id: &str,
    status: &str,
    error: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE history_purges SET status = $2, error = $3 WHERE purge_id = $1")
        .bind(purge_id)
        .bind(status)
        .bind(error)
        .execute(db)
        .await?;
    Ok(())
}

pub(crate) async fn history_purge(db: impl PgExecutor<'_>, purge_id: &str) -> sqlx::Result<Option<HistoryPurge>> {
    sqlx::query_as("SELECT status, error FROM history_purges WHERE purge_id = $1")
        .bind(purge_id)
        .fetch_optional(db)
        .await
}
