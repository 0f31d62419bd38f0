//! To-device messages: a queue per recipient device, each message at the stream position of
//! the send that queued it, kept until the device acknowledges it with a later `since`.

use crate::db::json::StoredJson;
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};

/// Claims a sender device's transaction id; `false` when it was already used (a retry,
/// which must store nothing new).
pub(crate) async fn claim_transaction(
    db: impl PgExecutor<'_>,
    sender: &str,
    sender_device: &str,
    txn_id: &str,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO to_device_transactions (user_id, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(sender)
    .bind(sender_device)
    .bind(txn_id)
    .bind(now_ms)
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Queues one message for the recipient's devices named in `devices`, or for all of them
/// (as they are now) when `all_devices`. Devices that do not exist are skipped: the rows
/// come from `devices`, so an unknown id or user simply matches nothing.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn queue(
    db: impl PgExecutor<'_>,
    recipient: &str,
    devices: &[String],
    all_devices: bool,
    sender: &str,
    event_type: &str,
    content: &Value,
    stream_position: i64,
) -> sqlx::Result<u64> {
    let inserted = sqlx::query(
        "INSERT INTO to_device_messages (user_id, device_id, stream_position, sender, event_type, content)
         SELECT user_id, device_id, $4, $5, $6, $7 FROM devices
         WHERE user_id = $1 AND ($3 OR device_id = ANY($2))",
    )
    .bind(recipient)
    .bind(devices)
    .bind(all_devices)
    .bind(stream_position)
    .bind(sender)
    .bind(event_type)
    .bind(content)
    .execute(db)
    .await?;
    Ok(inserted.rows_affected())
}

/// Drops the messages the device has acknowledged (positions up to `acknowledged`).
pub(crate) async fn delete_acknowledged(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    acknowledged: i64,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2 AND stream_position <= $3")
        .bind(user_id)
        .bind(device_id)
        .bind(acknowledged)
        .execute(db)
        .await?;
    Ok(())
}

#[derive(Clone, Debug, FromRow)]
pub(crate) struct Message {
    pub sender: String,
    pub event_type: String,
    pub content: StoredJson,
}

/// Everything still queued for the device up to `upto`, in stream order.
pub(crate) async fn pending(
    db: impl PgExecutor<'_>,
    user_id: &str,
    device_id: &str,
    upto: i64,
) -> sqlx::Result<Vec<Message>> {
    sqlx::query_as(
        "SELECT sender, event_type, content FROM to_device_messages
         WHERE user_id = $1 AND device_id = $2 AND stream_position <= $3
         ORDER BY stream_position, message_id",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(upto)
    .fetch_all(db)
    .await
}
