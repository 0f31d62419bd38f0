//! Broadcast lists (`creators::broadcast`): subscriptions, lists and their members, and the
//! durable state of each broadcast's delivery.

use sqlx::{PgConnection, PgExecutor};

// ---- subscriptions ----

/// Subscribes `subscriber` to `creator` (again: nothing changes).
pub async fn subscribe(db: impl PgExecutor<'_>, creator: &str, subscriber: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO creator_subscriptions (creator, subscriber, since_ts) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(creator)
    .bind(subscriber)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn unsubscribe(db: impl PgExecutor<'_>, creator: &str, subscriber: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM creator_subscriptions WHERE creator = $1 AND subscriber = $2")
        .bind(creator)
        .bind(subscriber)
        .execute(db)
        .await?;
    Ok(())
}

/// One page of `creator`'s subscribers `(user_id, since_ts)`, by user id, after `after`.
pub async fn subscribers(
    db: impl PgExecutor<'_>,
    creator: &str,
    after: &str,
    limit: i64,
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT subscriber, since_ts FROM creator_subscriptions WHERE creator = $1 AND subscriber > $2
         ORDER BY subscriber LIMIT $3",
    )
    .bind(creator)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub async fn subscriber_count(db: impl PgExecutor<'_>, creator: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM creator_subscriptions WHERE creator = $1")
        .bind(creator)
        .fetch_one(db)
        .await
}

/// Those of `users` that may receive `creator`'s broadcasts: active local accounts that
/// subscribed to the creator or are joined to a room the creator is joined to.
pub async fn reachable(db: impl PgExecutor<'_>, creator: &str, users: &[String]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT u.user_id FROM users u
         WHERE u.user_id = ANY($2) AND NOT u.deactivated AND u.user_id <> $1
           AND (EXISTS (SELECT 1 FROM creator_subscriptions s WHERE s.creator = $1 AND s.subscriber = u.user_id)
                OR EXISTS (SELECT 1 FROM room_memberships m
                           JOIN room_memberships c ON c.room_id = m.room_id AND c.user_id = $1 AND c.membership = 'join'
                           WHERE m.user_id = u.user_id AND m.membership = 'join'))",
    )
    .bind(creator)
    .bind(users)
    .fetch_all(db)
    .await
}

/// Those of `users` (users of other servers) who share a joined room with `creator`, as far
/// as this server knows the rooms' members.
pub async fn remote_reachable(db: impl PgExecutor<'_>, creator: &str, users: &[String]) -> sqlx::Result<Vec<String>> {
    // Driven by the users, each one's memberships through their index: the plan stays an
    // index probe per user whatever the statistics (the statement runs with a generic plan).
    sqlx::query_scalar(
        "SELECT u.user_id FROM unnest($2::text[]) AS u (user_id)
         WHERE EXISTS (SELECT 1 FROM room_memberships m
                       JOIN room_memberships c ON c.room_id = m.room_id AND c.user_id = $1 AND c.membership = 'join'
                       WHERE m.user_id = u.user_id AND m.membership = 'join')",
    )
    .bind(creator)
    .bind(users)
    .fetch_all(db)
    .await
}

/// Those of `users` whose ignore list names `creator`.
pub async fn ignoring(db: impl PgExecutor<'_>, creator: &str, users: &[String]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT user_id FROM account_data
         WHERE user_id = ANY($2) AND room_id = '' AND data_type = 'm.ignored_user_list'
           AND jsonb_typeof(content -> 'ignored_users') = 'object' AND content -> 'ignored_users' ? $1",
    )
    .bind(creator)
    .bind(users)
    .fetch_all(db)
    .await
}

// ---- lists ----

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct ListSummary {
    pub list_id: String,
    pub name: String,
    pub created_ts: i64,
    pub members: i64,
}

