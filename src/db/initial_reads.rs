//! What an initial `/sync` reads of all the user's joined rooms at once: each room's state at
//! its timeline's start, the history visibility and membership facts of many snapshots, each
//! room's summary facts and unread rows. One statement each, whatever the number of rooms
//! (a user in a hundred rooms used to cost six statements a room).
//!
//! Every statement is driven by the arrays it is given (`unnest`), and reaches the tables only
//! through per-row probes of a primary key or index: the plan is the same on a database that
//! has just been filled and never analysed as on an old one (a first initial sync right after
//! a bulk import is the one where statistics are missing; see `db::state` on plans).

use crate::db::push_actions::RoomUnreadRow;
use crate::db::state::{EVENT_OF_ROW, REDACTION_COLUMN, StateEntry, WANTED_KEYS};
use crate::db::unread::SummaryFacts;
use sqlx::{FromRow, PgExecutor};

/// The snapshot chains of every snapshot of `origins` (a table of `snapshot_id`s, e.g.
/// `unnest($1::bigint[])`) as the CTE `chain`: `origin` is the snapshot asked about,
/// `distance` 0 the snapshot itself. Other CTEs may follow it (`RECURSIVE` covers them all).
fn chains(origins: &str) -> String {
    format!(
        "chain (origin, snapshot_id, parent_id, distance) AS (
        SELECT o.snapshot_id, o.snapshot_id,
               (SELECT s.parent_id FROM state_snapshots s WHERE s.snapshot_id = o.snapshot_id), 0
        FROM {origins} AS o (snapshot_id)
        UNION ALL
        SELECT c.origin, c.parent_id,
               (SELECT s.parent_id FROM state_snapshots s WHERE s.snapshot_id = c.parent_id), c.distance + 1
        FROM chain c WHERE c.parent_id IS NOT NULL
    )"
    )
}

/// A state entry of the snapshot `origin`.
#[derive(Debug, FromRow)]
pub(crate) struct SnapshotEntry {
    pub origin: i64,
    #[sqlx(flatten)]
    pub entry: StateEntry,
}

/// The whole state (with `has_redaction`, as `db::state::snapshot_state` reads one snapshot's)
/// of the snapshot each of `room_ids` has before the oldest of its newest `limit` timeline
/// events with `0 < position <= upto`: where a timeline of `limit` events starts, found as
/// `db::events::newest_pages` finds the events, so that it is read beside the pages, not after
/// them.
pub(crate) async fn states_at_timeline_starts(
    db: impl PgExecutor<'_>,
    room_ids: &[String],
    upto: i64,
    limit: i64,
) -> sqlx::Result<Vec<SnapshotEntry>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE starts AS MATERIALIZED (
            SELECT DISTINCT s.state_before AS snapshot_id FROM unnest($1::text[]) AS r (room_id)
            CROSS JOIN LATERAL (
                SELECT p.state_before FROM (
                    SELECT e.state_before, e.stream_position FROM events e
                    WHERE e.room_id = r.room_id AND e.stream_position <= $2 AND e.stream_position > 0
                      AND e.rejection IS NULL AND NOT e.soft_failed AND NOT e.outlier
                    ORDER BY e.stream_position DESC LIMIT $3) p
                ORDER BY p.stream_position LIMIT 1) s
            WHERE s.state_before IS NOT NULL
        ),
        {chain},
        entries AS (
            SELECT DISTINCT ON (c.origin, se.state_key_nid) c.origin, se.state_key_nid, se.event_nid
            FROM state_snapshot_entries se JOIN chain c ON c.snapshot_id = se.snapshot_id
            WHERE se.snapshot_id = ANY (ARRAY (SELECT snapshot_id FROM chain))
            ORDER BY c.origin, se.state_key_nid, c.distance
        )
        SELECT en.origin, en.state_key_nid,
               (SELECT k.event_type FROM state_keys k WHERE k.state_key_nid = en.state_key_nid) AS event_type,
               (SELECT k.state_key FROM state_keys k WHERE k.state_key_nid = en.state_key_nid) AS state_key,
               en.event_nid, {EVENT_OF_ROW}, {REDACTION_COLUMN}
        FROM entries en",
        chain = chains("(SELECT snapshot_id FROM starts)"),
    )))
    .bind(room_ids)
    .bind(upto)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The given `(type, state_key)` entries of each of `snapshots` (those it has), as
