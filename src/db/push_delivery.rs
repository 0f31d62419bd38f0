//! What push delivery reads: the notifications table (migration 0012) from a pusher's
//! cursor, with what a push gateway is shown about each event; and the per-pusher delivery
//! locks.

use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};

/// Pushers whose user has a notification to push above the pusher's cursor, up to `upto`
/// (at start-up: whatever was left pending).
pub async fn pushers_with_pending(db: impl PgExecutor<'_>, upto: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT p.pusher_id FROM pushers p
         WHERE EXISTS (SELECT 1 FROM notifications n
                       WHERE n.user_id = p.user_id AND n.notify
                         AND n.stream_position > p.delivered_upto AND n.stream_position <= $1)",
    )
    .bind(upto)
    .fetch_all(db)
    .await
}

/// Pushers whose user got a notification to push at a position in `(after, upto]` that is
/// above the pusher's cursor.
pub async fn pushers_notified_between(db: impl PgExecutor<'_>, after: i64, upto: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT DISTINCT p.pusher_id
         FROM notifications n JOIN pushers p ON p.user_id = n.user_id
         WHERE n.stream_position > $1 AND n.stream_position <= $2 AND n.notify
           AND n.stream_position > p.delivered_upto",
    )
    .bind(after)
    .bind(upto)
    .fetch_all(db)
    .await
}

/// A notification to push, with the event and its room as the gateway is shown them.
#[derive(Debug, FromRow)]
pub struct Pending {
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

/// The user's first notification to push in `(after, upto]`.
pub async fn next_pending(
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

static NEXT_PENDING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let state_content = |event_type: &str, state_key: &str, field: &str| {
        format!(
            "(SELECT (s.json::jsonb) -> 'content' ->> '{field}'
              FROM state_keys k JOIN current_state cs ON cs.state_key_nid = k.state_key_nid AND cs.room_id = e.room_id
              JOIN events s ON s.event_nid = cs.event_nid
              WHERE k.event_type = '{event_type}' AND k.state_key = {state_key})"
        )
    };
    format!(
        "SELECT n.stream_position, i.event_id, e.room_id, e.event_type, e.sender, k.state_key, e.json,
                EXISTS (SELECT 1 {redaction}) AS redacted, n.actions,
                {display_name} AS sender_display_name, {name} AS room_name, {alias} AS room_alias
         FROM notifications n
         JOIN events e ON e.event_nid = n.event_nid
         JOIN event_ids i ON i.event_nid = e.event_nid
         LEFT JOIN state_keys k ON k.state_key_nid = e.state_key_nid
         WHERE n.user_id = $1 AND n.stream_position > $2 AND n.stream_position <= $3 AND n.notify
           AND e.sender <> $1
         ORDER BY n.stream_position LIMIT 1",
        redaction = super::relations::applying_redaction("e.event_nid"),
        display_name = state_content("m.room.member", "e.sender", "displayname"),
        name = state_content("m.room.name", "''", "name"),
        alias = state_content("m.room.canonical_alias", "''", "alias"),
    )
});

/// The user's unread notifications across their rooms: the badge a push carries.
pub async fn unread_count(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM notifications n WHERE n.user_id = $1 AND n.notify")
        .bind(user_id)
        .fetch_one(db)
        .await
}

/// Takes a session-level advisory lock if it is free.
pub async fn try_lock(conn: &mut PgConnection, class: i32, key: i32) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)").bind(class).bind(key).fetch_one(conn).await
}

pub async fn unlock(conn: &mut PgConnection, class: i32, key: i32) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_unlock($1, $2)").bind(class).bind(key).execute(conn).await?;
    Ok(())
}
