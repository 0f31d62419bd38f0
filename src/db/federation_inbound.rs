//! Inbound federation's storage: events stored outside a room's timeline (outliers, soft-failed
//! events), what is known of events a PDU cites, and the transactions remote servers sent.

use sqlx::{FromRow, PgConnection, PgExecutor};

/// An event stored beside the timeline: no stream position, not a forward extremity.
pub struct UnplacedEvent<'a> {
    pub event_id: &'a str,
    pub room_id: &'a str,
    pub event_type: &'a str,
    pub state_key_nid: Option<i64>,
    pub sender: &'a str,
    pub origin_server_ts: i64,
    pub depth: i64,
    /// An outlier: its state is unknown.
    pub outlier: bool,
    /// Passed auth against the state before it but not against the current state.
    pub soft_failed: bool,
    /// Why it failed auth, for an event stored as rejected.
    pub rejection: Option<&'a str>,
    pub state_before: Option<i64>,
    pub state_after: Option<i64>,
    pub json: &'a str,
    pub prev_event_ids: &'a [String],
    pub auth_event_ids: &'a [String],
}

/// Stores an event beside the timeline with its edges; an event stored already is left as it
/// is. Returns its number.
pub async fn insert_unplaced(conn: &mut PgConnection, event: &UnplacedEvent<'_>) -> sqlx::Result<i64> {
    let all_ids: Vec<String> =
        std::iter::once(event.event_id.to_owned()).chain(event.prev_event_ids.iter().cloned()).collect();
    // Cited events may be unknown: their ids are interned so the edges can point at them.
    crate::db::events::intern_event_ids(&mut *conn, &all_ids).await?;
    sqlx::query_scalar(
        "WITH id AS (
             SELECT event_nid FROM event_ids WHERE event_id = $1
         ), event AS (
             INSERT INTO events (event_nid, room_id, event_type, state_key_nid, sender, origin_server_ts, depth,
                                 outlier, soft_failed, state_before, state_after, json, rejection)
             SELECT event_nid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $15 FROM id
             ON CONFLICT (event_nid) DO NOTHING
             RETURNING event_nid
         ), prev AS (
             INSERT INTO event_edges (event_nid, prev_event_nid)
             SELECT event.event_nid, p.event_nid FROM event, event_ids p WHERE p.event_id = ANY($13::text[])
         ), auth AS (
             INSERT INTO event_auth_edges (event_nid, auth_event_nid)
             SELECT event.event_nid, a.event_nid FROM event, event_ids a WHERE a.event_id = ANY($14::text[])
         )
         SELECT event_nid FROM id",
    )
    .bind(event.event_id)
    .bind(event.room_id)
    .bind(event.event_type)
    .bind(event.state_key_nid)
    .bind(event.sender)
    .bind(event.origin_server_ts)
    .bind(event.depth)
    .bind(event.outlier)
    .bind(event.soft_failed)
    .bind(event.state_before)
    .bind(event.state_after)
    .bind(event.json)
    .bind(event.prev_event_ids)
    .bind(event.auth_event_ids)
    .bind(event.rejection)
    .fetch_one(conn)
    .await
}

/// What is stored of an event a PDU cites.
#[derive(Clone, Debug, FromRow)]
pub struct KnownEvent {
    pub event_nid: i64,
    pub event_id: String,
    pub room_id: String,
    pub depth: i64,
    pub outlier: bool,
    pub rejected: bool,
    pub soft_failed: bool,
    pub state_after: Option<i64>,
    pub json: String,
}

/// The stored events among `event_ids` (those not stored are absent).
pub async fn known_events(db: impl PgExecutor<'_>, event_ids: &[String]) -> sqlx::Result<Vec<KnownEvent>> {
    sqlx::query_as(
        "SELECT e.event_nid, i.event_id, e.room_id, e.depth, e.outlier, e.rejection IS NOT NULL AS rejected,
                e.soft_failed, e.state_after, e.json
         FROM event_ids i JOIN events e ON e.event_nid = i.event_nid
         WHERE i.event_id = ANY($1)",
    )
    .bind(event_ids)
    .fetch_all(db)
    .await
}

/// A stored, accepted state event: its number and its `(type, state_key)`'s.
#[derive(Clone, Debug, FromRow)]
pub struct StateEventEntry {
    pub event_nid: i64,
    pub state_key_nid: i64,
}

