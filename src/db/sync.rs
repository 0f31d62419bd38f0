//! What changed for a user between two stream positions: the queries behind the `/sync`
//! response builder. Every range is `(after, upto]`, so consecutive windows never overlap.

use crate::db::json::StoredJson;
use crate::db::push_actions::RoomUnreadRow;
use ruma::events::room::member::MembershipState;
use sqlx::{FromRow, PgExecutor};

/// A user's latest membership in a room, as `room_memberships` holds it now. It may be newer
/// than the window being served (see [`member_event_at`]).
#[derive(Clone, Debug, FromRow)]
pub struct MembershipRow {
    pub room_id: String,
    #[sqlx(try_from = "String")]
    pub membership: MembershipState,
    /// Position of the member event that set it.
    pub stream_position: i64,
    pub forgotten: bool,
    /// Whether the room's state is partial now (joined with a partial state, not resynced).
    pub partial_state: bool,
    /// The position at which the room's full state came, if it was ever partial.
    pub full_state_at: Option<i64>,
}

pub(crate) async fn memberships(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Vec<MembershipRow>> {
    sqlx::query_as(
        "SELECT m.room_id, m.membership, m.stream_position, m.forgotten,
                EXISTS (SELECT 1 FROM partial_state_rooms p WHERE p.room_id = m.room_id) AS partial_state,
                c.stream_position AS full_state_at
         FROM room_memberships m LEFT JOIN partial_state_completed c ON c.room_id = m.room_id
         WHERE m.user_id = $1 ORDER BY m.room_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// A member event of the syncing user.
#[derive(Clone, Debug, FromRow)]
pub(crate) struct MemberEvent {
    pub event_nid: i64,
    pub event_id: String,
    pub stream_position: i64,
    pub state_after: Option<i64>,
    pub json: String,
}

/// Outliers count only with a stream position: a local user's membership of a room this
/// server is not in (an invitation from another server, its rejection), kept out of band.
const MEMBER_EVENTS: &str = "
    SELECT e.event_nid, i.event_id, e.stream_position, e.state_after, e.json
    FROM state_keys k
    JOIN events e ON e.state_key_nid = k.state_key_nid AND e.room_id = $1
    JOIN event_ids i ON i.event_nid = e.event_nid
    WHERE k.event_type = 'm.room.member' AND k.state_key = $2
      AND e.rejection IS NULL AND NOT e.soft_failed AND (NOT e.outlier OR e.stream_position IS NOT NULL)";

/// The user's latest member event in the room at or before `position`: their membership as
/// of that point of the stream, whatever happened after it.
pub(crate) async fn member_event_at(
    db: impl PgExecutor<'_>,
    room_id: &str,
    user_id: &str,
    position: i64,
) -> sqlx::Result<Option<MemberEvent>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{MEMBER_EVENTS} AND e.stream_position <= $3 ORDER BY e.stream_position DESC LIMIT 1"
    )))
    .bind(room_id)
    .bind(user_id)
    .bind(position)
    .fetch_optional(db)
    .await
}

/// The user's member events in the room with `after < position <= upto`, oldest first.
pub(crate) async fn member_events_between(
    db: impl PgExecutor<'_>,
    room_id: &str,
    user_id: &str,
    after: i64,
    upto: i64,
) -> sqlx::Result<Vec<MemberEvent>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{MEMBER_EVENTS} AND e.stream_position > $3 AND e.stream_position <= $4 ORDER BY e.stream_position"
    )))
    .bind(room_id)
    .bind(user_id)
    .bind(after)
    .bind(upto)
    .fetch_all(db)
    .await
}

/// Whether the room's state changed (a state event entered the timeline) with
/// `after < position <= upto`.
pub(crate) async fn state_changed(db: impl PgExecutor<'_>, room_id: &str, after: i64, upto: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (
             SELECT 1 FROM events
             WHERE room_id = $1 AND stream_position > $2 AND stream_position <= $3
               AND state_key_nid IS NOT NULL AND rejection IS NULL AND NOT soft_failed AND NOT outlier)",
    )
    .bind(room_id)
    .bind(after)
    .bind(upto)
    .fetch_one(db)
    .await
}

/// One account data entry; `room_id` is empty for global account data.
#[derive(Clone, Debug, FromRow)]
pub(crate) struct AccountDataRow {
    pub room_id: String,
    pub data_type: String,
    pub content: StoredJson,
}

/// The user's account data (global and per room) last changed with `after < position <= upto`
/// (all of it up to `upto` when `after` is `None`), in stream order.
pub(crate) async fn account_data_between(
    db: impl PgExecutor<'_>,
    user_id: &str,
    after: Option<i64>,
    upto: i64,
) -> sqlx::Result<Vec<AccountDataRow>> {
    sqlx::query_as(
        "SELECT room_id, data_type, content FROM account_data
         WHERE user_id = $1 AND stream_position > COALESCE($2, 0) AND stream_position <= $3
         ORDER BY stream_position",
    )
    .bind(user_id)
    .bind(after)
    .bind(upto)
    .fetch_all(db)
    .await
}

