//! Rooms, memberships and idempotent-send transaction ids.

use ruma::events::room::member::MembershipState;
use sqlx::{AssertSqlSafe, FromRow, PgConnection, PgExecutor, PgPool, Postgres};

pub async fn insert(
    conn: &mut PgConnection,
    room_id: &str,
    room_version: &str,
    creator: &str,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO rooms (room_id, room_version, creator, created_ts) VALUES ($1, $2, $3, $4)
         ON CONFLICT (room_id) DO NOTHING",
    )
    .bind(room_id)
    .bind(room_version)
    .bind(creator)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// [`insert`] for several rooms of one creator in one statement; the ids of those inserted
/// (a room id taken already is left out).
pub async fn insert_many(
    conn: &mut PgConnection,
    rooms: &[(&str, &str)],
    creator: &str,
    now_ms: i64,
) -> sqlx::Result<Vec<String>> {
    let ids: Vec<&str> = rooms.iter().map(|(room_id, _)| *room_id).collect();
    let versions: Vec<&str> = rooms.iter().map(|(_, version)| *version).collect();
    sqlx::query_scalar(
        "INSERT INTO rooms (room_id, room_version, creator, created_ts)
         SELECT r.room_id, r.version, $3, $4 FROM unnest($1::text[], $2::text[]) AS r (room_id, version)
         ON CONFLICT (room_id) DO NOTHING
         RETURNING room_id",
    )
    .bind(&ids)
    .bind(&versions)
    .bind(creator)
    .bind(now_ms)
    .fetch_all(conn)
    .await
}

pub async fn version(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT room_version FROM rooms WHERE room_id = $1").bind(room_id).fetch_optional(db).await
}

/// The versions of those of `room_ids` this server has, in one statement (an initial sync
/// learns every room's at once).
pub async fn versions_of(db: impl PgExecutor<'_>, room_ids: &[String]) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as("SELECT room_id, room_version FROM rooms WHERE room_id = ANY($1)").bind(room_ids).fetch_all(db).await
}

pub async fn set_membership(
    conn: &mut PgConnection,
    room_id: &str,
    user_id: &str,
    membership: &str,
    event_nid: i64,
    stream_position: i64,
) -> sqlx::Result<()> {
    // `joined_position` remembers the latest join through later leaves (history visibility);
    // coming back into a room (join, invite, knock) un-forgets it.
    sqlx::query(
        "INSERT INTO room_memberships (room_id, user_id, membership, event_nid, stream_position, joined_position)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $3 = 'join' THEN $5 END)
         ON CONFLICT (room_id, user_id) DO UPDATE
           SET membership = EXCLUDED.membership, event_nid = EXCLUDED.event_nid,
               stream_position = EXCLUDED.stream_position,
               joined_position = COALESCE(EXCLUDED.joined_position, room_memberships.joined_position),
               forgotten = room_memberships.forgotten AND EXCLUDED.membership IN ('leave', 'ban')",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(membership)
    .bind(event_nid)
    .bind(stream_position)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Clone, Debug, FromRow)]
pub struct Membership {
    #[sqlx(try_from = "String")]
    pub membership: MembershipState,
    pub stream_position: i64,
    /// Stream position of the user's latest join, whatever their membership is now.
    pub joined_position: Option<i64>,
}

pub async fn membership(db: impl PgExecutor<'_>, room_id: &str, user_id: &str) -> sqlx::Result<Option<Membership>> {
    sqlx::query_as(
        "SELECT membership, stream_position, joined_position FROM room_memberships
         WHERE room_id = $1 AND user_id = $2",
    )
    .bind(room_id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// Rooms the user is joined to.
pub async fn joined_rooms(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT room_id FROM room_memberships WHERE user_id = $1 AND membership = 'join' ORDER BY room_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// Joined members of a room.
pub async fn joined_members(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT user_id FROM room_memberships WHERE room_id = $1 AND membership = 'join' ORDER BY user_id",
    )
    .bind(room_id)
    .fetch_all(db)
    .await
}

/// What makes a send a retransmission of an earlier one: the same device, and the same path
/// (room, event type and transaction id).
#[derive(Clone, Copy, Debug)]
pub struct TxnKey<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub room_id: &'a str,
    pub event_type: &'a str,
    pub txn_id: &'a str,
}

/// The transaction ids `device_id` of `user_id` sent any of `event_ids` with, by event id.
///
/// The events are found by their ids first, and only then kept if the device sent them: asked
/// in one condition, PostgreSQL walked the primary key through every transaction the device
/// ever sent and compared each with every id asked (55 ms for a first sync of 1,000 events
/// by a device that had sent 5,000; 2.4 ms for a single event), where the ids' own index finds
/// each in one probe.
pub async fn transaction_ids_of(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    event_ids: &[String],
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "WITH sent AS MATERIALIZED (
             SELECT event_id, txn_id, user_id, device_id FROM event_transactions WHERE event_id = ANY($3))
         SELECT event_id, txn_id FROM sent WHERE user_id = $1 AND device_id = $2",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(event_ids)
    .fetch_all(db)
    .await
}

