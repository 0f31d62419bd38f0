//! Removing a room's rows: the whole room (an admin's purge after a shutdown) or the timeline
//! events before a point (`purge_history`). Both run inside the caller's transaction, under the
//! room's send lock, so a purge commits whole and never races an event being appended.

use sqlx::PgConnection;

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
    ("event_push_actions", RoomId),
    ("event_edges", EventNid),
    ("event_auth_edges", EventNid),
    ("forward_extremities", RoomId),
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
pub async fn purge_room(conn: &mut PgConnection, room_id: &str) -> sqlx::Result<u64> {
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