/// Creates a list; `false` when the creator has a list of that name already.
pub async fn create_list(
    db: impl PgExecutor<'_>,
    list_id: &str,
    creator: &str,
    name: &str,
    now: i64,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO broadcast_lists (list_id, creator, name, created_ts) VALUES ($1, $2, $3, $4)
         ON CONFLICT (creator, name) DO NOTHING",
    )
    .bind(list_id)
    .bind(creator)
    .bind(name)
    .bind(now)
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Whether `creator` owns `list_id`.
pub async fn owns_list(db: impl PgExecutor<'_>, creator: &str, list_id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM broadcast_lists WHERE list_id = $1 AND creator = $2)")
        .bind(list_id)
        .bind(creator)
        .fetch_one(db)
        .await
}

pub async fn lists(db: impl PgExecutor<'_>, creator: &str) -> sqlx::Result<Vec<ListSummary>> {
    sqlx::query_as(
        "SELECT l.list_id, l.name, l.created_ts,
                (SELECT count(*) FROM broadcast_list_members m WHERE m.list_id = l.list_id) AS members
         FROM broadcast_lists l WHERE l.creator = $1 ORDER BY l.name",
    )
    .bind(creator)
    .fetch_all(db)
    .await
}

/// Renames a list the creator owns; `Err` of a unique violation when the name is taken.
pub async fn rename_list(db: impl PgExecutor<'_>, creator: &str, list_id: &str, name: &str) -> sqlx::Result<bool> {
    let renamed = sqlx::query("UPDATE broadcast_lists SET name = $3 WHERE list_id = $1 AND creator = $2")
        .bind(list_id)
        .bind(creator)
        .bind(name)
        .execute(db)
        .await?;
    Ok(renamed.rows_affected() == 1)
}

pub async fn delete_list(db: impl PgExecutor<'_>, creator: &str, list_id: &str) -> sqlx::Result<bool> {
    let deleted = sqlx::query("DELETE FROM broadcast_lists WHERE list_id = $1 AND creator = $2")
        .bind(list_id)
        .bind(creator)
        .execute(db)
        .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Adds members (those already on the list stay); the number newly added.
pub async fn add_members(db: impl PgExecutor<'_>, list_id: &str, users: &[String], now: i64) -> sqlx::Result<u64> {
    let added = sqlx::query(
        "INSERT INTO broadcast_list_members (list_id, user_id, added_ts)
         SELECT $1, user_id, $3 FROM unnest($2::text[]) AS user_id
         ON CONFLICT DO NOTHING",
    )
    .bind(list_id)
    .bind(users)
    .bind(now)
    .execute(db)
    .await?;
    Ok(added.rows_affected())
}

pub async fn remove_member(db: impl PgExecutor<'_>, list_id: &str, user: &str) -> sqlx::Result<bool> {
    let removed = sqlx::query("DELETE FROM broadcast_list_members WHERE list_id = $1 AND user_id = $2")
        .bind(list_id)
        .bind(user)
        .execute(db)
        .await?;
    Ok(removed.rows_affected() == 1)
}

/// One page of a list's members, by user id, after `after`.
pub async fn members(db: impl PgExecutor<'_>, list_id: &str, after: &str, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT user_id FROM broadcast_list_members WHERE list_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3",
    )
    .bind(list_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

// ---- broadcasts ----

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct Broadcast {
    pub broadcast_id: String,
    pub creator: String,
    pub list_id: String,
    pub content: serde_json::Value,
    pub state: String,
    pub total: i32,
    /// Recipients settled so far, by outcome (the rest are pending).
    pub sent: i32,
    pub skipped: i32,
    pub failed: i32,
    pub created_ts: i64,
    pub finished_ts: Option<i64>,
}

const BROADCAST_COLUMNS: &str =
    "broadcast_id, creator, list_id, content, state, total, sent, skipped, failed, created_ts, finished_ts";

/// The broadcast a client transaction started, if any.
pub async fn by_transaction(
    db: impl PgExecutor<'_>,
    creator: &str,
    device_id: &str,
    txn_id: &str,
) -> sqlx::Result<Option<Broadcast>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE creator = $1 AND device_id = $2 AND txn_id = $3"
    )))
    .bind(creator)
    .bind(device_id)
    .bind(txn_id)
    .fetch_optional(db)
    .await
}

