//! Room state: interned `(type, state_key)` pairs, snapshots as bounded delta chains, and
//! the current state table.

use sqlx::{FromRow, PgConnection, PgExecutor};
use std::sync::LazyLock;

/// Deltas are chained at most this deep; the next snapshot is then written in full.
pub const MAX_CHAIN_LENGTH: i32 = 32;

pub async fn intern_state_key(conn: &mut PgConnection, event_type: &str, state_key: &str) -> sqlx::Result<i64> {
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO state_keys (event_type, state_key) VALUES ($1, $2)
         ON CONFLICT (event_type, state_key) DO NOTHING RETURNING state_key_nid",
    )
    .bind(event_type)
    .bind(state_key)
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(nid) => Ok(nid),
        None => {
            sqlx::query_scalar("SELECT state_key_nid FROM state_keys WHERE event_type = $1 AND state_key = $2")
                .bind(event_type)
                .bind(state_key)
                .fetch_one(conn)
                .await
        }
    }
}

/// One entry of a state map, with the event's JSON so callers need no second query.
#[derive(Clone, Debug, FromRow)]
pub struct StateEntry {
    pub state_key_nid: i64,
    pub event_type: String,
    pub state_key: String,
    pub event_nid: i64,
    pub event_id: String,
    pub json: String,
    /// Whether some redaction (valid or not) targets the event, where the query that read
    /// it says ([`REDACTION_COLUMN`]); `None`: not asked.
    #[sqlx(default)]
    pub has_redaction: Option<bool>,
}

/// The `has_redaction` column of [`StateEntry`] for a row of `en`: a whole state read with it
/// needs no query to learn which of its events may be redacted.
pub(super) const REDACTION_COLUMN: &str =
    "EXISTS (SELECT 1 FROM redactions x WHERE x.redacts_nid = en.event_nid) AS has_redaction";

// Every lookup below is written as per-row probes of a primary key or unique index
// (correlated subqueries, which the planner keeps per row), not as joins. sqlx prepares each
// statement once per connection, and a plan made while these tables were small hash-joins
// whole tables: measured at 0.9 ms a call with 240 snapshots, and growing with them, where
// the probes take a few microseconds each at any size.

/// A recursive CTE `{name} (snapshot_id, parent_id, distance)`: the snapshot chain from the
/// snapshot `{start}` (a parameter) to its root, nearest first (`distance` 0 is the snapshot).
/// Follows `WITH RECURSIVE` or a comma.
fn chain_cte(name: &str, start: &str) -> String {
    format!(
        "{name} (snapshot_id, parent_id, distance) AS (
            SELECT snapshot_id, parent_id, 0 FROM state_snapshots WHERE snapshot_id = {start}
            UNION ALL
            SELECT c.parent_id, (SELECT s.parent_id FROM state_snapshots s WHERE s.snapshot_id = c.parent_id),
                   c.distance + 1
            FROM {name} c WHERE c.parent_id IS NOT NULL
        )"
    )
}

/// The snapshot chain of `$1` as the CTE `chain`.
static SNAPSHOT_CHAIN: LazyLock<String> = LazyLock::new(|| format!("WITH RECURSIVE {}", chain_cte("chain", "$1")));

/// The event's id and JSON for a row of `en` that has `event_nid`.
pub(super) const EVENT_OF_ROW: &str = "
    (SELECT i.event_id FROM event_ids i WHERE i.event_nid = en.event_nid) AS event_id,
    (SELECT e.json FROM events e WHERE e.event_nid = en.event_nid) AS json";

/// The whole state of a snapshot: the nearest entry of the chain for each key wins. With
/// `$2`, member events only of the users it lists.
static SNAPSHOT_STATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{chain},
        entries AS (
            SELECT DISTINCT ON (se.state_key_nid) se.state_key_nid, se.event_nid
            FROM state_snapshot_entries se JOIN chain c ON c.snapshot_id = se.snapshot_id
            WHERE se.snapshot_id = ANY (ARRAY (SELECT snapshot_id FROM chain))
            ORDER BY se.state_key_nid, c.distance
        )
        SELECT en.state_key_nid,
               (SELECT k.event_type FROM state_keys k WHERE k.state_key_nid = en.state_key_nid) AS event_type,
               (SELECT k.state_key FROM state_keys k WHERE k.state_key_nid = en.state_key_nid) AS state_key,
               en.event_nid, {EVENT_OF_ROW}, {REDACTION_COLUMN}
        FROM entries en
        WHERE $2::text[] IS NULL OR NOT EXISTS (
                  SELECT 1 FROM state_keys k
                  WHERE k.state_key_nid = en.state_key_nid AND k.event_type = 'm.room.member'
                    AND k.state_key <> ALL ($2::text[]))",
        chain = SNAPSHOT_CHAIN.as_str()
    )
});

