//! The queries behind `unread_notifications` and `summary` in `/sync` (`src/sync/unread.rs`,
//! `src/sync/summary.rs`). Counts are computed on demand from the room's events: no push
//! actions are stored, so there is nothing to keep in step when receipts move.

use sqlx::{FromRow, PgExecutor};

/// Event types that one of the default push rules can make notify (spec: "Default Rules");
/// anything else never counts, so it is not even read.
pub const NOTIFYING_TYPES: [&str; 7] = [
    "m.room.message",
    "m.room.encrypted",
    "m.room.member",
    "m.room.tombstone",
    "m.call.invite",
    "m.poll.start",
    "m.poll.end",
];

/// Where the user's reading stands in a room: their `m.read` / `m.read.private` receipts by
/// thread (`""` unthreaded, `"main"`, or a thread root's id), and where their membership began
/// (what counts as read before any receipt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPositions {
    pub receipts: Vec<(String, i64)>,
    pub joined: i64,
}

/// `None` if the user has no membership row in the room at all.
pub async fn read_positions(
    db: impl PgExecutor<'_>,
    room_id: &str,
    user_id: &str,
) -> sqlx::Result<Option<ReadPositions>> {
    // One row per receipted thread, or one row with no receipt: the membership row joined
    // with the receipts grouped by thread.
    let rows: Vec<(Option<i64>, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT COALESCE(m.joined_position, m.stream_position), r.thread_id, r.position
         FROM room_memberships m
         LEFT JOIN (SELECT thread_id, MAX(event_position) AS position FROM receipts
                    WHERE room_id = $1 AND user_id = $2 AND receipt_type IN ('m.read', 'm.read.private')
                    GROUP BY thread_id) r ON true
         WHERE m.room_id = $1 AND m.user_id = $2",
    )
    .bind(room_id)
    .bind(user_id)
    .fetch_all(db)
    .await?;
    let Some(joined) = rows.first().and_then(|(joined, _, _)| *joined) else { return Ok(None) };
    let receipts = rows.into_iter().filter_map(|(_, thread, position)| Some((thread?, position?))).collect();
    Ok(Some(ReadPositions { receipts, joined }))
}

/// A candidate for the counts: an event of another user after the read position.
#[derive(Clone, Debug, FromRow)]
pub struct UnreadEvent {
    pub event_id: String,
    pub json: String,
    pub stream_position: i64,
    /// The root of the thread the event is in (`m.thread` relation); `None` for the main
    /// timeline, thread roots included.
    pub thread_root: Option<String>,
}

/// The newest (at most `limit`) events of the room with `after < position <= upto` whose type
/// can notify and whose sender is not `user_id` (one's own events never count). Of member
/// events only those about `user_id`: no default rule notifies of anyone else's.
pub async fn unread_events(
    db: impl PgExecutor<'_>,
    room_id: &str,
    user_id: &str,
    after: i64,
    upto: i64,
    limit: i64,
) -> sqlx::Result<Vec<UnreadEvent>> {
    sqlx::query_as(
        "SELECT i.event_id, e.json, e.stream_position, root.event_id AS thread_root
         FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
         LEFT JOIN event_relations r ON r.event_nid = e.event_nid AND r.rel_type = 'm.thread'
         LEFT JOIN event_ids root ON root.event_nid = r.parent_nid
         WHERE e.room_id = $1 AND e.stream_position > $3 AND e.stream_position <= $4
           AND e.sender <> $2 AND e.event_type = ANY($5)
           AND (e.event_type <> 'm.room.member' OR e.state_key_nid =
                (SELECT k.state_key_nid FROM state_keys k WHERE k.event_type = 'm.room.member' AND k.state_key = $2))
           AND e.rejection IS NULL AND NOT e.soft_failed AND NOT e.outlier
         ORDER BY e.stream_position DESC LIMIT $6",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(after)
    .bind(upto)
    .bind(&NOTIFYING_TYPES[..])
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Joined and invited members of the room, as `room_memberships` holds them now.
pub async fn member_counts(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE membership = 'join'), COUNT(*) FILTER (WHERE membership = 'invite')
         FROM room_memberships WHERE room_id = $1",
    )
    .bind(room_id)
    .fetch_one(db)
    .await
}

/// The room's joined members, counted up to `cap` (cheap in a big room, where only "more
/// than a few" matters).
pub async fn joined_count_up_to(db: impl PgExecutor<'_>, room_id: &str, cap: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM (
             SELECT 1 FROM room_memberships WHERE room_id = $1 AND membership = 'join' LIMIT $2
         ) joined",
    )
    .bind(room_id)
    .bind(cap)
    .fetch_one(db)
    .await
}

/// Up to `limit` joined or invited members other than `user_id`, by user id (Synapse's
/// choice of heroes).
pub async fn heroes(db: impl PgExecutor<'_>, room_id: &str, user_id: &str, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT user_id FROM room_memberships
         WHERE room_id = $1 AND user_id <> $2 AND membership IN ('join', 'invite')
         ORDER BY user_id LIMIT $3",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Whether a state event that shapes the summary (membership, name, canonical alias) is in
/// the window `after < position <= upto`.
pub async fn summary_changed(db: impl PgExecutor<'_>, room_id: &str, after: i64, upto: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (
             SELECT 1 FROM events
             WHERE room_id = $1 AND stream_position > $2 AND stream_position <= $3
               AND state_key_nid IS NOT NULL
               AND event_type IN ('m.room.member', 'm.room.name', 'm.room.canonical_alias')
               AND rejection IS NULL AND NOT soft_failed AND NOT outlier)",
    )
    .bind(room_id)
    .bind(after)
    .bind(upto)
    .fetch_one(db)
    .await
}