pub async fn broadcast(db: impl PgExecutor<'_>, broadcast_id: &str) -> sqlx::Result<Option<Broadcast>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE broadcast_id = $1")))
        .bind(broadcast_id)
        .fetch_optional(db)
        .await
}

/// What starting a broadcast needs recorded.
pub struct NewBroadcast<'a> {
    pub broadcast_id: &'a str,
    pub creator: &'a str,
    pub device_id: &'a str,
    pub txn_id: &'a str,
    pub list_id: &'a str,
    pub content: &'a serde_json::Value,
    pub now: i64,
}

/// Records a broadcast and one pending row per member of its list, in the caller's
/// transaction; `false` when the same client transaction recorded one already.
pub async fn insert_broadcast(conn: &mut PgConnection, new: NewBroadcast<'_>) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO broadcasts (broadcast_id, creator, device_id, txn_id, list_id, content, state, total, created_ts)
         VALUES ($1, $2, $3, $4, $5, $6, 'running',
                 (SELECT count(*) FROM broadcast_list_members WHERE list_id = $5), $7)
         ON CONFLICT (creator, device_id, txn_id) DO NOTHING",
    )
    .bind(new.broadcast_id)
    .bind(new.creator)
    .bind(new.device_id)
    .bind(new.txn_id)
    .bind(new.list_id)
    .bind(new.content)
    .bind(new.now)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO broadcast_recipients (broadcast_id, user_id, state)
         SELECT $1, user_id, 'pending' FROM broadcast_list_members WHERE list_id = $2",
    )
    .bind(new.broadcast_id)
    .bind(new.list_id)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// Broadcasts still being delivered (left so by a stop or a crash), oldest first.