/// The entries of snapshot `$1` that snapshot `$2` does not have (a key it lacks, or another
/// event for it): what changed between two states of a room, with events read only for those.
/// With `$3`, member events only of the users it lists.
static SNAPSHOT_CHANGES: LazyLock<String> = LazyLock::new(|| {
    let entries_of = |chain: &str| {
        format!(
            "SELECT DISTINCT ON (se.state_key_nid) se.state_key_nid, se.event_nid
             FROM state_snapshot_entries se JOIN {chain} c ON c.snapshot_id = se.snapshot_id
             WHERE se.snapshot_id = ANY (ARRAY (SELECT snapshot_id FROM {chain}))
             ORDER BY se.state_key_nid, c.distance"
        )
    };
    format!(
        "{chain},
        {before_chain},
        now_entries AS ({now}),
        before_entries AS ({before}),
        en AS (
            SELECT n.state_key_nid, n.event_nid FROM now_entries n
            WHERE NOT EXISTS (SELECT 1 FROM before_entries b
                              WHERE b.state_key_nid = n.state_key_nid AND b.event_nid = n.event_nid)
              AND ($3::text[] IS NULL OR NOT EXISTS (
                       SELECT 1 FROM state_keys k
                       WHERE k.state_key_nid = n.state_key_nid AND k.event_type = 'm.room.member'
                         AND k.state_key <> ALL ($3::text[])))
        )
        SELECT en.state_key_nid,
               (SELECT k.event_type FROM state_keys k WHERE k.state_key_nid = en.state_key_nid) AS event_type,
               (SELECT k.state_key FROM state_keys k WHERE k.state_key_nid = en.state_key_nid) AS state_key,
               en.event_nid, {EVENT_OF_ROW}, {REDACTION_COLUMN}
        FROM en",
        chain = SNAPSHOT_CHAIN.as_str(),
        before_chain = chain_cte("before_chain", "$2"),
        now = entries_of("chain"),
        before = entries_of("before_chain"),
    )
});

/// The CTE `wanted`: the `(type, state_key)` pairs given as parallel arrays `$2`/`$3`, each
/// with its interned id (`NULL` for a pair never interned).
pub(super) const WANTED_KEYS: &str = "wanted AS MATERIALIZED (
            SELECT w.event_type, w.state_key,
                   (SELECT k.state_key_nid FROM state_keys k
                    WHERE k.event_type = w.event_type AND k.state_key = w.state_key) AS state_key_nid
            FROM unnest($2::text[], $3::text[]) AS w (event_type, state_key)
        )";

/// The entries (CTE `en`) of the `(type, state_key)` pairs given as parallel arrays `$2`/`$3`:
/// per key, the entry of the nearest snapshot of the chain that has one.
static SNAPSHOT_ENTRIES_FOR_KEYS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{chain},
        {WANTED_KEYS},
        entries AS MATERIALIZED (
            SELECT w.state_key_nid, w.event_type, w.state_key,
                   (SELECT p.found FROM (
                        SELECT c.distance,
                               (SELECT se.event_nid FROM state_snapshot_entries se
                                WHERE se.snapshot_id = c.snapshot_id AND se.state_key_nid = w.state_key_nid) AS found
                        FROM chain c) p
                    WHERE p.found IS NOT NULL ORDER BY p.distance LIMIT 1) AS event_nid
            FROM wanted w WHERE w.state_key_nid IS NOT NULL
        )",
        chain = SNAPSHOT_CHAIN.as_str()
    )
});

