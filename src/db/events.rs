//! The event store: interned ids, immutable event JSON with its query columns, DAG edges and
//! forward extremities.

use sqlx::{FromRow, PgConnection, PgExecutor};

/// Interns event ids (existing ids keep their number) and returns their numbers in order.
pub async fn intern_event_ids(conn: &mut PgConnection, event_ids: &[String]) -> sqlx::Result<Vec<i64>> {
    if event_ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query("INSERT INTO event_ids (event_id) SELECT unnest($1::text[]) ON CONFLICT (event_id) DO NOTHING")
        .bind(event_ids)
        .execute(&mut *conn)
        .await?;
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT event_id, event_nid FROM event_ids WHERE event_id = ANY($1)")
        .bind(event_ids)
        .fetch_all(&mut *conn)
        .await?;
    Ok(event_ids.iter().map(|id| rows.iter().find(|(known, _)| known == id).map_or(0, |(_, nid)| *nid)).collect())
}

pub struct NewEvent<'a> {
    pub event_nid: i64,
    pub room_id: &'a str,
    pub event_type: &'a str,
    pub state_key_nid: Option<i64>,
    pub sender: &'a str,
    pub origin_server_ts: i64,
    pub depth: i64,
    pub stream_position: i64,
    pub state_before: i64,
    pub state_after: i64,
    pub json: &'a str,
}

pub async fn insert(conn: &mut PgConnection, event: &NewEvent<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO events (event_nid, room_id, event_type, state_key_nid, sender, origin_server_ts, depth,
                             stream_position, state_before, state_after, json)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(event.event_nid)
    .bind(event.room_id)
    .bind(event.event_type)
    .bind(event.state_key_nid)
    .bind(event.sender)
    .bind(event.origin_server_ts)
    .bind(event.depth)
    .bind(event.stream_position)
    .bind(event.state_before)
    .bind(event.state_after)
    .bind(event.json)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn insert_edges(conn: &mut PgConnection, event_nid: i64, prev: &[i64], auth: &[i64]) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO event_edges (event_nid, prev_event_nid) SELECT $1, unnest($2::bigint[])")
        .bind(event_nid)
        .bind(prev)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO event_auth_edges (event_nid, auth_event_nid) SELECT $1, unnest($2::bigint[])")
        .bind(event_nid)
        .bind(auth)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Takes the next position in the global stream.
pub async fn next_stream_position(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT nextval('stream_positions')").fetch_one(conn).await
}

#[derive(Clone, Debug, FromRow)]
pub struct Extremity {
    pub event_nid: i64,
    pub event_id: String,
    pub depth: i64,
    pub state_after: i64,
}

/// The room's forward extremities, deepest first.
pub async fn forward_extremities(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<Vec<Extremity>> {
    sqlx::query_as(
        "SELECT e.event_nid, i.event_id, e.depth, e.state_after
         FROM forward_extremities f
         JOIN events e ON e.event_nid = f.event_nid
         JOIN event_ids i ON i.event_nid = f.event_nid
         WHERE f.room_id = $1
         ORDER BY e.depth DESC, e.stream_position DESC",
    )
    .bind(room_id)
    .fetch_all(db)
    .await
}

/// The new event replaces the extremities it references.
pub async fn advance_forward_extremities(
    conn: &mut PgConnection,
    room_id: &str,
    replaced: &[i64],
    new: i64,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM forward_extremities WHERE room_id = $1 AND event_nid = ANY($2)")
        .bind(room_id)
        .bind(replaced)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO forward_extremities (room_id, event_nid) VALUES ($1, $2)")
        .bind(room_id)
        .bind(new)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// An event as stored, with what readers need beside its JSON.
#[derive(Clone, Debug, FromRow)]
pub struct StoredEvent {
    pub event_nid: i64,
    pub event_id: String,
    pub room_id: String,
    pub stream_position: Option<i64>,
    pub depth: i64,
    pub state_before: Option<i64>,
    pub json: String,
}

pub(crate) const STORED_EVENT_COLUMNS: &str =
    "e.event_nid, i.event_id, e.room_id, e.stream_position, e.depth, e.state_before, e.json";

pub async fn by_id(db: impl PgExecutor<'_>, event_id: &str) -> sqlx::Result<Option<StoredEvent>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {STORED_EVENT_COLUMNS} FROM event_ids i JOIN events e ON e.event_nid = i.event_nid
         WHERE i.event_id = $1 AND e.rejection IS NULL"
    )))
    .bind(event_id)
    .fetch_optional(db)
    .await
}

pub async fn by_nids(db: impl PgExecutor<'_>, nids: &[i64]) -> sqlx::Result<Vec<StoredEvent>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {STORED_EVENT_COLUMNS} FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
         WHERE e.event_nid = ANY($1)"
    )))
    .bind(nids)
    .fetch_all(db)
    .await
}

/// Timeline events of a room between two stream positions, in either direction.
pub async fn timeline_page(
    db: impl PgExecutor<'_>,
    room_id: &str,
    from: i64,
    backwards: bool,
    to: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    let sql = if backwards {
        format!(
            "SELECT {STORED_EVENT_COLUMNS} FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
             WHERE e.room_id = $1 AND e.stream_position <= $2 AND e.stream_position > COALESCE($3, 0)
               AND e.rejection IS NULL AND NOT e.soft_failed AND NOT e.outlier
             ORDER BY e.stream_position DESC LIMIT $4"
        )
    } else {
        format!(
            "SELECT {STORED_EVENT_COLUMNS} FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
             WHERE e.room_id = $1 AND e.stream_position > $2 AND ($3::bigint IS NULL OR e.stream_position <= $3)
               AND e.rejection IS NULL AND NOT e.soft_failed AND NOT e.outlier
             ORDER BY e.stream_position ASC LIMIT $4"
        )
    };
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(room_id).bind(from).bind(to).bind(limit).fetch_all(db).await
}

/// The highest stream position handed out so far (for pagination tokens).
pub async fn max_stream_position(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COALESCE(MAX(stream_position), 0) FROM events").fetch_one(db).await
}

pub async fn set_state_after(conn: &mut PgConnection, event_nid: i64, snapshot_id: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE events SET state_after = $2 WHERE event_nid = $1")
        .bind(event_nid)
        .bind(snapshot_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The state snapshot after an event (`None` for outliers).
pub async fn state_after(db: impl PgExecutor<'_>, event_nid: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT state_after FROM events WHERE event_nid = $1")
        .bind(event_nid)
        .fetch_optional(db)
        .await
        .map(Option::flatten)
}

/// Every stored event of a room (timeline and outliers), oldest first.
pub async fn all_in_room(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<Vec<StoredEvent>> {
    sqlx::query_as(
        "SELECT e.event_nid, i.event_id, e.room_id, e.stream_position, e.depth, e.state_before, e.json
         FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
         WHERE e.room_id = $1 ORDER BY e.stream_position",
    )
    .bind(room_id)
    .fetch_all(db)
    .await
}
