//! The event store: interned ids, immutable event JSON with its query columns, DAG edges and
//! forward extremities.

use crate::db::rooms::TxnKey;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{FromRow, PgConnection, PgExecutor, Postgres};

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

/// What [`insert_with_edges`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Stored: the event's number, and how many of its auth events were found (all of them,
    /// for a well-formed event: auth events are stored before anything cites them).
    Stored { event_nid: i64, auth_found: i64 },
    /// Nothing written: the room's forward extremities are no longer the ones the caller
    /// built the event on (another writer appended to the room since it last looked).
    TipMoved,
    /// Nothing written: the client transaction id was used before, for this event.
    SentBefore(String),
}

/// Stores a new event in one round trip: its interned id, its row, its `prev_events` and
/// `auth_events` edges, the room's forward extremities (the event replaces `prev` among
/// them) and, for a client's send, the transaction id that makes retransmissions idempotent.
///
/// The statement first checks what the caller assumed: with `tip`, that the room's forward
/// extremities are exactly these (sorted) numbers, and with `transaction`, that the id was not
/// used before. If not, it writes nothing and says why: a writer that carries the room's tip
/// from its previous commit needs no round trip to read it again (the caller holds the room's
/// lock, so the answer cannot change before its commit).
pub async fn insert_with_edges(
    conn: &mut PgConnection,
    event: &NewEvent<'_>,
    event_id: &str,
    prev: &[i64],
    auth_event_ids: &[String],
    tip: Option<&[i64]>,
    transaction: Option<TxnKey<'_>>,
) -> sqlx::Result<Inserted> {
    // Sub-statements of one statement share a snapshot, so the event's number flows from
    // `id` through RETURNING, and `guard` sees the room as it was before any of them. Every
    // write hangs off `id`, which is empty when the guard fails. `DO UPDATE` (a no-op write)
    // rather than `DO NOTHING` makes an id interned earlier (a relation may cite an event
    // before it exists) return its number too; the events insert then fails on the primary
    // key, as storing an event twice must. Foreign keys are checked at the end of the
    // statement, when every row exists. The new event takes the place of one tip it replaces
    // (`kept`, updated in place: a HOT update, see migration 0044) and the others are
    // deleted; only an event that replaces no tip adds a row. All of them read the snapshot
    // the statement started with, so `kept` is the same row for each.
    let query = sqlx::query_as(
        "WITH guard AS MATERIALIZED (
             SELECT ($19::bigint[] IS NULL
                     OR ARRAY(SELECT f.event_nid FROM forward_extremities f WHERE f.room_id = $2
                              ORDER BY f.event_nid) = $19::bigint[]) AS tip_holds,
                    (SELECT t.event_id FROM event_transactions t
                     WHERE $14::text IS NOT NULL AND t.user_id = $14 AND t.device_id = $15 AND t.room_id = $16
                       AND t.event_type = $17 AND t.txn_id = $18) AS sent_before
         ), id AS (
             INSERT INTO event_ids (event_id) SELECT $1 FROM guard WHERE tip_holds AND sent_before IS NULL
             ON CONFLICT (event_id) DO UPDATE SET event_id = EXCLUDED.event_id
             RETURNING event_nid
         ), event AS (
             INSERT INTO events (event_nid, room_id, event_type, state_key_nid, sender, origin_server_ts, depth,
                                 stream_position, state_before, state_after, json)
             SELECT event_nid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM id
         ), prev AS (
             INSERT INTO event_edges (event_nid, prev_event_nid) SELECT id.event_nid, unnest($12::bigint[]) FROM id
         ), auth AS (
             INSERT INTO event_auth_edges (event_nid, auth_event_nid)
             SELECT id.event_nid, a.event_nid FROM id, event_ids a WHERE a.event_id = ANY($13::text[])
             RETURNING 1
         ), kept AS (
             SELECT ctid FROM forward_extremities WHERE room_id = $2 AND event_nid = ANY($12::bigint[])
             ORDER BY event_nid LIMIT 1
         ), moved AS (
             UPDATE forward_extremities f SET event_nid = id.event_nid FROM id, kept WHERE f.ctid = kept.ctid
         ), replaced AS (
             DELETE FROM forward_extremities WHERE room_id = $2 AND event_nid = ANY($12::bigint[])
               AND ctid NOT IN (SELECT ctid FROM kept) AND EXISTS (SELECT 1 FROM id)
         ), extremity AS (
             INSERT INTO forward_extremities (room_id, event_nid) SELECT $2, event_nid FROM id
             WHERE NOT EXISTS (SELECT 1 FROM kept)
         ), txn AS (
             INSERT INTO event_transactions (user_id, device_id, room_id, event_type, txn_id, event_id)
             SELECT $14, $15, $16, $17, $18, $1 FROM id WHERE $14::text IS NOT NULL
         )
         SELECT (SELECT event_nid FROM id), (SELECT count(*) FROM auth), guard.tip_holds, guard.sent_before
         FROM guard",
    )
    .bind(event_id)
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
    .bind(prev)
    .bind(auth_event_ids);
    let (event_nid, auth_found, tip_holds, sent_before): (Option<i64>, i64, bool, Option<String>) =
        bind_transaction(query, transaction).bind(tip).fetch_one(conn).await?;
    Ok(match (event_nid, sent_before) {
        (_, Some(event_id)) => Inserted::SentBefore(event_id),
        (Some(event_nid), None) => Inserted::Stored { event_nid, auth_found },
        (None, None) if !tip_holds => Inserted::TipMoved,
        (None, None) => return Err(sqlx::Error::RowNotFound),
    })
}