/// Only the given pairs of a snapshot, with their events.
static SNAPSHOT_STATE_FOR_KEYS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{entries}
        SELECT en.state_key_nid, en.event_type, en.state_key, en.event_nid, {EVENT_OF_ROW}
        FROM entries en WHERE en.event_nid IS NOT NULL",
        entries = SNAPSHOT_ENTRIES_FOR_KEYS.as_str()
    )
});

/// [`SNAPSHOT_STATE_FOR_KEYS`] with the redaction that applies to each event, found as
/// [`crate::db::relations::redactions_of`] finds it.
static SNAPSHOT_STATE_FOR_KEYS_WITH_REDACTIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{entries}
        SELECT en.state_key_nid, en.event_type, en.state_key, en.event_nid, {EVENT_OF_ROW},
               red.redaction_id, red.redaction_json
        FROM entries en
        LEFT JOIN LATERAL (
            SELECT i.event_id AS redaction_id, e.json AS redaction_json {redaction}
        ) red ON TRUE
        WHERE en.event_nid IS NOT NULL",
        entries = SNAPSHOT_ENTRIES_FOR_KEYS.as_str(),
        redaction = crate::db::relations::applying_redaction("en.event_nid"),
    )
});

pub async fn snapshot_state(db: impl PgExecutor<'_>, snapshot_id: i64) -> sqlx::Result<Vec<StateEntry>> {
    snapshot_state_with_members(db, snapshot_id, None).await
}

/// The state of a snapshot; with `members`, of the member events only those of these users
/// (lazy loading: a big room's other members are neither read nor sent).
pub async fn snapshot_state_with_members(
    db: impl PgExecutor<'_>,
    snapshot_id: i64,
    members: Option<&[String]>,
) -> sqlx::Result<Vec<StateEntry>> {
    sqlx::query_as(sqlx::AssertSqlSafe(SNAPSHOT_STATE.as_str())).bind(snapshot_id).bind(members).fetch_all(db).await
}

/// The entries of snapshot `now` that `before` does not have, with their events; with
/// `members`, member events only of those users.
pub async fn snapshot_changes(
    db: impl PgExecutor<'_>,
    before: i64,
    now: i64,
    members: Option<&[String]>,
) -> sqlx::Result<Vec<StateEntry>> {
    sqlx::query_as(sqlx::AssertSqlSafe(SNAPSHOT_CHANGES.as_str()))
        .bind(now)
        .bind(before)
        .bind(members)
        .fetch_all(db)
        .await
}

/// Only the given `(type, state_key)` pairs of a snapshot (what an auth check needs).
pub async fn snapshot_state_for_keys(
    db: impl PgExecutor<'_>,
    snapshot_id: i64,
    keys: &[(String, String)],
) -> sqlx::Result<Vec<StateEntry>> {
    let (types, state_keys) = key_columns(keys);
    sqlx::query_as(sqlx::AssertSqlSafe(SNAPSHOT_STATE_FOR_KEYS.as_str()))
        .bind(snapshot_id)
        .bind(&types)
        .bind(&state_keys)
        .fetch_all(db)
        .await
}

/// `(type, state_key)` pairs as the parallel arrays `$2`/`$3` every keyed state read takes.
fn key_columns<S: AsRef<str>>(keys: &[(S, S)]) -> (Vec<&str>, Vec<&str>) {
    keys.iter().map(|(event_type, state_key)| (event_type.as_ref(), state_key.as_ref())).unzip()
}

/// A state entry and the redaction event that applies to it, if any.
#[derive(Clone, Debug, FromRow)]
pub struct RedactableEntry {
    #[sqlx(flatten)]
    pub entry: StateEntry,
    pub redaction_id: Option<String>,
    pub redaction_json: Option<String>,
}

/// [`snapshot_state_for_keys`] and the redactions of those events, in one round trip (what
/// appending an event reads for its authorisation).
pub async fn snapshot_state_for_keys_with_redactions(
    db: impl PgExecutor<'_>,
    snapshot_id: i64,
    keys: &[(String, String)],
) -> sqlx::Result<Vec<RedactableEntry>> {
    let (types, state_keys) = key_columns(keys);
    sqlx::query_as(sqlx::AssertSqlSafe(SNAPSHOT_STATE_FOR_KEYS_WITH_REDACTIONS.as_str()))
        .bind(snapshot_id)
        .bind(&types)
        .bind(&state_keys)
        .fetch_all(db)
        .await
}

