//! The queries behind `unread_notifications` and `summary` in `/sync` (`src/sync/unread.rs`,
//! `src/sync/summary.rs`): where the user's reading stands, and the summary's facts. The
//! notifications counted are `event_push_actions` rows (`db::push_actions`).

use sqlx::{FromRow, PgExecutor};

/// Where the user's reading stands in a room: their `m.read` / `m.read.private` receipts by
/// thread (`""` unthreaded, `"main"`, or a thread root's id), and where their membership began
/// (what counts as read before any receipt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPositions {
    pub receipts: Vec<(String, i64)>,
    pub joined: i64,
}

/// The joins that read [`ReadPositions`]: `m` the user's membership rows, `r` their receipted
/// threads, for the user bound as parameter `user` (e.g. `"$2"`). Shared by the queries that
/// read positions alone and those that read them with other things.
pub(crate) fn read_positions_from(user: &str) -> String {
    format!(
        "FROM room_memberships m
         LEFT JOIN LATERAL (SELECT thread_id, MAX(event_position) AS position FROM receipts
                            WHERE room_id = m.room_id AND user_id = {user}
                              AND receipt_type IN ('m.read', 'm.read.private')
                            GROUP BY thread_id) r ON true
         WHERE m.user_id = {user}"
    )
}

/// One receipted thread of a room, or the room with no receipt, as [`read_positions_from`]
/// reads it.
#[derive(Clone, Debug, FromRow)]
pub(crate) struct ReadPositionRow {
    pub room_id: String,
    pub joined: Option<i64>,
    pub thread_id: Option<String>,
    pub position: Option<i64>,
}

/// The columns of a [`ReadPositionRow`] over [`read_positions_from`].
pub(crate) const READ_POSITION_COLUMNS: &str =
    "m.room_id, COALESCE(m.joined_position, m.stream_position) AS joined, r.thread_id, r.position";

/// Rows grouped into each room's [`ReadPositions`] (rooms without a join position are left out).
pub(crate) fn group_read_positions(
    rows: impl IntoIterator<Item = ReadPositionRow>,
) -> std::collections::HashMap<String, ReadPositions> {
    let mut positions: std::collections::HashMap<String, ReadPositions> = std::collections::HashMap::new();
    for ReadPositionRow { room_id, joined, thread_id, position } in rows {
        let Some(joined) = joined else { continue };
        let entry = positions.entry(room_id).or_insert_with(|| ReadPositions { receipts: Vec::new(), joined });
        if let (Some(thread), Some(position)) = (thread_id, position) {
            entry.receipts.push((thread, position));
        }
    }
    positions
}

/// The user's [`ReadPositions`] in each of `room_ids` where they have a membership row, in
/// one statement.
pub(crate) async fn read_positions_in(
    db: impl PgExecutor<'_>,
    room_ids: &[String],
    user_id: &str,
) -> sqlx::Result<std::collections::HashMap<String, ReadPositions>> {
    let rows: Vec<ReadPositionRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {READ_POSITION_COLUMNS} {from} AND m.room_id = ANY($1)",
        from = read_positions_from("$2")
    )))
    .bind(room_ids)
    .bind(user_id)
    .fetch_all(db)
    .await?;
    Ok(group_read_positions(rows))
}

/// What a room summary is made of, as the room is now.
#[derive(Debug, FromRow)]
pub(crate) struct SummaryFacts {
    pub joined: i64,
    pub invited: i64,
    /// Whether the room has a non-empty name or canonical alias (clients then need no heroes).
    pub named: bool,
    /// Up to the limit of joined or invited members other than the user, by user id
    /// (Synapse's choice of heroes).
    pub heroes: Vec<String>,
}

/// The room's summary facts for `user_id`, in one statement.
pub(crate) async fn summary_facts(
    db: impl PgExecutor<'_>,
    room_id: &str,
    user_id: &str,
    heroes: i64,
) -> sqlx::Result<SummaryFacts> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {}", summary_columns("$1", "$2", "$3"))))
        .bind(room_id)
        .bind(user_id)
        .bind(heroes)
        .fetch_one(db)
        .await
}

/// The columns of [`SummaryFacts`] for the room `room`, the user `user` and at most `heroes`
/// heroes (each a parameter or a column of the enclosing query).
pub(crate) fn summary_columns(room: &str, user: &str, heroes: &str) -> String {
    // The name and alias are probed by key, not joined (see `db::state` on plans).
    let non_empty = |event_type: &str, field: &str| {
        format!(
            "EXISTS (SELECT 1 FROM events e
                     WHERE e.event_nid = (SELECT cs.event_nid FROM current_state cs
                                          WHERE cs.room_id = {room} AND cs.state_key_nid =
                                              (SELECT k.state_key_nid FROM state_keys k
                                               WHERE k.event_type = '{event_type}' AND k.state_key = ''))
                       AND jsonb_typeof(e.json::jsonb -> 'content' -> '{field}') = 'string'
                       AND e.json::jsonb -> 'content' ->> '{field}' <> '')"
        )
    };
    format!(
        "(SELECT COUNT(*) FROM room_memberships WHERE room_id = {room} AND membership = 'join') AS joined,
         (SELECT COUNT(*) FROM room_memberships WHERE room_id = {room} AND membership = 'invite') AS invited,
         ({name} OR {alias}) AS named,
         ARRAY(SELECT user_id FROM room_memberships
               WHERE room_id = {room} AND user_id <> {user} AND membership IN ('join', 'invite')
               ORDER BY user_id LIMIT {heroes}) AS heroes",
        name = non_empty("m.room.name", "name"),
        alias = non_empty("m.room.canonical_alias", "alias"),
    )
}

/// Whether a state event that shapes the summary (membership, name, canonical alias) is in
/// the window `after < position <= upto`.
pub(crate) async fn summary_changed(
    db: impl PgExecutor<'_>,
    room_id: &str,
    after: i64,
    upto: i64,
) -> sqlx::Result<bool> {
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
