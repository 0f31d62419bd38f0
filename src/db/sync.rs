//! What changed for a user between two stream positions: the queries behind the `/sync`
//! response builder. Every range is `(after, upto]`, so consecutive windows never overlap.

use crate::db::json::StoredJson;
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
#[derive(Clone, Debug, Default, FromRow)]
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
    #[sqlx(flatten)]
    pub key_counts: crate::db::e2ee_keys::DeviceKeyCounts,
    /// The user's read positions in the rooms with events in the window (what their unread
    /// counts start from; read here to save each woken sync a statement).
    #[sqlx(json)]
    pub read_positions: Vec<crate::db::unread::ReadPositionRow>,
    /// The user's push action rows in the window, newest first, at most
    /// [`WINDOW_UNREAD_ROWS`] + 1 (more than that: count them with their own query).
    #[sqlx(json)]
    pub unread_rows: Vec<WindowUnreadRow>,
    /// Whether the user's memberships moved after the position the caller knew them through.
    pub memberships_moved: bool,
}

/// The most push action rows [`window_news`] carries whole.
pub(crate) const WINDOW_UNREAD_ROWS: usize = 1000;

/// One of the user's push action rows in the window, with its room.
#[derive(Clone, Debug, serde::Deserialize)]
pub(crate) struct WindowUnreadRow {
    pub room_id: String,
    #[serde(flatten)]
    pub row: crate::db::push_actions::UnreadRow,
}

pub(crate) async fn window_news(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: Option<&str>,
    rooms: &[String],
    (after, upto): (i64, i64),
    memberships_through: Option<i64>,
) -> sqlx::Result<WindowNews> {
    // The rooms with events are read once and serve the read positions and push rows too.
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH active AS MATERIALIZED (
           SELECT DISTINCT room_id FROM events
           WHERE room_id = ANY($3) AND stream_position > $4 AND stream_position <= $5
             AND rejection IS NULL AND NOT soft_failed AND NOT outlier)
         SELECT
           ARRAY(SELECT room_id FROM active) AS rooms_with_events,
           EXISTS (SELECT 1 FROM events
                   WHERE room_id = ANY($3) AND stream_position > $4 AND stream_position <= $5
                     AND event_type = 'm.room.member') AS member_changes,
           ARRAY(SELECT DISTINCT room_id FROM typing
                 WHERE room_id = ANY($3) AND stream_position > $4 AND stream_position <= $5) AS rooms_with_typing,
           ARRAY(SELECT DISTINCT room_id FROM receipts
                 WHERE room_id = ANY($3) AND stream_position > $4 AND stream_position <= $5
                   AND (receipt_type <> 'm.read.private' OR user_id = $1)) AS rooms_with_receipts,
           EXISTS (SELECT 1 FROM account_data
                   WHERE user_id = $1 AND stream_position > $4 AND stream_position <= $5) AS account_data,
           EXISTS (SELECT 1 FROM presence WHERE stream_position > $4 AND stream_position <= $5) AS presence,
           EXISTS (SELECT 1 FROM device_list_changes
                   WHERE stream_position > $4 AND stream_position <= $5) AS device_list_changes,
           EXISTS (SELECT 1 FROM to_device_messages
                   WHERE user_id = $1 AND device_id = $2 AND stream_position <= $5) AS to_device,
           (SELECT content FROM account_data
            WHERE user_id = $1 AND room_id = '' AND data_type = 'm.ignored_user_list') AS ignored_user_list,
           {key_counts},
           (SELECT COALESCE(jsonb_agg(to_jsonb(p)), '[]') FROM (
              SELECT {read_columns} {read_from} AND m.room_id IN (SELECT room_id FROM active)) p) AS read_positions,
           (SELECT COALESCE(jsonb_agg(to_jsonb(a) ORDER BY a.stream_position DESC), '[]') FROM (
              SELECT room_id, stream_position, thread_id, sender, notify, highlight FROM event_push_actions
              WHERE user_id = $1 AND room_id IN (SELECT room_id FROM active)
                AND stream_position > $4 AND stream_position <= $5
              ORDER BY stream_position DESC LIMIT {unread_limit}) a) AS unread_rows,
           ($6::bigint IS NOT NULL
            AND (EXISTS (SELECT 1 FROM room_memberships WHERE user_id = $1 AND stream_position > $6)
                 -- A room's full state arriving changes what the memberships row says of it
                 -- (`full_state_at`) without moving the membership itself.
                 OR EXISTS (SELECT 1 FROM partial_state_completed c
                            JOIN room_memberships m ON m.room_id = c.room_id AND m.user_id = $1
                            WHERE c.stream_position > $6))) AS memberships_moved",
        read_columns = crate::db::unread::READ_POSITION_COLUMNS,
        read_from = crate::db::unread::read_positions_from("$1"),
        unread_limit = WINDOW_UNREAD_ROWS + 1,
        key_counts = crate::db::e2ee_keys::KEY_COUNT_COLUMNS,
    )))
    .bind(user_id)
    .bind(device_id)
    .bind(rooms)
    .bind(after)
    .bind(upto)
    .bind(memberships_through)
    .fetch_one(db)
    .await
}