/// The stored, not rejected state events among `event_ids` (the others are absent).
pub async fn state_entries_of(db: impl PgExecutor<'_>, event_ids: &[String]) -> sqlx::Result<Vec<StateEventEntry>> {
    sqlx::query_as(
        "SELECT e.event_nid, e.state_key_nid FROM event_ids i JOIN events e ON e.event_nid = i.event_nid
         WHERE i.event_id = ANY($1) AND e.state_key_nid IS NOT NULL AND e.rejection IS NULL",
    )
    .bind(event_ids)
    .fetch_all(db)
    .await
}

/// The answer given to a transaction `origin` sent before under `txn_id`, if any.
pub async fn txn_response(db: impl PgExecutor<'_>, origin: &str, txn_id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT response FROM federation_inbound_txns WHERE origin = $1 AND txn_id = $2")
        .bind(origin)
        .bind(txn_id)
        .fetch_optional(db)
        .await
}

/// Remembers the answer to a processed transaction (the first answer stands).
pub async fn record_txn(
    db: impl PgExecutor<'_>,
    origin: &str,
    txn_id: &str,
    response: &str,
    received_ts: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO federation_inbound_txns (origin, txn_id, response, received_ts) VALUES ($1, $2, $3, $4)
         ON CONFLICT (origin, txn_id) DO NOTHING",
    )
    .bind(origin)
    .bind(txn_id)
    .bind(response)
    .bind(received_ts)
    .execute(db)
    .await?;
    Ok(())
}

/// An event as other servers are served it.
#[derive(Clone, Debug, FromRow)]
pub struct ServableEvent {
    pub event_nid: i64,
    pub event_id: String,
    pub room_id: String,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub outlier: bool,
    pub state_before: Option<i64>,
    pub state_after: Option<i64>,
    pub json: String,
}

const SERVABLE_COLUMNS: &str =
    "e.event_nid, i.event_id, e.room_id, e.depth, e.origin_server_ts, e.outlier, e.state_before, e.state_after, e.json";

/// The stored, not rejected events among `event_ids`.
pub async fn servable_events(db: impl PgExecutor<'_>, event_ids: &[String]) -> sqlx::Result<Vec<ServableEvent>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SERVABLE_COLUMNS} FROM event_ids i JOIN events e ON e.event_nid = i.event_nid
         WHERE i.event_id = ANY($1) AND e.rejection IS NULL"
    )))
    .bind(event_ids)
    .fetch_all(db)
    .await
}

/// The stored, not rejected parents (`prev_events`) of the events `nids`.
pub async fn servable_parents(db: impl PgExecutor<'_>, nids: &[i64]) -> sqlx::Result<Vec<ServableEvent>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT {SERVABLE_COLUMNS} FROM event_edges g
         JOIN events e ON e.event_nid = g.prev_event_nid JOIN event_ids i ON i.event_nid = e.event_nid
         WHERE g.event_nid = ANY($1) AND e.rejection IS NULL"
    )))
    .bind(nids)
    .fetch_all(db)
    .await
}

/// Whether a user of `server` is joined to the room now.
pub async fn server_joined(db: impl PgExecutor<'_>, room_id: &str, server: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM room_memberships
                        WHERE room_id = $1 AND membership = 'join' AND right(user_id, length($2) + 1) = ':' || $2)",
    )
    .bind(room_id)
    .bind(server)
    .fetch_one(db)
    .await
}

/// The timeline event of the room closest to `ts` in the direction asked (`forwards`: the
/// first at or after it; else the last at or before it): its id and timestamp.
pub async fn closest_to_ts(
    db: impl PgExecutor<'_>,
    room_id: &str,
    ts: i64,
    forwards: bool,
) -> sqlx::Result<Option<(String, i64)>> {
    let (condition, order) = if forwards { (">=", "ASC") } else { ("<=", "DESC") };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT i.event_id, e.origin_server_ts FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
         WHERE e.room_id = $1 AND e.origin_server_ts {condition} $2
           AND e.rejection IS NULL AND NOT e.soft_failed AND NOT e.outlier
         ORDER BY e.origin_server_ts {order}, e.stream_position {order} LIMIT 1"
    )))
    .bind(room_id)
    .bind(ts)
    .fetch_optional(db)
    .await
}