pub async fn running(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT broadcast_id FROM broadcasts WHERE state = 'running' ORDER BY created_ts")
        .fetch_all(db)
        .await
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct PendingRecipient {
    pub user_id: String,
    pub room_id: Option<String>,
}

/// The next `limit` recipients still to deliver to, by user id.
pub async fn pending(db: impl PgExecutor<'_>, broadcast_id: &str, limit: i64) -> sqlx::Result<Vec<PendingRecipient>> {
    sqlx::query_as(
        "SELECT user_id, room_id FROM broadcast_recipients
         WHERE broadcast_id = $1 AND state = 'pending' ORDER BY user_id LIMIT $2",
    )
    .bind(broadcast_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// One recipient's outcome.
pub struct Outcome {
    pub user_id: String,
    /// `sent`, `skipped` or `failed`.
    pub state: &'static str,
    pub room_id: Option<String>,
    pub event_id: Option<String>,
}

/// Records the outcomes of a batch of recipients in one statement.
pub async fn record_outcomes(db: impl PgExecutor<'_>, broadcast_id: &str, outcomes: &[Outcome]) -> sqlx::Result<()> {
    let users: Vec<&str> = outcomes.iter().map(|o| o.user_id.as_str()).collect();
    let states: Vec<&str> = outcomes.iter().map(|o| o.state).collect();
    let rooms: Vec<Option<&str>> = outcomes.iter().map(|o| o.room_id.as_deref()).collect();
    let events: Vec<Option<&str>> = outcomes.iter().map(|o| o.event_id.as_deref()).collect();
    // The broadcast's counters move with the recipients that were still pending (see
    // migration 0047): recording a chunk again changes nothing.
    sqlx::query(
        "WITH settled AS (
             UPDATE broadcast_recipients r
             SET state = o.state, room_id = COALESCE(o.room_id, r.room_id), event_id = o.event_id
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS o(user_id, state, room_id, event_id)
             WHERE r.broadcast_id = $1 AND r.user_id = o.user_id AND r.state = 'pending'
             RETURNING r.state
         )
         UPDATE broadcasts
         SET sent = sent + (SELECT count(*) FROM settled WHERE state = 'sent'),
             skipped = skipped + (SELECT count(*) FROM settled WHERE state = 'skipped'),
             failed = failed + (SELECT count(*) FROM settled WHERE state = 'failed')
         WHERE broadcast_id = $1",
    )
    .bind(broadcast_id)
    .bind(&users)
    .bind(&states)
    .bind(&rooms)
    .bind(&events)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn finish(db: impl PgExecutor<'_>, broadcast_id: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE broadcasts SET state = 'done', finished_ts = $2 WHERE broadcast_id = $1 AND state = 'running'")
        .bind(broadcast_id)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

/// Takes the session-level lock that lets one delivery run per broadcast, across processes;
/// held until released or the connection closes.
pub async fn try_lock_delivery(conn: &mut PgConnection, broadcast_id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended('broadcast:' || $1, 0))")
        .bind(broadcast_id)
        .fetch_one(conn)
        .await
}

// ---- direct chats ----

/// For each of `users`, a room `creator` is joined to that the user is joined or invited to,
/// from `candidates` (`(user, room)` pairs, such as the creator's `m.direct`).
pub async fn shared_rooms_among(
    db: impl PgExecutor<'_>,
    creator: &str,
    candidates: &[(String, String)],
) -> sqlx::Result<Vec<(String, String)>> {
    let users: Vec<&str> = candidates.iter().map(|(user, _)| user.as_str()).collect();
    let rooms: Vec<&str> = candidates.iter().map(|(_, room)| room.as_str()).collect();
    sqlx::query_as(
        "SELECT DISTINCT ON (c.user_id) c.user_id, c.room_id
         FROM unnest($2::text[], $3::text[]) AS c(user_id, room_id)
         JOIN room_memberships m ON m.room_id = c.room_id AND m.user_id = c.user_id AND m.membership IN ('join', 'invite')
         JOIN room_memberships o ON o.room_id = c.room_id AND o.user_id = $1 AND o.membership = 'join'
         ORDER BY c.user_id, m.stream_position DESC",
    )
    .bind(creator)
    .bind(&users)
    .bind(&rooms)
    .fetch_all(db)
    .await
}

/// For each of `users`, a room with exactly two members — `creator` joined and the user
/// joined or invited (their DM, whether `m.direct` lists it or not).
pub async fn two_member_rooms(
    db: impl PgExecutor<'_>,
    creator: &str,
    users: &[String],
) -> sqlx::Result<Vec<(String, String)>> {
    // Driven by the users (each one's memberships through their index, then the creator's in
    // each of those rooms through the room's key), not by the creator's rooms: the creator of a
    // large broadcast is in a room per recipient, and going through those probed every room
    // for every user of the chunk (252 ms a chunk at 2,000 recipients, growing with them).
    // `LIMIT 1` keeps the lateral query apart, so the plan is this one whatever the statistics.
    sqlx::query_as(
        "SELECT u.user_id, r.room_id
         FROM unnest($2::text[]) AS u (user_id)
         CROSS JOIN LATERAL (
             SELECT m.room_id FROM room_memberships m
             JOIN room_memberships o ON o.room_id = m.room_id AND o.user_id = $1 AND o.membership = 'join'
             WHERE m.user_id = u.user_id AND m.membership IN ('join', 'invite')
               AND (SELECT count(*) FROM room_memberships a
                    WHERE a.room_id = m.room_id AND a.membership IN ('join', 'invite')) = 2
             ORDER BY m.stream_position DESC LIMIT 1
         ) r",
    )
    .bind(creator)
    .bind(users)
    .fetch_all(db)
    .await
}