/// `db::state::snapshot_state_for_keys` reads them for one.
pub(crate) async fn keyed_states_of(
    db: impl PgExecutor<'_>,
    snapshots: &[i64],
    keys: &[(&str, &str)],
) -> sqlx::Result<Vec<SnapshotEntry>> {
    let (types, state_keys): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH RECURSIVE {chain},
        {WANTED_KEYS},
        entries AS MATERIALIZED (
            SELECT DISTINCT ON (c.origin, w.state_key_nid) c.origin, w.state_key_nid, w.event_type, w.state_key,
                   se.event_nid
            FROM chain c CROSS JOIN wanted w
            CROSS JOIN LATERAL (
                SELECT se.event_nid FROM state_snapshot_entries se
                WHERE se.snapshot_id = c.snapshot_id AND se.state_key_nid = w.state_key_nid) se
            ORDER BY c.origin, w.state_key_nid, c.distance
        )
        SELECT en.origin, en.state_key_nid, en.event_type, en.state_key, en.event_nid, {EVENT_OF_ROW}
        FROM entries en",
        chain = chains("unnest($1::bigint[])"),
    )))
    .bind(snapshots)
    .bind(&types)
    .bind(&state_keys)
    .fetch_all(db)
    .await
}

/// A room's summary facts.
#[derive(Debug, FromRow)]
pub(crate) struct RoomSummaryFacts {
    pub room_id: String,
    #[sqlx(flatten)]
    pub facts: SummaryFacts,
}

/// The summary facts of each of `room_ids` for `user_id`, as `db::unread::summary_facts`
/// reads one room's.
pub(crate) async fn summary_facts_of(
    db: impl PgExecutor<'_>,
    room_ids: &[String],
    user_id: &str,
    heroes: i64,
) -> sqlx::Result<Vec<RoomSummaryFacts>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT r.room_id, {columns} FROM unnest($1::text[]) AS r (room_id)",
        columns = crate::db::unread::summary_columns("r.room_id", "$2", "$3"),
    )))
    .bind(room_ids)
    .bind(user_id)
    .bind(heroes)
    .fetch_all(db)
    .await
}

/// For each room of `room_ids` and its `afters` (parallel arrays), the user's newest (at most
/// `limit`) rows with `after < position <= upto`, as `db::push_actions::unread_between` reads
/// one room's: newest first within each room.
pub(crate) async fn unread_rows_of(
    db: impl PgExecutor<'_>,
    user_id: &str,
    (room_ids, afters): (&[String], &[i64]),
    upto: i64,
    limit: i64,
) -> sqlx::Result<Vec<RoomUnreadRow>> {
    sqlx::query_as(
        "SELECT r.room_id, a.stream_position, a.thread_id, a.sender, a.notify, a.highlight
         FROM unnest($2::text[], $3::bigint[]) AS r (room_id, after)
         CROSS JOIN LATERAL (
             SELECT stream_position, thread_id, sender, notify, highlight FROM event_push_actions
             WHERE user_id = $1 AND room_id = r.room_id AND stream_position > r.after AND stream_position <= $4
             ORDER BY stream_position DESC LIMIT $5) a
         ORDER BY r.room_id, a.stream_position DESC",
    )
    .bind(user_id)
    .bind(room_ids)
    .bind(afters)
    .bind(upto)
    .bind(limit)
    .fetch_all(db)
    .await
}
