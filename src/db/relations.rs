//! Redactions and event relationships: what is recorded when an event is stored, and the
//! queries behind redacted reads, `/relations`, `/threads`, bundled aggregations and
//! `timestamp_to_event`.

use crate::db::events::{STORED_EVENT_COLUMNS, StoredEvent};
use sqlx::{FromRow, PgConnection, PgExecutor};

/// SQL condition, over an `event_relations` row aliased `r`: the child has not been redacted.
/// A redacted child loses its `m.relates_to`, so the relationship is broken (spec:
/// "Aggregations of child events"); the row stays, derived data is never the only copy.
const CHILD_NOT_REDACTED: &str = "NOT EXISTS (
    SELECT 1 FROM redactions x JOIN events xe ON xe.event_nid = x.redaction_nid
    WHERE x.redacts_nid = r.event_nid AND x.room_id = r.room_id
      AND xe.rejection IS NULL AND NOT xe.soft_failed)";

/// SQL condition over an `events` row aliased `e`: part of the room's visible timeline.
const IN_TIMELINE: &str = "e.rejection IS NULL AND NOT e.soft_failed AND NOT e.outlier";

pub(crate) async fn insert_redaction(
    conn: &mut PgConnection,
    redaction_nid: i64,
    room_id: &str,
    redacts_nid: i64,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO redactions (redaction_nid, room_id, redacts_nid) VALUES ($1, $2, $3)")
        .bind(redaction_nid)
        .bind(room_id)
        .bind(redacts_nid)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) struct NewRelation<'a> {
    pub event_nid: i64,
    pub room_id: &'a str,
    pub parent_nid: i64,
    pub rel_type: &'a str,
    pub event_type: &'a str,
    pub sender: &'a str,
    pub aggregation_key: Option<&'a str>,
}

pub(crate) async fn insert_relation(conn: &mut PgConnection, relation: &NewRelation<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO event_relations (event_nid, room_id, parent_nid, rel_type, event_type, sender, aggregation_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(relation.event_nid)
    .bind(relation.room_id)
    .bind(relation.parent_nid)
    .bind(relation.rel_type)
    .bind(relation.event_type)
    .bind(relation.sender)
    .bind(relation.aggregation_key)
    .execute(conn)
    .await?;
    Ok(())
}

/// A stored event together with the event it belongs to (the redacted event, or the parent
/// of a relation).
#[derive(Clone, Debug, FromRow)]
pub(crate) struct Related {
    pub target_nid: i64,
    #[sqlx(flatten)]
    pub event: StoredEvent,
}

/// The `FROM … LIMIT 1` of a subquery whose one row (`e` the redaction's event, `i` its id) is
/// the redaction that applies to the event numbered `target` (an SQL expression): the earliest
/// accepted one in the target's own room. Per target, an index probe (the LIMIT keeps the
/// planner from turning it into a join, which a plan prepared on small tables did over all of
/// `events`: 0.23 ms for no rows).
pub(crate) fn applying_redaction(target: &str) -> String {
    format!(
        "FROM redactions r
         JOIN events e ON e.event_nid = r.redaction_nid
         JOIN event_ids i ON i.event_nid = e.event_nid
         WHERE r.redacts_nid = {target}
           AND r.room_id = (SELECT target.room_id FROM events target WHERE target.event_nid = {target})
           AND e.rejection IS NULL AND NOT e.soft_failed
         ORDER BY e.stream_position LIMIT 1"
    )
}

/// The redaction that applies to each of `targets`: the earliest accepted one in the
/// target's own room (a redaction cannot reach into another room).
pub(crate) async fn redactions_of(db: impl PgExecutor<'_>, targets: &[i64]) -> sqlx::Result<Vec<Related>> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT t.nid AS target_nid, x.*
         FROM unnest($1::bigint[]) AS t (nid)
         CROSS JOIN LATERAL (SELECT {STORED_EVENT_COLUMNS} {redaction}) x",
        redaction = applying_redaction("t.nid"),
    )))
    .bind(targets)
    .fetch_all(db)
    .await
}

/// Which of `events` (event numbers) are the parent of some relation or the target of some
/// redaction, valid or not: only those can need bundled aggregations or redacting.
pub(crate) async fn with_children_or_redactions(
    db: impl PgExecutor<'_>,
    events: &[i64],
) -> sqlx::Result<std::collections::HashSet<i64>> {
    if events.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<i64> = sqlx::query_scalar(
        "SELECT n.nid FROM unnest($1::bigint[]) AS n (nid)
         WHERE EXISTS (SELECT 1 FROM event_relations r WHERE r.parent_nid = n.nid)
            OR EXISTS (SELECT 1 FROM redactions x WHERE x.redacts_nid = n.nid)",
    )
    .bind(events)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The relation type of an event that is itself a (still valid) child, if it is one.
pub(crate) async fn relation_of(db: impl PgExecutor<'_>, event_nid: i64) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT r.rel_type FROM event_relations r WHERE r.event_nid = $1 AND {CHILD_NOT_REDACTED}"
    )))
    .bind(event_nid)
    .fetch_optional(db)
    .await
}