pub async fn transaction_event(db: impl PgExecutor<'_>, key: TxnKey<'_>) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT event_id FROM event_transactions
         WHERE user_id = $1 AND device_id = $2 AND room_id = $3 AND event_type = $4 AND txn_id = $5",
    )
    .bind(key.user_id)
    .bind(key.device_id)
    .bind(key.room_id)
    .bind(key.event_type)
    .bind(key.txn_id)
    .fetch_optional(db)
    .await
}

/// Serialises event creation in one room across every Hearth process on this database, for
/// the rest of the caller's transaction.
pub async fn lock_room(conn: &mut PgConnection, room_id: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(room_id).execute(conn).await?;
    Ok(())
}

/// [`lock_room`] for several rooms in one round trip.
pub async fn lock_rooms(conn: &mut PgConnection, room_ids: &[&str]) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended(r, 0)) FROM unnest($1::text[]) AS r")
        .bind(room_ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// Begins a transaction that holds the room's lock (as [`lock_room`] takes it) in one round
/// trip: the lock is taken in the simple query that opens the transaction. A simple query
/// carries no parameters, so the room id travels as an `E''` literal, whose escaping (a
/// backslash and a quote each doubled) does not depend on `standard_conforming_strings`.
pub async fn begin_locked(pool: &PgPool, room_id: &str) -> sqlx::Result<sqlx::Transaction<'static, Postgres>> {
    let literal = text_literal(room_id);
    pool.begin_with(AssertSqlSafe(format!("BEGIN; SELECT pg_advisory_xact_lock(hashtextextended({literal}, 0))"))).await
}

/// `text` as an `E''` literal for a simple query (which carries no parameters).
fn text_literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// [`begin_locked`] for several rooms (a commit group): the locks are taken in the order of
/// their keys, so that two transactions locking overlapping sets of rooms, in this process or
/// another, cannot each hold a lock the other waits for. The ordering subquery is not flattened
/// into the outer one (it has an `ORDER BY`), so the locks are taken in its order.
pub async fn begin_locked_all(pool: &PgPool, room_ids: &[&str]) -> sqlx::Result<sqlx::Transaction<'static, Postgres>> {
    let literals: Vec<String> = room_ids.iter().map(|room_id| text_literal(room_id)).collect();
    pool.begin_with(AssertSqlSafe(format!(
        "BEGIN; SELECT pg_advisory_xact_lock(k) FROM (
           SELECT DISTINCT hashtextextended(r, 0) AS k FROM unnest(ARRAY[{}]::text[]) AS r ORDER BY k) AS keys",
        literals.join(", ")
    )))
    .await
}

/// The state after the user's latest membership event in the room (e.g. when they left).
pub async fn membership_event_state_after(
    db: impl PgExecutor<'_>,
    room_id: &str,
    user_id: &str,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT e.state_after FROM room_memberships m JOIN events e ON e.event_nid = m.event_nid
         WHERE m.room_id = $1 AND m.user_id = $2",
    )
    .bind(room_id)
    .bind(user_id)
    .fetch_optional(db)
    .await
    .map(Option::flatten)
}

/// Marks a left room as forgotten by the user; `false` if they are still in it.
pub async fn forget(db: impl PgExecutor<'_>, room_id: &str, user_id: &str) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE room_memberships SET forgotten = TRUE
         WHERE room_id = $1 AND user_id = $2 AND membership IN ('leave', 'ban')",
    )
    .bind(room_id)
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// The state snapshot after the room's last event at or before a stream position.
pub async fn state_at_position(db: impl PgExecutor<'_>, room_id: &str, position: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT state_after FROM events
         WHERE room_id = $1 AND stream_position <= $2 AND NOT outlier AND rejection IS NULL
         ORDER BY stream_position DESC LIMIT 1",
    )
    .bind(room_id)
    .bind(position)
    .fetch_optional(db)
    .await
    .map(Option::flatten)
}

/// Every room with its version.
pub async fn all(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as("SELECT room_id, room_version FROM rooms ORDER BY room_id").fetch_all(db).await
}

/// Every room the user has a membership in, with that membership.
pub async fn memberships_of_user(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as("SELECT room_id, membership FROM room_memberships WHERE user_id = $1 ORDER BY room_id")
        .bind(user_id)
        .fetch_all(db)
        .await
}

/// `(event_id, json)` of the event behind the user's current membership of the room.
pub async fn membership_event(
    db: impl PgExecutor<'_>,
    room_id: &str,
    user_id: &str,
) -> sqlx::Result<Option<(String, String)>> {
    sqlx::query_as(
        "SELECT i.event_id, e.json FROM room_memberships m
         JOIN events e ON e.event_nid = m.event_nid JOIN event_ids i ON i.event_nid = m.event_nid
         WHERE m.room_id = $1 AND m.user_id = $2",
    )
    .bind(room_id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// Whether some user of `server` is joined to, or invited into, the room.
pub async fn server_has_member(db: impl PgExecutor<'_>, room_id: &str, server: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM room_memberships
                        WHERE room_id = $1 AND membership IN ('join', 'invite') AND user_server_name(user_id) = $2)",
    )
    .bind(room_id)
    .bind(server)
    .fetch_one(db)
    .await
}
