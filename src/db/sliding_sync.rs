//! Sliding sync's storage: the positions handed out on each connection (what a `pos` stands
//! for), and the per-room facts its room lists are sorted and filtered by.

use crate::db::json::StoredJson;
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};

/// One `pos` a connection was given.
#[derive(Debug, FromRow)]
pub(crate) struct PositionRow {
    pub stream_position: i64,
    pub sent: StoredJson,
}

/// The position `pos_id` of the device's connection `conn_id`, if it is still kept.
pub(crate) async fn position(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    conn_id: &str,
    pos_id: i64,
) -> sqlx::Result<Option<PositionRow>> {
    sqlx::query_as(
        "SELECT stream_position, sent FROM sliding_sync_positions
         WHERE pos_id = $1 AND user_id = $2 AND device_id = $3 AND conn_id = $4",
    )
    .bind(pos_id)
    .bind(user_id)
    .bind(device_id)
    .bind(conn_id)
    .fetch_optional(db)
    .await
}

/// What a new position of a connection records.
pub(crate) struct NewPosition<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub conn_id: &'a str,
    pub stream_position: i64,
    pub sent: &'a Value,
    pub now_ms: i64,
}

/// Records the connection's next position and forgets those before `answered` (the `pos`
/// the request came with; `None`: the connection starts over and every earlier one goes).
/// One statement, so the new position exists only with the old ones pruned. Returns its id.
pub(crate) async fn advance(db: impl PgExecutor<'_>, new: NewPosition<'_>, answered: Option<i64>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "WITH pruned AS (
             DELETE FROM sliding_sync_positions
             WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND ($7::BIGINT IS NULL OR pos_id < $7)
         )
         INSERT INTO sliding_sync_positions (user_id, device_id, conn_id, stream_position, sent, created_ts)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING pos_id",
    )
    .bind(new.user_id)
    .bind(new.device_id)
    .bind(new.conn_id)
    .bind(new.stream_position)
    .bind(sqlx::types::Json(new.sent))
    .bind(new.now_ms)
    .bind(answered)
    .fetch_one(db)
    .await
}

/// Event types that move a room up the list (Synapse's default bump types): what a person
/// would call activity, not every state change.
pub(crate) const BUMP_EVENT_TYPES: [&str; 7] = [
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon_info",
];

/// For each of the rooms, the position of its latest bump event at or before `upto` (rooms
/// without one are absent). Each room is read backwards along its stream index until the
/// first bump event, so a user in a thousand rooms costs a thousand short index scans.
pub(crate) async fn bump_stamps(
    db: impl PgExecutor<'_>,
    room_ids: &[String],
    upto: i64,
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT r.room_id, b.stream_position
         FROM unnest($1::TEXT[]) AS r (room_id)
         JOIN LATERAL (
             SELECT e.stream_position FROM events e
             WHERE e.room_id = r.room_id AND e.stream_position <= $2 AND e.event_type = ANY($3)
               AND e.rejection IS NULL AND NOT e.soft_failed AND NOT e.outlier
             ORDER BY e.stream_position DESC LIMIT 1
         ) b ON TRUE",
    )
    .bind(room_ids)
    .bind(upto)
    .bind(&BUMP_EVENT_TYPES[..])
    .fetch_all(db)
    .await
}

/// For each of the rooms with an event, or a receipt of `user_id`'s own (which changes their
/// unread counts), after `after` and at most `upto`: the latest such position.
pub(crate) async fn latest_positions(
    db: impl PgExecutor<'_>,
    room_ids: &[String],
    user_id: &str,
    after: i64,
    upto: i64,
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT room_id, latest FROM (
             SELECT r.room_id, GREATEST(
                 (SELECT e.stream_position FROM events e
                  WHERE e.room_id = r.room_id AND e.stream_position > $2 AND e.stream_position <= $3
                  ORDER BY e.stream_position DESC LIMIT 1),
                 (SELECT MAX(rc.stream_position) FROM receipts rc
                  WHERE rc.room_id = r.room_id AND rc.user_id = $4
                    AND rc.stream_position > $2 AND rc.stream_position <= $3)) AS latest
             FROM unnest($1::TEXT[]) AS r (room_id)) news
         WHERE latest IS NOT NULL",
    )
    .bind(room_ids)
    .bind(after)
    .bind(upto)
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// What the list filters ask of a room, from its current state.
#[derive(Debug, FromRow)]
pub(crate) struct RoomFacts {
    pub room_id: String,
    pub encrypted: bool,
    /// The create event's `content.type` (`m.space`, ...), when it has one.
    pub room_type: Option<String>,
}

/// [`RoomFacts`] of each of the rooms this server has the state of.
pub(crate) async fn room_facts(db: impl PgExecutor<'_>, room_ids: &[String]) -> sqlx::Result<Vec<RoomFacts>> {
    sqlx::query_as(
        "SELECT r.room_id,
                EXISTS (SELECT 1 FROM current_state cs JOIN state_keys k ON k.state_key_nid = cs.state_key_nid
                        WHERE cs.room_id = r.room_id AND k.event_type = 'm.room.encryption' AND k.state_key = '')
                    AS encrypted,
                (SELECT e.json::jsonb -> 'content' ->> 'type'
                 FROM current_state cs JOIN state_keys k ON k.state_key_nid = cs.state_key_nid
                 JOIN events e ON e.event_nid = cs.event_nid
                 WHERE cs.room_id = r.room_id AND k.event_type = 'm.room.create' AND k.state_key = '')
                    AS room_type
         FROM unnest($1::TEXT[]) AS r (room_id)",
    )
    .bind(room_ids)
    .fetch_all(db)
    .await
}

/// How many of the room's events are after `after` and at most `upto`, counting no further
/// than `limit` (a timeline's `num_live`).
pub(crate) async fn events_between(
    db: impl PgExecutor<'_>,
    room_id: &str,
    after: i64,
    upto: i64,
    limit: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM (
             SELECT 1 FROM events
             WHERE room_id = $1 AND stream_position > $2 AND stream_position <= $3
             LIMIT $4) live",
    )
    .bind(room_id)
    .bind(after)
    .bind(upto)
    .bind(limit)
    .fetch_one(db)
    .await
}

/// The user's tags on each room they tagged: the keys of its `m.tag` room account data's
/// `tags` (a tag removed is a key gone; content that is not an object has none).
pub(crate) async fn room_tags(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Vec<(String, Vec<String>)>> {
    sqlx::query_as(
        "SELECT room_id, ARRAY(SELECT jsonb_object_keys(content -> 'tags')) AS tags
         FROM account_data
         WHERE user_id = $1 AND room_id <> '' AND data_type = 'm.tag'
           AND jsonb_typeof(content -> 'tags') = 'object'",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// (space, child) for each room the spaces name as a child in their current state: an
/// `m.space.child` event whose `via` lists at least one server (one without is no child, as
/// the spec says of removed children). Read as `json`, not `jsonb`, which refuses an escaped
/// U+0000 another server's event may hold elsewhere in its content.
pub(crate) async fn space_children(
    db: impl PgExecutor<'_>,
    space_ids: &[String],
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT cs.room_id, k.state_key
         FROM current_state cs
         JOIN state_keys k ON k.state_key_nid = cs.state_key_nid
         JOIN events e ON e.event_nid = cs.event_nid
         WHERE cs.room_id = ANY($1) AND k.event_type = 'm.space.child'
           AND json_typeof(e.json::json -> 'content' -> 'via') = 'array'
           AND json_array_length(e.json::json -> 'content' -> 'via') > 0",
    )
    .bind(space_ids)
    .fetch_all(db)
    .await
}
