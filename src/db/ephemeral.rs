//! Typing notifications and read receipts (`migrations/0008_ephemeral.sql`). Every change
//! is written with a stream position taken by the caller from the stream tracker.

use sqlx::{FromRow, PgConnection, PgExecutor};

/// A user's typing row, locked for the rest of the transaction.
#[derive(Clone, Debug, FromRow)]
pub(crate) struct TypingRow {
    pub typing: bool,
    pub expires_ts: i64,
}

pub(crate) async fn typing_for_update(
    conn: &mut PgConnection,
    room_id: &str,
    user_id: &str,
) -> sqlx::Result<Option<TypingRow>> {
    sqlx::query_as("SELECT typing, expires_ts FROM typing WHERE room_id = $1 AND user_id = $2 FOR UPDATE")
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(conn)
        .await
}

/// Records a start or stop of typing at `stream_position`.
pub(crate) async fn set_typing(
    conn: &mut PgConnection,
    room_id: &str,
    user_id: &str,
    typing: bool,
    expires_ts: i64,
    stream_position: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO typing (room_id, user_id, typing, expires_ts, stream_position) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (room_id, user_id) DO UPDATE
           SET typing = EXCLUDED.typing, expires_ts = EXCLUDED.expires_ts, stream_position = EXCLUDED.stream_position",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(typing)
    .bind(expires_ts)
    .bind(stream_position)
    .execute(conn)
    .await?;
    Ok(())
}

/// Renews a typing user's timeout: not a change anyone syncs, so no new position.
pub(crate) async fn extend_typing(
    conn: &mut PgConnection,
    room_id: &str,
    user_id: &str,
    expires_ts: i64,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE typing SET expires_ts = $3 WHERE room_id = $1 AND user_id = $2")
        .bind(room_id)
        .bind(user_id)
        .bind(expires_ts)
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks up to `limit` typing rows whose timeout has passed. Rows another process is
/// already stopping are skipped, so concurrent sweepers never stop one twice.
pub(crate) async fn expired_typing_for_update(
    conn: &mut PgConnection,
    now_ms: i64,
    limit: i64,
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT room_id, user_id FROM typing WHERE typing AND expires_ts <= $1
         ORDER BY expires_ts LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// `(room_id, user_id)` of users typing in the rooms as far as the stream up to `upto`
/// tells: a change after `upto` belongs to the next window, which sends the room's typing
/// set again.
pub(crate) async fn typing_users(
    db: impl PgExecutor<'_>,
    room_ids: &[String],
    upto: i64,
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT room_id, user_id FROM typing WHERE room_id = ANY($1) AND typing AND stream_position <= $2
         ORDER BY room_id, user_id",
    )
    .bind(room_ids)
    .bind(upto)
    .fetch_all(db)
    .await
}

/// `(room_id, user_id, typing)` of the typing starts and stops in the rooms with positions in
/// `(after, upto]`: what a live reader that keeps its own position (the XMPP edge) passes on.
pub(crate) async fn typing_changes_between(
    db: impl PgExecutor<'_>,
    room_ids: &[String],
    after: i64,
    upto: i64,
) -> sqlx::Result<Vec<(String, String, bool)>> {
    sqlx::query_as(
        "SELECT room_id, user_id, typing FROM typing
         WHERE room_id = ANY($1) AND stream_position > $2 AND stream_position <= $3
         ORDER BY stream_position",
    )
    .bind(room_ids)
    .bind(after)
    .bind(upto)
    .fetch_all(db)
    .await
}

/// The position of a user's current receipt, locked for the rest of the transaction.
pub(crate) async fn receipt_event_position_for_update(
    conn: &mut PgConnection,
    room_id: &str,
    user_id: &str,
    receipt_type: &str,
    thread_id: &str,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT event_position FROM receipts
         WHERE room_id = $1 AND user_id = $2 AND receipt_type = $3 AND thread_id = $4 FOR UPDATE",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(receipt_type)
    .bind(thread_id)
    .fetch_optional(conn)
    .await
}

pub(crate) struct NewReceipt<'a> {
    pub room_id: &'a str,
    pub user_id: &'a str,
    pub receipt_type: &'a str,
    pub thread_id: &'a str,
    pub event_id: &'a str,
    pub event_position: i64,
    pub ts: i64,
    pub stream_position: i64,
}

pub(crate) async fn put_receipt(conn: &mut PgConnection, receipt: &NewReceipt<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, event_position, ts, stream_position)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE
           SET event_id = EXCLUDED.event_id, event_position = EXCLUDED.event_position, ts = EXCLUDED.ts,
               stream_position = EXCLUDED.stream_position",
    )
    .bind(receipt.room_id)
    .bind(receipt.user_id)
    .bind(receipt.receipt_type)
    .bind(receipt.thread_id)
    .bind(receipt.event_id)
    .bind(receipt.event_position)
    .bind(receipt.ts)
    .bind(receipt.stream_position)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Clone, Debug, FromRow)]
pub(crate) struct ReceiptRow {
    pub room_id: String,
    pub user_id: String,
    pub receipt_type: String,
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
}

/// Receipts in the rooms changed with `after < position <= upto` (every current one when
/// `after` is `None`) that `viewer` may see: private receipts only when they are theirs.
pub(crate) async fn receipts_between(
    db: impl PgExecutor<'_>,
    room_ids: &[String],
    viewer: &str,
    after: Option<i64>,
    upto: i64,
) -> sqlx::Result<Vec<ReceiptRow>> {
    sqlx::query_as(
        "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts FROM receipts
         WHERE room_id = ANY($1) AND stream_position > $3 AND stream_position <= $4
           AND (receipt_type <> 'm.read.private' OR user_id = $2)
         ORDER BY room_id, stream_position",
    )
    .bind(room_ids)
    .bind(viewer)
    .bind(after.unwrap_or(i64::MIN))
    .bind(upto)
    .fetch_all(db)
    .await
}