/// Whether `sender` already annotated the parent with this event type and key (and has not
/// redacted that annotation).
pub(crate) async fn annotation_exists(
    db: impl PgExecutor<'_>,
    parent_event_id: &str,
    sender: &str,
    event_type: &str,
    key: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (
             SELECT 1 FROM event_ids p
             JOIN event_relations r ON r.parent_nid = p.event_nid
             JOIN events e ON e.event_nid = r.event_nid
             WHERE p.event_id = $1 AND r.rel_type = 'm.annotation' AND r.sender = $2 AND r.event_type = $3
               AND r.aggregation_key = $4 AND {IN_TIMELINE} AND {CHILD_NOT_REDACTED})"
    )))
    .bind(parent_event_id)
    .bind(sender)
    .bind(event_type)
    .bind(key)
    .fetch_one(db)
    .await
}

/// Which children of a parent `/relations` asks for, and the page of them.
pub(crate) struct ChildrenQuery<'a> {
    pub room_id: &'a str,
    pub parent_nid: i64,
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// 1 for direct children only; more to follow children of children (`recurse`).
    pub max_depth: i32,
    /// Stream positions, as in `/messages`: backwards takes `to < position <= from`, forwards
    /// `from < position <= to`.
    pub from: i64,
    pub to: Option<i64>,
    pub backwards: bool,
    pub limit: i64,
}

/// Children of an event (and, with `max_depth > 1`, their children), in stream order. The
/// filters apply at every level: a child reached only through a non-matching event is left
/// out, as the spec asks.
pub(crate) async fn children(db: impl PgExecutor<'_>, query: &ChildrenQuery<'_>) -> sqlx::Result<Vec<StoredEvent>> {
    let filters = format!(
        "r.room_id = $1 AND ($3::text IS NULL OR r.rel_type = $3) AND ($4::text IS NULL OR r.event_type = $4)
         AND {CHILD_NOT_REDACTED}"
    );
    let (window, order) = if query.backwards {
        // Backfilled children sit at negative positions: without `to`, no lower bound.
        ("e.stream_position <= $6 AND ($7::bigint IS NULL OR e.stream_position > $7)", "DESC")
    } else {
        ("e.stream_position > $6 AND ($7::bigint IS NULL OR e.stream_position <= $7)", "ASC")
    };
    // Event ids are hashes of their content, so a child cannot point at its own descendant:
    // the graph has no cycles. `max_depth` bounds the walk all the same.
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE tree (event_nid, level) AS (
             SELECT r.event_nid, 1 FROM event_relations r WHERE r.parent_nid = $2 AND {filters}
             UNION ALL
             SELECT r.event_nid, t.level + 1 FROM tree t JOIN event_relations r ON r.parent_nid = t.event_nid
             WHERE t.level < $5 AND {filters}
         )
         SELECT {STORED_EVENT_COLUMNS}
         FROM tree t
         JOIN events e ON e.event_nid = t.event_nid
         JOIN event_ids i ON i.event_nid = e.event_nid
         WHERE e.room_id = $1 AND {IN_TIMELINE} AND {window}
         ORDER BY e.stream_position {order}
         LIMIT $8"
    )))
    .bind(query.room_id)
    .bind(query.parent_nid)
    .bind(query.rel_type)
    .bind(query.event_type)
    .bind(query.max_depth)
    .bind(query.from)
    .bind(query.to)
    .bind(query.limit)
    .fetch_all(db)
    .await
}

/// For each parent, its newest children of one relation type (newest first, at most
/// `per_parent`). For `m.replace` only the edits that can be valid are returned: same sender
/// and type as the original, neither a state event; "newest" is then by `origin_server_ts`,
/// ties broken by the larger event id (spec: "Server-side aggregation of m.replace").
pub(crate) async fn latest_children(
    db: impl PgExecutor<'_>,
    room_id: &str,
    parents: &[i64],
    rel_type: &str,
    per_parent: i64,
) -> sqlx::Result<Vec<Related>> {
    if parents.is_empty() {
        return Ok(Vec::new());
    }
    let (edit_rules, order) = if rel_type == "m.replace" {
        (
            "AND r.sender = parent.sender AND r.event_type = parent.event_type
             AND parent.state_key_nid IS NULL AND e.state_key_nid IS NULL",
            "e.origin_server_ts DESC, i.event_id COLLATE \"C\" DESC",
        )
    } else {
        ("", "e.stream_position DESC")
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT p.nid AS target_nid, c.*
         FROM unnest($2::bigint[]) AS p (nid)
         JOIN events parent ON parent.event_nid = p.nid
         CROSS JOIN LATERAL (
             SELECT {STORED_EVENT_COLUMNS}
             FROM event_relations r
             JOIN events e ON e.event_nid = r.event_nid
             JOIN event_ids i ON i.event_nid = e.event_nid
             WHERE r.parent_nid = p.nid AND r.room_id = $1 AND r.rel_type = $3 AND e.room_id = $1
               AND {IN_TIMELINE} AND {CHILD_NOT_REDACTED} {edit_rules}
             ORDER BY {order}
             LIMIT $4
         ) c"
    )))
    .bind(room_id)
    .bind(parents)
    .bind(rel_type)
    .bind(per_parent)
    .fetch_all(db)
    .await
}