/// Places an outlier in the room's timeline: its stream position and state before (and, until
/// the caller sets it, after), and it replaces its parents among the forward extremities.
/// False when it is not (or no longer) an unplaced, accepted outlier.
pub async fn place_outlier(
    conn: &mut PgConnection,
    room_id: &str,
    event_nid: i64,
    stream_position: i64,
    state_before: i64,
    prev: &[i64],
) -> sqlx::Result<bool> {
    let placed: Option<i64> = sqlx::query_scalar(
        "WITH placed AS (
             UPDATE events SET outlier = FALSE, stream_position = $3, state_before = $4, state_after = $4
             WHERE event_nid = $2 AND room_id = $1 AND outlier AND stream_position IS NULL AND rejection IS NULL
             RETURNING event_nid
         ), replaced AS (
             DELETE FROM forward_extremities WHERE room_id = $1 AND event_nid = ANY($5::bigint[])
               AND EXISTS (SELECT 1 FROM placed)
         ), extremity AS (
             INSERT INTO forward_extremities (room_id, event_nid) SELECT $1, event_nid FROM placed
         )
         SELECT event_nid FROM placed",
    )
    .bind(room_id)
    .bind(event_nid)
    .bind(stream_position)
    .bind(state_before)
    .bind(prev)
    .fetch_optional(conn)
    .await?;
    Ok(placed.is_some())
}

/// Forgets the room's forward extremities: a room joined again through another server builds
/// on that server's tips, not on what this one held before it left.
pub async fn clear_forward_extremities(conn: &mut PgConnection, room_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM forward_extremities WHERE room_id = $1").bind(room_id).execute(conn).await?;
    Ok(())
}

/// Binds the five columns of a client transaction id, NULL where there is none.
fn bind_transaction<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    transaction: Option<TxnKey<'q>>,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    query
        .bind(transaction.map(|key| key.user_id))
        .bind(transaction.map(|key| key.device_id))
        .bind(transaction.map(|key| key.room_id))
        .bind(transaction.map(|key| key.event_type))
        .bind(transaction.map(|key| key.txn_id))
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