/// Where an incremental window `(after, upto]` has anything for a user: one statement, so
/// that a sync which finds nothing (most wake-ups of a long-poll in a busy server) costs one
/// round trip instead of one per stream. The per-user flags may say yes where the precise
/// query then finds nothing for this user (presence and device-list changes of strangers);
/// they never say no where it would find something.
#[derive(Clone, Debug, Default)]
pub(crate) struct WindowNews {
    /// Of `rooms`, those with timeline events in the window.
    pub rooms_with_events: Vec<String>,
    /// Whether any of `rooms` has a member event in the window (device lists follow joins
    /// and leaves).
    pub member_changes: bool,
    pub rooms_with_typing: Vec<String>,
    /// Rooms with receipts in the window the user may see (private ones only their own).
    pub rooms_with_receipts: Vec<String>,
    pub account_data: bool,
    pub presence: bool,
    pub device_list_changes: bool,
    /// To-device messages for the device up to `upto`: new ones, or acknowledged ones to
    /// delete.
    pub to_device: bool,
    /// The user's `m.ignored_user_list` content (read here to save building rooms a query).
    pub ignored_user_list: Option<StoredJson>,
    /// The device's key counts, which every answer carries (empty without a device).
    pub key_counts: crate::db::e2ee_keys::DeviceKeyCounts,
    /// The user's read positions in the rooms with events in the window (what their unread
    /// counts start from; read here to save each woken sync a statement).
    pub read_positions: Vec<crate::db::unread::ReadPositionRow>,
    /// The user's push action rows in the window, newest first, at most
    /// [`WINDOW_UNREAD_ROWS`] + 1 (more than that: count them with their own query).
    pub unread_rows: Vec<RoomUnreadRow>,
    /// Whether the user's memberships moved after the position the caller knew them through.
    pub memberships_moved: bool,
}

/// The most push action rows [`window_news`] carries whole.
pub(crate) const WINDOW_UNREAD_ROWS: usize = 1000;

/// [`WindowNews`] as its statement returns it: the read positions and push action rows as one
/// array per column. Arrays rather than a JSON object per row: 6 % less of the statement's
/// execution time over a 1,000-member fan-out (pg_stat_statements), and no JSON to decode.
#[derive(FromRow)]
struct NewsRow {
    rooms_with_events: Vec<String>,
    member_changes: bool,
    rooms_with_typing: Vec<String>,
    rooms_with_receipts: Vec<String>,
    account_data: bool,
    presence: bool,
    device_list_changes: bool,
    to_device: bool,
    ignored_user_list: Option<StoredJson>,
    #[sqlx(flatten)]
    key_counts: crate::db::e2ee_keys::DeviceKeyCounts,
    read_rooms: Option<Vec<String>>,
    read_joined: Option<Vec<Option<i64>>>,
    read_threads: Option<Vec<Option<String>>>,
    read_at: Option<Vec<Option<i64>>>,
    unread_rooms: Option<Vec<String>>,
    unread_positions: Option<Vec<i64>>,
    unread_threads: Option<Vec<String>>,
    unread_senders: Option<Vec<String>>,
    unread_notify: Option<Vec<bool>>,
    unread_highlight: Option<Vec<bool>>,
    memberships_moved: bool,
}

impl NewsRow {
    fn into_news(self) -> WindowNews {
        let read_positions = zip4(self.read_rooms, self.read_joined, self.read_threads, self.read_at)
            .map(|(room_id, joined, thread_id, position)| crate::db::unread::ReadPositionRow {
                room_id,
                joined,
                thread_id,
                position,
            })
            .collect();
        let rooms = self.unread_rooms.unwrap_or_default().into_iter();
        let rows = zip4(self.unread_positions, self.unread_threads, self.unread_senders, self.unread_notify);
        let mut unread_rows: Vec<RoomUnreadRow> = rooms
            .zip(rows)
            .zip(self.unread_highlight.unwrap_or_default())
            .map(|((room_id, (stream_position, thread_id, sender, notify)), highlight)| RoomUnreadRow {
                room_id,
                row: crate::db::push_actions::UnreadRow { stream_position, thread_id, sender, notify, highlight },
            })
            .collect();
        // Newest first (the arrays were built in that order; this does not rely on it).
        unread_rows.sort_by_key(|row| std::cmp::Reverse(row.row.stream_position));
        WindowNews {
            rooms_with_events: self.rooms_with_events,
            member_changes: self.member_changes,
            rooms_with_typing: self.rooms_with_typing,
            rooms_with_receipts: self.rooms_with_receipts,
            account_data: self.account_data,
            presence: self.presence,
            device_list_changes: self.device_list_changes,
            to_device: self.to_device,
            ignored_user_list: self.ignored_user_list,
            key_counts: self.key_counts,
            read_positions,
            unread_rows,
            memberships_moved: self.memberships_moved,
        }
    }
}