/// Records the state after a state event: a delta of `changes` over `parent`, or — when the
/// chain would grow too long — the parent's whole state with the changes applied.
pub async fn create_snapshot(
    conn: &mut PgConnection,
    room_id: &str,
    parent: Option<i64>,
    changes: &[(i64, i64)],
) -> sqlx::Result<i64> {
    let parent_chain: Option<i32> = match parent {
        Some(parent) => {
            sqlx::query_scalar("SELECT chain_length FROM state_snapshots WHERE snapshot_id = $1")
                .bind(parent)
                .fetch_optional(&mut *conn)
                .await?
        }
        None => None,
    };
    let (parent, chain_length, mut entries) = match (parent, parent_chain) {
        (Some(parent), Some(length)) if length < MAX_CHAIN_LENGTH => (Some(parent), length + 1, Vec::new()),
        (Some(parent), Some(_)) => {
            let full = snapshot_state(&mut *conn, parent).await?;
            (None, 0, full.into_iter().map(|entry| (entry.state_key_nid, entry.event_nid)).collect())
        }
        _ => (None, 0, Vec::new()),
    };
    for (key, event) in changes {
        match entries.iter_mut().find(|(existing, _)| existing == key) {
            Some(entry) => entry.1 = *event,
            None => entries.push((*key, *event)),
        }
    }
    let snapshot_id: i64 = sqlx::query_scalar(
        "INSERT INTO state_snapshots (room_id, parent_id, chain_length) VALUES ($1, $2, $3) RETURNING snapshot_id",
    )
    .bind(room_id)
    .bind(parent)
    .bind(chain_length)
    .fetch_one(&mut *conn)
    .await?;
    let keys: Vec<i64> = entries.iter().map(|(key, _)| *key).collect();
    let events: Vec<i64> = entries.iter().map(|(_, event)| *event).collect();
    sqlx::query(
        "INSERT INTO state_snapshot_entries (snapshot_id, state_key_nid, event_nid)
         SELECT $1, unnest($2::bigint[]), unnest($3::bigint[])",
    )
    .bind(snapshot_id)
    .bind(&keys)
    .bind(&events)
    .execute(conn)
    .await?;
    Ok(snapshot_id)
}

/// An empty snapshot: the state before a room's create event.
pub async fn create_empty_snapshot(conn: &mut PgConnection, room_id: &str) -> sqlx::Result<i64> {
    create_snapshot(conn, room_id, None, &[]).await
}

pub async fn set_current_state(
    conn: &mut PgConnection,
    room_id: &str,
    state_key_nid: i64,
    event_nid: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO current_state (room_id, state_key_nid, event_nid) VALUES ($1, $2, $3)
         ON CONFLICT (room_id, state_key_nid) DO UPDATE SET event_nid = EXCLUDED.event_nid",
    )
    .bind(room_id)
    .bind(state_key_nid)
    .bind(event_nid)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets the room's current state (it is about to be set whole again).
pub async fn clear_current_state(conn: &mut PgConnection, room_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM current_state WHERE room_id = $1").bind(room_id).execute(conn).await?;
    Ok(())
}