/// What appending to a room starts from.
pub struct RoomTip {
    /// `None` for a room this server does not have.
    pub version: Option<String>,
    /// Deepest first, as [`forward_extremities`].
    pub extremities: Vec<Extremity>,
    /// The event already sent with the client transaction id asked about, if any.
    pub transaction_event: Option<String>,
    /// Whether a server other than `local` has a joined member in the room (`room_servers`).
    pub has_remote_servers: bool,
    /// The room's joined or invited members of server `local`: two at most (enough to tell
    /// that nobody but one sender could hear of an event).
    pub local_members: Vec<String>,
}

/// [`crate::db::rooms::transaction_event`], [`crate::db::rooms::version`],
/// [`forward_extremities`], whether the room has servers other than `local`, and up to two of
/// its local members, in one round trip.
pub async fn room_tip(
    db: impl PgExecutor<'_>,
    room_id: &str,
    local: &str,
    transaction: Option<TxnKey<'_>>,
) -> sqlx::Result<RoomTip> {
    type Row =
        (Option<String>, Option<String>, Option<i64>, Option<String>, Option<i64>, Option<i64>, bool, Vec<String>);
    // One row even for an unknown room (the transaction may still be known); one per
    // extremity otherwise.
    let query = sqlx::query_as(
        "SELECT (SELECT t.event_id FROM event_transactions t
                 WHERE t.user_id = $2 AND t.device_id = $3 AND t.room_id = $4 AND t.event_type = $5
                   AND t.txn_id = $6),
                r.room_version, x.event_nid, x.event_id, x.depth, x.state_after,
                EXISTS (SELECT 1 FROM room_servers s WHERE s.room_id = $1 AND s.server_name <> $7)
                  -- A room joined with a partial state has servers this one does not know yet.
                  OR EXISTS (SELECT 1 FROM partial_state_rooms p WHERE p.room_id = $1),
                ARRAY(SELECT m.user_id FROM room_memberships m
                      WHERE m.room_id = $1 AND m.membership IN ('join', 'invite') AND right(m.user_id, length($8)) = $8
                      LIMIT 2)
         FROM (VALUES (1)) AS one (n)
         LEFT JOIN rooms r ON r.room_id = $1
         LEFT JOIN LATERAL (
             SELECT e.event_nid, i.event_id, e.depth, e.state_after, e.stream_position
             FROM forward_extremities f
             JOIN events e ON e.event_nid = f.event_nid
             JOIN event_ids i ON i.event_nid = f.event_nid
             WHERE f.room_id = r.room_id
         ) x ON TRUE
         ORDER BY x.depth DESC, x.stream_position DESC",
    )
    .bind(room_id);
    let rows: Vec<Row> =
        bind_transaction(query, transaction).bind(local).bind(format!(":{local}")).fetch_all(db).await?;
    let mut tip = RoomTip {
        version: None,
        extremities: Vec::with_capacity(rows.len()),
        transaction_event: None,
        has_remote_servers: false,
        local_members: Vec::new(),
    };
    for (transaction_event, version, event_nid, event_id, depth, state_after, has_remote_servers, local_members) in rows
    {
        tip.transaction_event = transaction_event;
        tip.version = version;
        tip.has_remote_servers = has_remote_servers;
        tip.local_members = local_members;
        match (event_nid, event_id, depth, state_after) {
            (Some(event_nid), Some(event_id), Some(depth), Some(state_after)) => {
                tip.extremities.push(Extremity { event_nid, event_id, depth, state_after });
            }
            // No extremity (the lateral join found nothing).
            (None, _, _, _) => {}
            // Outliers are never extremities; one without state would be a broken store.
            _ => return Err(sqlx::Error::Decode(format!("forward extremity of {room_id} without state").into())),
        }
    }
    Ok(tip)
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
    /// Whether the event is the parent of a relation or the target of a redaction (valid or
    /// not), where the query that read it says ([`RELATED_COLUMN`]); `None`: not asked.
    #[sqlx(default)]
    pub has_related: Option<bool>,
    /// Whether the sender asked for their content to be erased (`erased_users`); `false` where
    /// the query that read it did not ask.
    #[sqlx(default)]
    pub sender_erased: bool,
}

