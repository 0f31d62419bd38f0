//! Backfill: the room's backward extremities (the gaps behind its timeline), positions for
//! backfilled events, and placing a backfilled outlier into the timeline's past.

use sqlx::{PgConnection, PgExecutor};

/// The prev events of the room's timeline events that are not in its timeline (not stored, or
/// held only as outliers; rejected ones are final), the oldest timeline events' gaps first: the
/// places history continues on another server.
pub(crate) async fn backward_extremities(
    db: impl PgExecutor<'_>,
    room_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT p.event_id, MIN(e.stream_position) AS child_position
         FROM events e
         JOIN event_edges g ON g.event_nid = e.event_nid
         JOIN event_ids p ON p.event_nid = g.prev_event_nid
         LEFT JOIN events pe ON pe.event_nid = g.prev_event_nid
         WHERE e.room_id = $1 AND e.stream_position IS NOT NULL AND NOT e.outlier AND e.rejection IS NULL
           AND (pe.event_nid IS NULL OR (pe.outlier AND pe.rejection IS NULL))
         GROUP BY p.event_id
         ORDER BY child_position ASC
         LIMIT $2",
    )
    .bind(room_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(event_id, _)| event_id).collect())
}

/// `count` positions of the backfill sequence, most negative first.
pub(crate) async fn take_positions(conn: &mut PgConnection, count: usize) -> sqlx::Result<Vec<i64>> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    let mut positions: Vec<i64> =
        sqlx::query_scalar("SELECT nextval('backfill_positions') FROM generate_series(1, $1)")
            .bind(count)
            .fetch_all(conn)
            .await?;
    positions.sort_unstable();
    Ok(positions)
}

/// Places an accepted outlier in the room's history at `position` with the state before it:
/// unlike a live event it becomes no forward extremity and leaves the current state alone.
/// False when it is not (or no longer) an unplaced, accepted outlier.
///
/// An outlier with a stream position is a membership this server learnt of from outside the
/// room (an invitation of one of its users, a knock, a rejection): that position only ever
/// told `/sync` of the membership, which has been served, and the room's history needs the
/// event in its place — the invitation is the parent of what the inviter sent before the
/// user joined, and left out it hid all of that history.
pub(crate) async fn place_backfilled(
    conn: &mut PgConnection,
    room_id: &str,
    event_nid: i64,
    position: i64,
    state_before: i64,
) -> sqlx::Result<bool> {
    let placed: Option<i64> = sqlx::query_scalar(
        "UPDATE events SET outlier = FALSE, stream_position = $3, state_before = $4, state_after = $4
         WHERE event_nid = $2 AND room_id = $1 AND outlier AND rejection IS NULL
         RETURNING event_nid",
    )
    .bind(room_id)
    .bind(event_nid)
    .bind(position)
    .bind(state_before)
    .fetch_optional(conn)
    .await?;
    Ok(placed.is_some())
}