/// The room's current state, whole.
pub async fn current_state(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<Vec<StateEntry>> {
    sqlx::query_as(
        "SELECT cs.state_key_nid, k.event_type, k.state_key, cs.event_nid, i.event_id, e.json
         FROM current_state cs
         JOIN state_keys k ON k.state_key_nid = cs.state_key_nid
         JOIN events e ON e.event_nid = cs.event_nid
         JOIN event_ids i ON i.event_nid = cs.event_nid
         WHERE cs.room_id = $1",
    )
    .bind(room_id)
    .fetch_all(db)
    .await
}

/// One entry of the room's current state.
pub async fn current_state_event(
    db: impl PgExecutor<'_>,
    room_id: &str,
    event_type: &str,
    state_key: &str,
) -> sqlx::Result<Option<StateEntry>> {
    sqlx::query_as(
        "SELECT cs.state_key_nid, k.event_type, k.state_key, cs.event_nid, i.event_id, e.json
         FROM state_keys k
         JOIN current_state cs ON cs.state_key_nid = k.state_key_nid AND cs.room_id = $1
         JOIN events e ON e.event_nid = cs.event_nid
         JOIN event_ids i ON i.event_nid = cs.event_nid
         WHERE k.event_type = $2 AND k.state_key = $3",
    )
    .bind(room_id)
    .bind(event_type)
    .bind(state_key)
    .fetch_optional(db)
    .await
}

/// Per wanted key, probes of `state_keys` and `current_state` (see the note above).
static CURRENT_STATE_FOR_KEYS: LazyLock<String> = LazyLock::new(current_state_for_keys_sql);

fn current_state_for_keys_sql() -> String {
    format!(
        "WITH {WANTED_KEYS},
        entries AS MATERIALIZED (
            SELECT w.state_key_nid, w.event_type, w.state_key,
                   (SELECT cs.event_nid FROM current_state cs
                    WHERE cs.room_id = $1 AND cs.state_key_nid = w.state_key_nid) AS event_nid
            FROM wanted w WHERE w.state_key_nid IS NOT NULL
        )
        SELECT en.state_key_nid, en.event_type, en.state_key, en.event_nid, {EVENT_OF_ROW}
        FROM entries en WHERE en.event_nid IS NOT NULL"
    )
}

/// The given `(type, state_key)` entries of the room's current state (those it has).
pub async fn current_state_for_keys(
    db: impl PgExecutor<'_>,
    room_id: &str,
    keys: &[(&str, &str)],
) -> sqlx::Result<Vec<StateEntry>> {
    let (types, state_keys) = key_columns(keys);
    sqlx::query_as(sqlx::AssertSqlSafe(CURRENT_STATE_FOR_KEYS.as_str()))
        .bind(room_id)
        .bind(&types)
        .bind(&state_keys)
        .fetch_all(db)
        .await
}

/// The full auth chains of the given events (all their `auth_events`, recursively), as
/// `(event_id, auth_event_ids)` rows including the starting events themselves.
pub async fn auth_graph(db: impl PgExecutor<'_>, event_ids: &[String]) -> sqlx::Result<Vec<(String, Vec<String>)>> {
    sqlx::query_as(
        "WITH RECURSIVE chain (event_nid) AS (
             SELECT event_nid FROM event_ids WHERE event_id = ANY($1)
             UNION
             SELECT a.auth_event_nid FROM event_auth_edges a JOIN chain c ON a.event_nid = c.event_nid
         )
         SELECT i.event_id,
                COALESCE(ARRAY(SELECT ai.event_id FROM event_auth_edges a JOIN event_ids ai ON ai.event_nid = a.auth_event_nid
                               WHERE a.event_nid = c.event_nid), '{}') AS auth_event_ids
         FROM chain c JOIN event_ids i ON i.event_nid = c.event_nid",
    )
    .bind(event_ids)
    .fetch_all(db)
    .await
}

/// `(event_nid, event_id, json)` of the given stored events.
pub async fn event_json(db: impl PgExecutor<'_>, event_ids: &[String]) -> sqlx::Result<Vec<(i64, String, String)>> {
    sqlx::query_as(
        "SELECT e.event_nid, i.event_id, e.json FROM event_ids i JOIN events e ON e.event_nid = i.event_nid
         WHERE i.event_id = ANY($1)",
    )
    .bind(event_ids)
    .fetch_all(db)
    .await
}

/// `(state_key_nid, event_nid)` for `(event_type, state_key, event_id)` triples already stored.
pub async fn state_entry_ids(
    conn: &mut PgConnection,
    entries: &[(String, String, String)],
) -> sqlx::Result<Vec<(i64, i64)>> {
    let mut out = Vec::with_capacity(entries.len());
    for (event_type, state_key, event_id) in entries {
        let key = intern_state_key(&mut *conn, event_type, state_key).await?;
        let event: i64 = sqlx::query_scalar("SELECT event_nid FROM event_ids WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(&mut *conn)
            .await?;
        out.push((key, event));
    }
    Ok(out)
}