#[derive(Clone, Debug, FromRow)]
pub(crate) struct ThreadSummary {
    pub parent_nid: i64,
    pub count: i64,
    /// Whether `user` sent a reply in the thread.
    pub user_replied: bool,
}

/// Size of each parent's thread, and whether `user` replied in it.
pub(crate) async fn thread_summaries(
    db: impl PgExecutor<'_>,
    room_id: &str,
    parents: &[i64],
    user: &str,
) -> sqlx::Result<Vec<ThreadSummary>> {
    if parents.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT r.parent_nid, COUNT(*) AS count, BOOL_OR(r.sender = $3) AS user_replied
         FROM event_relations r
         JOIN events e ON e.event_nid = r.event_nid
         WHERE r.parent_nid = ANY($2) AND r.room_id = $1 AND r.rel_type = 'm.thread' AND e.room_id = $1
           AND {IN_TIMELINE} AND {CHILD_NOT_REDACTED}
         GROUP BY r.parent_nid"
    )))
    .bind(room_id)
    .bind(parents)
    .bind(user)
    .fetch_all(db)
    .await
}

#[derive(Clone, Debug, FromRow)]
pub(crate) struct ThreadRoot {
    pub root_nid: i64,
    /// Stream position of the thread's newest reply.
    pub latest_position: i64,
}

/// A room's thread roots, newest activity first, whose newest reply is at or before
/// `before`; with `participant`, only threads that user started or replied in.
pub(crate) async fn thread_roots(
    db: impl PgExecutor<'_>,
    room_id: &str,
    before: Option<i64>,
    participant: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<ThreadRoot>> {
    // Aggregated per request over the room's thread replies (indexed by room and type); a
    // table of thread heads maintained on write would make this O(page) when rooms grow.
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT r.parent_nid AS root_nid, MAX(e.stream_position) AS latest_position
         FROM event_relations r
         JOIN events e ON e.event_nid = r.event_nid
         JOIN events root ON root.event_nid = r.parent_nid
         WHERE r.room_id = $1 AND r.rel_type = 'm.thread' AND e.room_id = $1 AND root.room_id = $1
           AND root.rejection IS NULL AND NOT root.soft_failed AND NOT root.outlier
           AND {IN_TIMELINE} AND {CHILD_NOT_REDACTED}
         GROUP BY r.parent_nid, root.sender
         HAVING ($2::bigint IS NULL OR MAX(e.stream_position) <= $2)
            AND ($3::text IS NULL OR root.sender = $3 OR BOOL_OR(r.sender = $3))
         ORDER BY latest_position DESC
         LIMIT $4"
    )))
    .bind(room_id)
    .bind(before)
    .bind(participant)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Timeline events of a room ordered by `(origin_server_ts, stream_position)`, strictly after
/// (forwards) or before (backwards) the given pair: one page of a `timestamp_to_event` walk.
pub(crate) async fn by_timestamp(
    db: impl PgExecutor<'_>,
    room_id: &str,
    after: (i64, i64),
    backwards: bool,
    limit: i64,
) -> sqlx::Result<Vec<(i64, StoredEvent)>> {
    #[derive(FromRow)]
    struct Row {
        origin_server_ts: i64,
        #[sqlx(flatten)]
        event: StoredEvent,
    }
    let (comparison, order) = if backwards { ("<", "DESC") } else { (">", "ASC") };
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT e.origin_server_ts, {STORED_EVENT_COLUMNS}
         FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
         WHERE e.room_id = $1 AND {IN_TIMELINE}
           AND (e.origin_server_ts, e.stream_position) {comparison} ($2, $3)
         ORDER BY e.origin_server_ts {order}, e.stream_position {order}
         LIMIT $4"
    )))
    .bind(room_id)
    .bind(after.0)
    .bind(after.1)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|row| (row.origin_server_ts, row.event)).collect())
}