/// The `has_related` column of [`StoredEvent`] for an event `e`: a timeline page reads it
/// with the events, so serving them needs no query to learn which have any.
pub(crate) const RELATED_COLUMN: &str = "(EXISTS (SELECT 1 FROM event_relations r WHERE r.parent_nid = e.event_nid)
     OR EXISTS (SELECT 1 FROM redactions x WHERE x.redacts_nid = e.event_nid)) AS has_related";

/// Every column of [`StoredEvent`] but `has_related`, for an event `e` and its id row `i`. Whether
/// the sender was erased is probed here, in the reading query (a probe of a table that is almost
/// always empty), so serving events needs no query of its own to learn it.
pub(crate) const STORED_EVENT_COLUMNS: &str = "e.event_nid, i.event_id, e.room_id, e.stream_position, e.depth, \
     e.state_before, e.json, EXISTS (SELECT 1 FROM erased_users u WHERE u.user_id = e.sender) AS sender_erased";

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

/// Timeline events of `types` in `rooms` with stream positions in `(after, upto]`, in stream order.
pub async fn timeline_between(
    db: impl PgExecutor<'_>,
    rooms: &[String],
    types: &[&str],
    after: i64,
    upto: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {STORED_EVENT_COLUMNS} FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
         WHERE e.room_id = ANY($1) AND e.stream_position > $2 AND e.stream_position <= $3
           AND e.event_type = ANY($4) AND e.rejection IS NULL AND NOT e.soft_failed AND NOT e.outlier
         ORDER BY e.stream_position"
    )))
    .bind(rooms)
    .bind(after)
    .bind(upto)
    .bind(types)
    .fetch_all(db)
    .await
}

/// Timeline events of a room between two stream positions, in either direction. Backwards
/// without `to`, the page reaches into backfilled history (negative positions).
pub async fn timeline_page(
    db: impl PgExecutor<'_>,
    room_id: &str,
    from: i64,
    backwards: bool,
    to: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    timeline_page_matching(db, room_id, from, backwards, to, limit, &EventMatch::default()).await
}

/// Conditions on an event's type and sender that the database checks, so that a page of a
/// filtered history holds only events that pass (a strict filter over a long history would
/// otherwise read page after page of events only to drop them). Types are the filter's
/// patterns, where `*` stands for any run of characters.
#[derive(Clone, Debug, Default)]
pub struct EventMatch {
    pub types: Option<Vec<String>>,
    pub not_types: Vec<String>,
    pub senders: Option<Vec<String>>,
    pub not_senders: Vec<String>,
}

/// A type pattern as a `LIKE` pattern: the wildcard becomes `%`, and `LIKE`'s own special
/// characters match themselves.
fn like_pattern(pattern: &str) -> String {
    let mut like = String::with_capacity(pattern.len() + 2);
    for c in pattern.chars() {
        match c {
            '\\' | '%' | '_' => {
                like.push('\\');
                like.push(c);
            }
            '*' => like.push('%'),
            c => like.push(c),
        }
    }
    like
}

