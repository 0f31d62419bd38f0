//! The outbound federation queue (migration 0021): rows per (destination, event) written in
//! the event's transaction, and per (destination, EDU) in `federation_edu_queue` (migration
//! 0032, written by `federation_edu_queue`), grouped together into transactions of at most a
//! bound of each, deleted once the destination acknowledged; and per-destination delivery
//! health.

use sqlx::{FromRow, PgConnection, PgExecutor};

/// A new local event to queue: its nid and stream position, and the server of a remote user
/// it kicks or bans (who must hear of it even with no member left in the room).
pub struct Outgoing<'a> {
    pub event_nid: i64,
    pub stream_position: i64,
    pub membership_target: Option<&'a str>,
}

/// Queues `events` (new events of `room_id`, in order) for every server with a joined member
/// in the room after them — and, while the room's state is partial, every server the resident
/// named as in the room (migration 0040) — and each to its membership target's server; never
/// to `local`. One statement, which inserts nothing for a room without remote servers.
pub async fn enqueue(conn: &mut PgConnection, room_id: &str, local: &str, events: &[Outgoing<'_>]) -> sqlx::Result<()> {
    let nids: Vec<i64> = events.iter().map(|event| event.event_nid).collect();
    let positions: Vec<i64> = events.iter().map(|event| event.stream_position).collect();
    let targets: Vec<Option<&str>> = events.iter().map(|event| event.membership_target).collect();
    sqlx::query(
        "WITH servers AS (
             SELECT server_name FROM room_servers WHERE room_id = $1 AND server_name <> $5
             UNION SELECT unnest(servers_in_room) FROM partial_state_rooms WHERE room_id = $1
         )
         INSERT INTO federation_queue (destination, event_nid, stream_position)
         SELECT DISTINCT d.destination, e.nid, e.pos
         FROM unnest($2::bigint[], $3::bigint[], $4::text[]) AS e(nid, pos, target)
         CROSS JOIN LATERAL (
             SELECT server_name FROM servers WHERE server_name <> $5
             UNION SELECT e.target WHERE e.target IS NOT NULL AND e.target <> $5
         ) d(destination)",
    )
    .bind(room_id)
    .bind(&nids)
    .bind(&positions)
    .bind(&targets)
    .bind(local)
    .execute(conn)
    .await?;
    Ok(())
}

/// Destinations with anything queued (at start-up: whatever was left over), skipping
/// through the destination indexes rather than reading every row.
pub async fn destinations_with_queue(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "WITH RECURSIVE pdus(destination) AS (
             (SELECT destination FROM federation_queue ORDER BY destination LIMIT 1)
             UNION ALL
             SELECT (SELECT q.destination FROM federation_queue q WHERE q.destination > f.destination
                     ORDER BY q.destination LIMIT 1)
             FROM pdus f WHERE f.destination IS NOT NULL
         ),
         edus(destination) AS (
             (SELECT destination FROM federation_edu_queue ORDER BY destination LIMIT 1)
             UNION ALL
             SELECT (SELECT q.destination FROM federation_edu_queue q WHERE q.destination > f.destination
                     ORDER BY q.destination LIMIT 1)
             FROM edus f WHERE f.destination IS NOT NULL
         )
         SELECT destination FROM pdus WHERE destination IS NOT NULL
         UNION SELECT destination FROM edus WHERE destination IS NOT NULL",
    )
    .fetch_all(db)
    .await
}

/// Destinations with events or EDUs queued at positions in `(after, upto]`.
pub async fn destinations_queued_between(db: impl PgExecutor<'_>, after: i64, upto: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT destination FROM federation_queue WHERE stream_position > $1 AND stream_position <= $2
         UNION SELECT destination FROM federation_edu_queue WHERE stream_position > $1 AND stream_position <= $2",
    )
    .bind(after)
    .bind(upto)
    .fetch_all(db)
    .await
}

/// A transaction to (re)send: its id, its PDUs and its EDUs, oldest first.
pub struct OutgoingTransaction {
    pub txn_id: String,
    pub pdus: Vec<String>,
    pub edus: Vec<String>,
}

