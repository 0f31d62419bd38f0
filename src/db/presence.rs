//! Presence: one row per user who ever set it, at the stream position of its last change.

use sqlx::{FromRow, PgExecutor};

#[derive(Clone, Debug, FromRow)]
pub(crate) struct PresenceRow {
    pub user_id: String,
    pub state: String,
    pub status_msg: Option<String>,
    pub last_active_ts: i64,
}

pub(crate) async fn get(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Option<PresenceRow>> {
    sqlx::query_as("SELECT user_id, state, status_msg, last_active_ts FROM presence WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await
}

/// The status message a presence write stores.
pub(crate) enum StatusMsg<'a> {
    /// Set (or cleared) by the user.
    Set(Option<&'a str>),
    /// Left as stored when the write lands: a write that carried the message it had read
    /// earlier would undo one set in between.
    Keep,
}

/// A change others should see: stored at a new `stream_position`.
pub(crate) async fn put(
    db: impl PgExecutor<'_>,
    user_id: &str,
    state: &str,
    status_msg: StatusMsg<'_>,
    last_active_ts: i64,
    stream_position: i64,
) -> sqlx::Result<()> {
    let (set_status, status_msg) = match status_msg {
        StatusMsg::Set(message) => (true, message),
        StatusMsg::Keep => (false, None),
    };
    sqlx::query(
        "INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_position) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (user_id) DO UPDATE SET state = EXCLUDED.state,
           status_msg = CASE WHEN $6 THEN EXCLUDED.status_msg ELSE presence.status_msg END,
           last_active_ts = EXCLUDED.last_active_ts, stream_position = EXCLUDED.stream_position",
    )
    .bind(user_id)
    .bind(state)
    .bind(status_msg)
    .bind(last_active_ts)
    .bind(stream_position)
    .bind(set_status)
    .execute(db)
    .await?;
    Ok(())
}

/// Records activity without a stream position: `last_active_ago` is computed when read, so
/// nobody needs to be woken for it.
pub(crate) async fn touch(db: impl PgExecutor<'_>, user_id: &str, last_active_ts: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE presence SET last_active_ts = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(last_active_ts)
        .execute(db)
        .await?;
    Ok(())
}

/// Whether both users are joined to at least one common room now.
pub(crate) async fn share_a_room(db: impl PgExecutor<'_>, user: &str, other: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM room_memberships mine
           JOIN room_memberships theirs ON theirs.room_id = mine.room_id
           WHERE mine.user_id = $1 AND mine.membership = 'join'
             AND theirs.user_id = $2 AND theirs.membership = 'join')",
    )
    .bind(user)
    .bind(other)
    .fetch_one(db)
    .await
}

/// Presence of the user and of everyone joined to a room the user is joined to, changed with
/// `since < position <= upto` (every change up to `upto` when `since` is `None`). Both ends
/// bound the index scan (an `IS NULL OR` lower end made the generic plan read every row).
pub(crate) async fn visible_changes(
    db: impl PgExecutor<'_>,
    user_id: &str,
    since: Option<i64>,
    upto: i64,
) -> sqlx::Result<Vec<PresenceRow>> {
    sqlx::query_as(
        "SELECT p.user_id, p.state, p.status_msg, p.last_active_ts FROM presence p
         WHERE p.stream_position <= $3 AND p.stream_position > COALESCE($2::BIGINT, '-9223372036854775808'::BIGINT)
           AND (p.user_id = $1 OR EXISTS (SELECT 1 FROM room_memberships mine
                 JOIN room_memberships theirs ON theirs.room_id = mine.room_id
                 WHERE mine.user_id = $1 AND mine.membership = 'join'
                   AND theirs.user_id = p.user_id AND theirs.membership = 'join'))
         ORDER BY p.stream_position",
    )
    .bind(user_id)
    .bind(since)
    .bind(upto)
    .fetch_all(db)
    .await
}

/// Presence, as of `upto`, of the users who came to share a joined room with `user` in
/// `(since, upto]` (either side joined there), whether or not it changed.
pub(crate) async fn of_newly_shared(
    db: impl PgExecutor<'_>,
    user_id: &str,
    since: i64,
    upto: i64,
) -> sqlx::Result<Vec<PresenceRow>> {
    sqlx::query_as(
        "SELECT p.user_id, p.state, p.status_msg, p.last_active_ts FROM presence p
         WHERE p.user_id <> $1 AND p.stream_position <= $3 AND EXISTS (
             SELECT 1 FROM room_memberships mine
             JOIN room_memberships theirs ON theirs.room_id = mine.room_id
             WHERE mine.user_id = $1 AND mine.membership = 'join'
               AND theirs.user_id = p.user_id AND theirs.membership = 'join'
               AND ((mine.joined_position > $2 AND mine.joined_position <= $3)
                    OR (theirs.joined_position > $2 AND theirs.joined_position <= $3)))
         ORDER BY p.user_id",
    )
    .bind(user_id)
    .bind(since)
    .bind(upto)
    .fetch_all(db)
    .await
}