/// Four column arrays (absent when the statement aggregated no row) as rows.
fn zip4<A, B, C, D>(
    a: Option<Vec<A>>,
    b: Option<Vec<B>>,
    c: Option<Vec<C>>,
    d: Option<Vec<D>>,
) -> impl Iterator<Item = (A, B, C, D)> {
    let (a, b, c, d) = (a.unwrap_or_default(), b.unwrap_or_default(), c.unwrap_or_default(), d.unwrap_or_default());
    a.into_iter().zip(b).zip(c).zip(d).map(|(((a, b), c), d)| (a, b, c, d))
}

/// One sync's question to [`window_news`]: the user's rooms where events can reach the window
/// `(after, upto]`, and the position the user's memberships are known through (if known
/// rather than read now).
#[derive(Clone, Debug)]
pub(crate) struct NewsQuery {
    pub user_id: String,
    pub device_id: Option<String>,
    pub rooms: Vec<String>,
    pub after: i64,
    pub upto: i64,
    pub memberships_through: Option<i64>,
}

/// The [`WindowNews`] of each query, in the queries' order, in one statement however many
/// there are: the syncs a message wakes ask together. What is the same for every sync of a
/// room and window (events, member changes, typing, public receipts) is read once per room
/// and window; what is the same for a window (presence, device lists) once per window; each
/// user's own rows (receipts, push actions, keys, account data) by their user.
pub(crate) async fn window_news(db: impl PgExecutor<'_>, queries: &[NewsQuery]) -> sqlx::Result<Vec<WindowNews>> {
    let column = |read: fn(&NewsQuery) -> i64| queries.iter().map(read).collect::<Vec<i64>>();
    let users: Vec<&str> = queries.iter().map(|query| query.user_id.as_str()).collect();
    let devices: Vec<Option<&str>> = queries.iter().map(|query| query.device_id.as_deref()).collect();
    let throughs: Vec<Option<i64>> = queries.iter().map(|query| query.memberships_through).collect();
    let (mut room_of, mut rooms) = (Vec::new(), Vec::new());
    for (index, query) in (1i64..).zip(queries) {
        room_of.extend(std::iter::repeat_n(index, query.rooms.len()));
        rooms.extend(query.rooms.iter().map(String::as_str));
    }
    let found: Vec<NewsRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH q AS MATERIALIZED (
           SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
             WITH ORDINALITY AS q (user_id, device_id, after, upto, through, idx)),
         asked AS MATERIALIZED (
           SELECT x.idx, x.room_id, q.user_id, q.after, q.upto
           FROM unnest($6::bigint[], $7::text[]) AS x (idx, room_id) JOIN q ON q.idx = x.idx),
         room_windows AS MATERIALIZED (
           SELECT w.room_id, w.after, w.upto,
             EXISTS (SELECT 1 FROM events e
                     WHERE e.room_id = w.room_id AND e.stream_position > w.after AND e.stream_position <= w.upto
                       AND e.rejection IS NULL AND NOT e.soft_failed AND NOT e.outlier) AS has_events,
             EXISTS (SELECT 1 FROM events e
                     WHERE e.room_id = w.room_id AND e.stream_position > w.after AND e.stream_position <= w.upto
                       AND e.event_type = 'm.room.member') AS member_changes,
             EXISTS (SELECT 1 FROM typing t
                     WHERE t.room_id = w.room_id AND t.stream_position > w.after
                       AND t.stream_position <= w.upto) AS typing,
             EXISTS (SELECT 1 FROM receipts r
                     WHERE r.room_id = w.room_id AND r.stream_position > w.after AND r.stream_position <= w.upto
                       AND r.receipt_type <> 'm.read.private') AS receipts,
             EXISTS (SELECT 1 FROM receipts r
                     WHERE r.room_id = w.room_id AND r.stream_position > w.after AND r.stream_position <= w.upto
                       AND r.receipt_type = 'm.read.private') AS private_receipts
           FROM (SELECT DISTINCT room_id, after, upto FROM asked) w),
         windows AS MATERIALIZED (
           SELECT w.after, w.upto,
             EXISTS (SELECT 1 FROM presence WHERE stream_position > w.after AND stream_position <= w.upto) AS presence,
             EXISTS (SELECT 1 FROM device_list_changes
                     WHERE stream_position > w.after AND stream_position <= w.upto) AS device_list_changes
           FROM (SELECT DISTINCT after, upto FROM q) w),
         per_user AS MATERIALIZED (
           SELECT a.idx,
             array_agg(a.room_id ORDER BY a.room_id) FILTER (WHERE w.has_events) AS rooms_with_events,
             bool_or(w.member_changes) AS member_changes,
             array_agg(a.room_id ORDER BY a.room_id) FILTER (WHERE w.typing) AS rooms_with_typing,
             -- A private receipt is seen only by its own user.
             array_agg(a.room_id ORDER BY a.room_id) FILTER (WHERE w.receipts OR w.private_receipts AND EXISTS (
               SELECT 1 FROM receipts r
               WHERE r.room_id = a.room_id AND r.stream_position > a.after AND r.stream_position <= a.upto
                 AND r.receipt_type = 'm.read.private' AND r.user_id = a.user_id)) AS rooms_with_receipts
           FROM asked a JOIN room_windows w ON (w.room_id, w.after, w.upto) = (a.room_id, a.after, a.upto)
           GROUP BY a.idx)
         SELECT
           COALESCE(p.rooms_with_events, '{{}}') AS rooms_with_events,
           COALESCE(p.member_changes, false) AS member_changes,
           COALESCE(p.rooms_with_typing, '{{}}') AS rooms_with_typing,
           COALESCE(p.rooms_with_receipts, '{{}}') AS rooms_with_receipts,
           EXISTS (SELECT 1 FROM account_data
                   WHERE user_id = q.user_id AND stream_position > q.after AND stream_position <= q.upto) AS account_data,
           w.presence,
           w.device_list_changes,
           EXISTS (SELECT 1 FROM to_device_messages
                   WHERE user_id = q.user_id AND device_id = q.device_id AND stream_position <= q.upto) AS to_device,
           (SELECT content FROM account_data
            WHERE user_id = q.user_id AND room_id = '' AND data_type = 'm.ignored_user_list') AS ignored_user_list,
           {key_counts},
           rp.rooms AS read_rooms, rp.joined AS read_joined, rp.threads AS read_threads, rp.positions AS read_at,
           ur.rooms AS unread_rooms, ur.positions AS unread_positions, ur.threads AS unread_threads,
           ur.senders AS unread_senders, ur.notify AS unread_notify, ur.highlight AS unread_highlight,
           (q.through IS NOT NULL
            AND (EXISTS (SELECT 1 FROM room_memberships WHERE user_id = q.user_id AND stream_position > q.through)
                 -- A room's full state arriving changes what the memberships row says of it
                 -- (`full_state_at`) without moving the membership itself.
                 OR EXISTS (SELECT 1 FROM partial_state_completed c
                            JOIN room_memberships m ON m.room_id = c.room_id AND m.user_id = q.user_id
                            WHERE c.stream_position > q.through))) AS memberships_moved
         FROM q
         JOIN windows w ON (w.after, w.upto) = (q.after, q.upto)
         LEFT JOIN per_user p ON p.idx = q.idx
         -- One aggregation pass per user: the arrays of a pass are aligned row by row.
         LEFT JOIN LATERAL (
           SELECT array_agg(r.room_id) AS rooms, array_agg(r.joined) AS joined, array_agg(r.thread_id) AS threads,
             array_agg(r.position) AS positions
           FROM (SELECT {read_columns} {read_from} AND m.room_id = ANY(p.rooms_with_events)) r) rp ON true
         LEFT JOIN LATERAL (
           SELECT array_agg(a.room_id) AS rooms, array_agg(a.stream_position) AS positions,
             array_agg(a.thread_id) AS threads, array_agg(a.sender) AS senders, array_agg(a.notify) AS notify,
             array_agg(a.highlight) AS highlight
           FROM (SELECT room_id, stream_position, thread_id, sender, notify, highlight FROM event_push_actions
                 WHERE user_id = q.user_id AND room_id = ANY(p.rooms_with_events)
                   AND stream_position > q.after AND stream_position <= q.upto
                 ORDER BY stream_position DESC LIMIT {unread_limit}) a) ur ON true
         ORDER BY q.idx",
        read_columns = crate::db::unread::READ_POSITION_COLUMNS,
        read_from = crate::db::unread::read_positions_from("q.user_id"),
        unread_limit = WINDOW_UNREAD_ROWS + 1,
        key_counts = crate::db::e2ee_keys::key_count_columns("q.user_id", "q.device_id"),
    )))
    .bind(users)
    .bind(devices)
    .bind(column(|query| query.after))
    .bind(column(|query| query.upto))
    .bind(throughs)
    .bind(room_of)
    .bind(rooms)
    .fetch_all(db)
    .await?;
    if found.len() != queries.len() {
        return Err(sqlx::Error::Protocol(format!(
            "window news: {} answers to {} queries",
            found.len(),
            queries.len()
        )));
    }
    Ok(found.into_iter().map(NewsRow::into_news).collect())
}
