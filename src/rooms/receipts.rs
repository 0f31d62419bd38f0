//! Read receipts (`POST /rooms/{roomId}/receipt/...`) and read markers
//! (`POST /rooms/{roomId}/read_markers`). Receipts live in PostgreSQL with a stream position;
//! `m.fully_read` is room account data, written through the same table and stream as any
//! other account data, so `/sync` delivers it without anything of its own.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::typing::ensure_joined;
use crate::rooms::visibility::Viewer;
use crate::streams::Streams;
use crate::time::now_ms;
use ruma::{RoomId, UserId};
use serde_json::json;
use sqlx::PgPool;

pub const READ: &str = "m.read";
pub const READ_PRIVATE: &str = "m.read.private";
pub const FULLY_READ: &str = "m.fully_read";

/// `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`; `thread_id` is `None` for an
/// unthreaded receipt.
pub async fn post_receipt(
    pool: &PgPool,
    streams: &Streams,
    user: &UserId,
    room_id: &RoomId,
    receipt_type: &str,
    event_id: &str,
    thread_id: Option<&str>,
) -> Result<()> {
    if ![READ, READ_PRIVATE, FULLY_READ].contains(&receipt_type) {
        return Err(Error::invalid_param(format!("Unsupported receipt type {receipt_type:?}")));
    }
    if let Some(thread_id) = thread_id {
        if receipt_type == FULLY_READ {
            return Err(Error::invalid_param("m.fully_read does not take a thread_id"));
        }
        // The spec allows the main timeline or a thread root's event ID.
        if thread_id != "main" && !thread_id.starts_with('$') {
            return Err(Error::invalid_param("thread_id must be \"main\" or an event ID"));
        }
    }
    ensure_joined(pool, user, room_id).await?;
    let event_position = visible_event_position(pool, user, room_id, event_id).await?;
    if receipt_type == FULLY_READ {
        return set_fully_read(pool, streams, user, room_id, event_id).await;
    }
    store_receipt(pool, streams, user, room_id, receipt_type, event_id, thread_id.unwrap_or(""), event_position).await
}

/// `POST /rooms/{roomId}/read_markers`: every marker is checked before any is written, so a
/// bad one changes nothing.
pub async fn set_read_markers(
    pool: &PgPool,
    streams: &Streams,
    user: &UserId,
    room_id: &RoomId,
    fully_read: Option<&str>,
    read: Option<&str>,
    read_private: Option<&str>,
) -> Result<()> {
    ensure_joined(pool, user, room_id).await?;
    let mut checked = Vec::new();
    for (kind, event_id) in [(FULLY_READ, fully_read), (READ, read), (READ_PRIVATE, read_private)] {
        if let Some(event_id) = event_id {
            checked.push((kind, event_id, visible_event_position(pool, user, room_id, event_id).await?));
        }
    }
    for (kind, event_id, event_position) in checked {
        if kind == FULLY_READ {
            set_fully_read(pool, streams, user, room_id, event_id).await?;
        } else {
            store_receipt(pool, streams, user, room_id, kind, event_id, "", event_position).await?;
        }
    }
    Ok(())
}

/// The event's stream position, if it is in the room and the user may see it; 404 otherwise
/// (saying "forbidden" would tell that an event exists).
async fn visible_event_position(pool: &PgPool, user: &UserId, room_id: &RoomId, event_id: &str) -> Result<i64> {
    let not_found = || Error::not_found(format!("Event {event_id} not found"));
    let stored = db::events::by_id(pool, event_id).await?.ok_or_else(not_found)?;
    if stored.room_id != room_id.as_str() {
        return Err(not_found());
    }
    // Outliers have no place in the timeline, so no receipt can point at them.
    let position = stored.stream_position.ok_or_else(not_found)?;
    let viewer = Viewer::new(pool, user, room_id).await?;
    if viewer.visible(vec![stored]).await?.is_empty() {
        return Err(not_found());
    }
    Ok(position)
}

#[allow(clippy::too_many_arguments)]
async fn store_receipt(
    pool: &PgPool,
    streams: &Streams,
    user: &UserId,
    room_id: &RoomId,
    receipt_type: &str,
    event_id: &str,
    thread_id: &str,
    event_position: i64,
) -> Result<()> {
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let current = db::ephemeral::receipt_event_position_for_update(
        &mut tx,
        room_id.as_str(),
        user.as_str(),
        receipt_type,
        thread_id,
    )
    .await?;
    // Like Synapse, a receipt for an event before the current one is accepted but ignored:
    // clients racing on several devices must not move a user's read position backwards.
    if current.is_some_and(|current| current >= event_position) {
        tx.rollback().await?;
        return Ok(());
    }
    let stream_position = reservation.next(&mut tx).await?;
    let receipt = db::ephemeral::NewReceipt {
        room_id: room_id.as_str(),
        user_id: user.as_str(),
        receipt_type,
        thread_id,
        event_id,
        event_position,
        ts: now_ms(),
        stream_position,
    };
    db::ephemeral::put_receipt(&mut tx, &receipt).await?;
    tx.commit().await?;
    // Private receipts concern only their owner, but their room's other syncs find nothing
    // and go back to waiting: not worth a second audience rule.
    reservation.committed_for(vec![room_id.to_string()]).await?;
    Ok(())
}

/// `m.fully_read` is room account data that clients may not set directly (see
/// `users::account_data`); it goes through the account-data table and the stream.
async fn set_fully_read(
    pool: &PgPool,
    streams: &Streams,
    user: &UserId,
    room_id: &RoomId,
    event_id: &str,
) -> Result<()> {
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let position = reservation.next(&mut tx).await?;
    let content = json!({ "event_id": event_id });
    db::account_data::put(&mut *tx, user.as_str(), room_id.as_str(), FULLY_READ, &content, position).await?;
    tx.commit().await?;
    reservation.committed_for(vec![user.to_string()]).await?;
    Ok(())
}