/// The destination's next transaction: the one formed before and not acknowledged (sent
/// again with the same id, so the destination can tell), else up to `max_pdus` of its oldest
/// queued events and `max_edus` of its oldest queued EDUs made into a new one. A new
/// transaction's id is `id_prefix` followed by the smallest queue id of each kind in it,
/// unique in this database for good. `None` when nothing is queued. The caller holds the
/// destination's delivery lock.
pub async fn next_transaction(
    conn: &mut PgConnection,
    destination: &str,
    (max_pdus, max_edus): (i64, i64),
    id_prefix: &str,
) -> sqlx::Result<Option<OutgoingTransaction>> {
    let formed: Option<String> = sqlx::query_scalar(
        "SELECT txn_id FROM (
             SELECT txn_id, stream_position FROM federation_queue WHERE destination = $1 AND txn_id IS NOT NULL
             UNION ALL
             SELECT txn_id, stream_position FROM federation_edu_queue WHERE destination = $1 AND txn_id IS NOT NULL
         ) formed ORDER BY stream_position LIMIT 1",
    )
    .bind(destination)
    .fetch_optional(&mut *conn)
    .await?;
    let txn_id = match formed {
        Some(txn_id) => txn_id,
        None => {
            // Data-modifying CTEs run whether or not the final SELECT reads them.
            let formed: Option<String> = sqlx::query_scalar(
                "WITH pdus AS (SELECT queue_id FROM federation_queue WHERE destination = $1 AND txn_id IS NULL
                               ORDER BY stream_position, queue_id LIMIT $2),
                      edus AS (SELECT queue_id FROM federation_edu_queue WHERE destination = $1 AND txn_id IS NULL
                               ORDER BY stream_position, queue_id LIMIT $3),
                      id AS (SELECT $4 || COALESCE((SELECT MIN(queue_id) FROM pdus)::text, '') || 'e'
                                    || COALESCE((SELECT MIN(queue_id) FROM edus)::text, '') AS txn_id),
                      marked_pdus AS (UPDATE federation_queue q SET txn_id = (SELECT txn_id FROM id)
                                      FROM pdus WHERE q.queue_id = pdus.queue_id),
                      marked_edus AS (UPDATE federation_edu_queue q SET txn_id = (SELECT txn_id FROM id)
                                      FROM edus WHERE q.queue_id = edus.queue_id)
                 SELECT txn_id FROM id WHERE EXISTS (SELECT 1 FROM pdus) OR EXISTS (SELECT 1 FROM edus)",
            )
            .bind(destination)
            .bind(max_pdus)
            .bind(max_edus)
            .bind(id_prefix)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(txn_id) = formed else { return Ok(None) };
            txn_id
        }
    };
    let pdus = sqlx::query_scalar(
        "SELECT e.json FROM federation_queue q JOIN events e ON e.event_nid = q.event_nid
         WHERE q.destination = $1 AND q.txn_id = $2 ORDER BY q.stream_position, q.queue_id",
    )
    .bind(destination)
    .bind(&txn_id)
    .fetch_all(&mut *conn)
    .await?;
    let edus = sqlx::query_scalar(
        "SELECT edu FROM federation_edu_queue WHERE destination = $1 AND txn_id = $2
         ORDER BY stream_position, queue_id",
    )
    .bind(destination)
    .bind(&txn_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(OutgoingTransaction { txn_id, pdus, edus }))
}

/// The destination acknowledged the transaction: its events and EDUs leave the queue, and
/// the destination counts as healthy again.
pub async fn acknowledge(db: impl PgExecutor<'_>, destination: &str, txn_id: &str, now_ms: i64) -> sqlx::Result<()> {
    sqlx::query(
        "WITH sent AS (DELETE FROM federation_queue WHERE destination = $1 AND txn_id = $2),
              sent_edus AS (DELETE FROM federation_edu_queue WHERE destination = $1 AND txn_id = $2)
         INSERT INTO federation_destinations (destination, last_success_ts) VALUES ($1, $3)
         ON CONFLICT (destination) DO UPDATE
           SET last_success_ts = $3, failing_since_ts = NULL, failures = 0, last_error = NULL,
               backoff_ms = 0, retry_at_ts = NULL",
    )
    .bind(destination)
    .bind(txn_id)
    .bind(now_ms)
    .execute(db)
    .await?;
    Ok(())
}

/// An attempt failed: the destination is to be tried again after `backoff_ms`.
pub async fn record_failure(
    db: impl PgExecutor<'_>,
    destination: &str,
    error: &str,
    backoff_ms: i64,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO federation_destinations (destination, failing_since_ts, failures, last_error, backoff_ms, retry_at_ts)
         VALUES ($1, $4, 1, $2, $3, $4 + $3)
         ON CONFLICT (destination) DO UPDATE
           SET failing_since_ts = COALESCE(federation_destinations.failing_since_ts, $4),
               failures = federation_destinations.failures + 1, last_error = $2,
               backoff_ms = $3, retry_at_ts = $4 + $3",
    )
    .bind(destination)
    .bind(error)
    .bind(backoff_ms)
    .bind(now_ms)
    .execute(db)
    .await?;
    Ok(())
}

/// Where a destination's backoff stands: the current interval and when the next attempt is
/// due (ms), if it is failing.
#[derive(Debug, FromRow)]
pub struct Backoff {
    pub backoff_ms: i64,
    pub retry_at_ts: i64,
}

pub async fn backoff(db: impl PgExecutor<'_>, destination: &str) -> sqlx::Result<Option<Backoff>> {
    sqlx::query_as(
        "SELECT backoff_ms, retry_at_ts FROM federation_destinations
         WHERE destination = $1 AND retry_at_ts IS NOT NULL",
    )
    .bind(destination)
    .fetch_optional(db)
    .await
}

/// The operator's view of one destination (`federation_destination_status`).
#[derive(Debug, FromRow)]
pub struct DestinationStatus {
    pub destination: String,
    pub depth: i64,
    pub last_success_ts: Option<i64>,
    pub failing_since_ts: Option<i64>,
    pub failures: Option<i32>,
    pub last_error: Option<String>,
    pub backoff_ms: Option<i64>,
    pub retry_at_ts: Option<i64>,
}

pub async fn status(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<DestinationStatus>> {
    sqlx::query_as(
        "SELECT destination, depth, last_success_ts, failing_since_ts, failures, last_error, backoff_ms, retry_at_ts
         FROM federation_destination_status ORDER BY destination",
    )
    .fetch_all(db)
    .await
}
