//! What push delivery reads: `event_push_actions` (migration 0012: what each user's push rules
//! decided for each event, written in the event's transaction) from a pusher's cursor, with
//! what a push gateway is shown about each event; and the badge count.

use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use std::sync::LazyLock;

/// Pushers whose user has a notification to push above the pusher's cursor, up to `upto`
/// (at start-up: whatever was left pending).
pub(crate) async fn pushers_with_pending(db: impl PgExecutor<'_>, upto: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT p.pusher_id FROM pushers p
         WHERE EXISTS (SELECT 1 FROM event_push_actions a
                       WHERE a.user_id = p.user_id AND a.notify
                         AND a.stream_position > p.delivered_upto AND a.stream_position <= $1)",
    )
    .bind(upto)
    .fetch_all(db)
    .await
}

/// Pushers whose user got a notification to push at a position in `(after, upto]` that is
/// above the pusher's cursor.
pub(crate) async fn pushers_notified_between(db: impl PgExecutor<'_>, after: i64, upto: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT DISTINCT p.pusher_id
         FROM event_push_actions a JOIN pushers p ON p.user_id = a.user_id
         WHERE a.stream_position > $1 AND a.stream_position <= $2 AND a.notify
           AND a.stream_position > p.delivered_upto",
    )
    .bind(after)
    .bind(upto)
    .fetch_all(db)
    .await
}

/// A notification to push, with the event and its room as the gateway is shown them.
#[derive(Debug, FromRow)]
pub(crate) struct Pending {
    pub stream_position: i64,
    pub event_id: String,
    pub room_id: String,
    pub event_type: String,
    pub sender: String,
    pub state_key: Option<String>,
    pub json: String,
    /// A redaction applies: the content is not to be shown.
    pub redacted: bool,
    /// The actions the user's push rules gave (with the tweaks).
    pub actions: Value,
    pub sender_display_name: Option<String>,
    pub room_name: Option<String>,
    pub room_alias: Option<String>,
}

/// The user's first notification to push in `(after, upto]`. One they have read meanwhile (on
/// another device, say, while the gateway was down) is not pushed any more, as Synapse does.
pub(crate) async fn next_pending(
    db: impl PgExecutor<'_>,
    user_id: &str,
    after: i64,
    upto: i64,
) -> sqlx::Result<Option<Pending>> {
    sqlx::query_as(sqlx::AssertSqlSafe(NEXT_PENDING.as_str()))
        .bind(user_id)
        .bind(after)
        .bind(upto)
        .fetch_optional(db)
        .await
}

static NEXT_PENDING: LazyLock<String> = LazyLock::new(|| {
    let state_content = |event_type: &str, state_key: &str, field: &str| {
        format!(
            "(SELECT (s.json::jsonb) -> 'content' ->> '{field}'
              FROM state_keys k JOIN current_state cs ON cs.state_key_nid = k.state_key_nid AND cs.room_id = e.room_id
              JOIN events s ON s.event_nid = cs.event_nid
              WHERE k.event_type = '{event_type}' AND k.state_key = {state_key})"
        )
    };
    format!(
        "SELECT a.stream_position, a.event_id, e.room_id, e.event_type, e.sender, k.state_key, e.json,
                EXISTS (SELECT 1 {redaction}) AS redacted, a.actions,
                {display_name} AS sender_display_name, {name} AS room_name, {alias} AS room_alias
         FROM event_push_actions a
         JOIN events e ON e.event_nid = a.event_nid
         LEFT JOIN state_keys k ON k.state_key_nid = e.state_key_nid
         WHERE a.user_id = $1 AND a.stream_position > $2 AND a.stream_position <= $3 AND a.notify
           AND a.sender <> $1
           AND a.stream_position > COALESCE({read}, 0)
         ORDER BY a.stream_position LIMIT 1",
        redaction = super::relations::applying_redaction("e.event_nid"),
        display_name = state_content("m.room.member", "e.sender", "displayname"),
        name = state_content("m.room.name", "''", "name"),
        alias = state_content("m.room.canonical_alias", "''", "alias"),
        read = read_receipt("a.room_id", "a.user_id", "a.thread_id"),
    )
});

/// The badge a push carries (spec: `counts.unread`, "the number of unread messages a user has
/// across all of the rooms they are a member of"): the user's notifying events after their
/// read position, in every room they are joined to — by thread, as `/sync` counts them (an
/// unthreaded receipt covers every thread, a threaded one its own; before any receipt, what
/// came before they joined is read) — and, as Synapse counts, one for each pending invite.
pub(crate) async fn unread_count(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(UNREAD_COUNT.as_str())).bind(user_id).fetch_one(db).await
}

static UNREAD_COUNT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT COALESCE(SUM(unread.n), 0)::bigint
                + (SELECT COUNT(*) FROM room_memberships i WHERE i.user_id = $1 AND i.membership = 'invite')
         FROM room_memberships m
         CROSS JOIN LATERAL (
             SELECT COUNT(*) AS n FROM event_push_actions a
             WHERE a.user_id = m.user_id AND a.room_id = m.room_id AND a.notify
               AND a.stream_position > COALESCE({read}, m.joined_position, m.stream_position)
         ) unread
         WHERE m.user_id = $1 AND m.membership = 'join'",
        read = read_receipt("m.room_id", "m.user_id", "a.thread_id"),
    )
});

/// Where the user's read receipts put their reading of a thread of a room (NULL without
/// one): an unthreaded receipt covers every thread, a threaded one its own (spec: "Threaded
/// read receipts"; `push::notifications::read_up_to` in Rust).
fn read_receipt(room: &str, user: &str, thread: &str) -> String {
    format!(
        "(SELECT MAX(r.event_position) FROM receipts r
          WHERE r.room_id = {room} AND r.user_id = {user}
            AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id IN ('', {thread}))"
    )
}