/// [`timeline_page`] of the events that pass `only`.
pub async fn timeline_page_matching(
    db: impl PgExecutor<'_>,
    room_id: &str,
    from: i64,
    backwards: bool,
    to: Option<i64>,
    limit: i64,
    only: &EventMatch,
) -> sqlx::Result<Vec<StoredEvent>> {
    const MATCHING: &str = "($5::text[] IS NULL OR e.event_type LIKE ANY($5)) AND NOT (e.event_type LIKE ANY($6))
               AND ($7::text[] IS NULL OR e.sender = ANY($7)) AND NOT (e.sender = ANY($8))";
    // Both ends are bounds of the index scan: a missing `to` is the end of the bigint range,
    // not an `IS NULL OR` that the statement's generic plan can only apply as a filter — that
    // plan read the room's whole history up to `from` to find a live window's one event.
    let (range, order) = if backwards {
        ("e.stream_position <= $2 AND e.stream_position > COALESCE($3::bigint, '-9223372036854775808'::bigint)", "DESC")
    } else {
        ("e.stream_position > $2 AND e.stream_position <= COALESCE($3::bigint, '9223372036854775807'::bigint)", "ASC")
    };
    let sql = format!(
        "SELECT {STORED_EVENT_COLUMNS}, {RELATED_COLUMN} FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
         WHERE e.room_id = $1 AND {range}
           AND e.rejection IS NULL AND NOT e.soft_failed AND NOT e.outlier AND {MATCHING}
         ORDER BY e.stream_position {order} LIMIT $4"
    );
    let types: Option<Vec<String>> = only.types.as_ref().map(|types| types.iter().map(|t| like_pattern(t)).collect());
    let not_types: Vec<String> = only.not_types.iter().map(|t| like_pattern(t)).collect();
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(room_id)
        .bind(from)
        .bind(to)
        .bind(limit)
        .bind(types)
        .bind(not_types)
        .bind(&only.senders)
        .bind(&only.not_senders)
        .fetch_all(db)
        .await
}

/// An event of [`newest_pages`], with the transaction id the asking device sent it with.
#[derive(Debug, FromRow)]
pub struct PagedEvent {
    #[sqlx(flatten)]
    pub event: StoredEvent,
    /// `None` also when no device was given.
    pub transaction_id: Option<String>,
}

/// The newest `limit` timeline events of each of `room_ids` with `0 < position <= upto`,
/// newest first within each room, in one statement: each room's page as [`timeline_page`]
/// reads it from `upto` back to the room's start (what an initial sync reads first), with the
/// transaction ids `device` (user, device) sent them with. The rooms drive the plan (one index
/// probe of `events_room_stream` per room, whatever the table's statistics say, fresh or not),
/// and each event's transaction is found by its id alone (`OFFSET 0` keeps the device's
/// columns out of the probe: with them, a table not yet analysed was walked through the
/// device's every send for each event, 450 ms for 1,100 events of a device with 5,000 sends).
pub async fn newest_pages(
    db: impl PgExecutor<'_>,
    room_ids: &[String],
    upto: i64,
    limit: i64,
    device: Option<(&str, &str)>,
) -> sqlx::Result<Vec<PagedEvent>> {
    let (user_id, device_id) = device.unzip();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT p.* FROM unnest($1::text[]) WITH ORDINALITY AS r (room_id, n)
         CROSS JOIN LATERAL (
             SELECT {STORED_EVENT_COLUMNS}, {RELATED_COLUMN},
                    (SELECT t.txn_id FROM (
                         SELECT txn_id, user_id, device_id FROM event_transactions WHERE event_id = i.event_id
                         OFFSET 0) t
                     WHERE t.user_id = $4 AND t.device_id = $5 LIMIT 1) AS transaction_id
             FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
             WHERE e.room_id = r.room_id AND e.stream_position <= $2 AND e.stream_position > 0
               AND e.rejection IS NULL AND NOT e.soft_failed AND NOT e.outlier
             ORDER BY e.stream_position DESC LIMIT $3) p
         ORDER BY r.n, p.stream_position DESC"
    )))
    .bind(room_ids)
    .bind(upto)
    .bind(limit)
    .bind(user_id)
    .bind(device_id)
    .fetch_all(db)
    .await
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

/// Gives an outlier a stream position: a membership of a local user in a room this server is
/// not in (an invitation from another server, its rejection) reaches `/sync` by position.
pub async fn set_out_of_band_position(conn: &mut PgConnection, event_nid: i64, position: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE events SET stream_position = $2 WHERE event_nid = $1 AND stream_position IS NULL")
        .bind(event_nid)
        .bind(position)
        .execute(conn)
        .await?;
    Ok(())
}
