//! Read receipts (`POST /rooms/{roomId}/receipt/...`) and read markers
//! (`POST /rooms/{roomId}/read_markers`). Receipts live in PostgreSQL with a stream position;
//! `m.fully_read` is room account data, written through the same table and stream as any
//! other account data, so `/sync` delivers it without anything of its own.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::typing::ensure_joined;
use crate::rooms::visibility::Viewer;
use crate::store::Store;
use crate::streams::Streams;
use crate::time::now_ms;
use ruma::{RoomId, UserId};
use serde_json::json;

pub(crate) const READ: &str = "m.read";
pub(crate) const READ_PRIVATE: &str = "m.read.private";
pub(crate) const FULLY_READ: &str = "m.fully_read";

/// `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`; `thread_id` is `None` for an
/// unthreaded receipt.
pub(crate) async fn post_receipt(
    pool: &Store,
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
    let receipt = db::ephemeral::NewReceipt {
        room_id: room_id.as_str(),
        user_id: user.as_str(),
        receipt_type,
        thread_id: thread_id.unwrap_or(""),
        event_id,
        event_position,
        ts: now_ms(),
        stream_position: 0,
    };
    store_receipt(pool, streams, receipt, Origin::Local).await
}

/// `POST /rooms/{roomId}/read_markers`: every marker is checked before any is written, so a
/// bad one changes nothing.
pub(crate) async fn set_read_markers(
    pool: &Store,
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
            let receipt = db::ephemeral::NewReceipt {
                room_id: room_id.as_str(),
                user_id: user.as_str(),
                receipt_type: kind,
                thread_id: "",
                event_id,
                event_position,
                ts: now_ms(),
                stream_position: 0,
            };
            store_receipt(pool, streams, receipt, Origin::Local).await?;
        }
    }
    Ok(())
}

/// The event's stream position, if it is in the room and the user may see it; 404 otherwise
/// (saying "forbidden" would tell that an event exists).
/// Receipts in `rooms` changed in `(after, upto]` that `viewer` may see (private ones only
/// when theirs), in order: for a live reader that keeps its own position (the XMPP edge).
pub(crate) async fn changes_between(
    pool: &Store,
    rooms: &[String],
    viewer: &UserId,
    after: i64,
    upto: i64,
) -> Result<Vec<db::ephemeral::ReceiptRow>> {
    if rooms.is_empty() || after >= upto {
        return Ok(Vec::new());
    }
    Ok(db::ephemeral::receipts_between(pool, rooms, viewer.as_str(), Some(after), upto).await?)
}

async fn visible_event_position(pool: &Store, user: &UserId, room_id: &RoomId, event_id: &str) -> Result<i64> {
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

/// A remote user's public receipt, as their server sent it (`m.receipt`): kept when the user
/// is joined and the event is one this server has in the room's timeline.
pub(crate) async fn receive_remote(
    pool: &Store,
    streams: &Streams,
    room_id: &RoomId,
    user: &UserId,
    event_id: &str,
    thread_id: &str,
    ts: Option<i64>,
) -> Result<()> {
    ensure_joined(pool, user, room_id).await?;
    let unknown = || Error::not_found(format!("Event {event_id} is not in this server's timeline of {room_id}"));
    let stored = db::events::by_id(pool, event_id).await?.ok_or_else(unknown)?;
    if stored.room_id != room_id.as_str() {
        return Err(unknown());
    }
    let event_position = stored.stream_position.ok_or_else(unknown)?;
    let receipt = db::ephemeral::NewReceipt {
        room_id: room_id.as_str(),
        user_id: user.as_str(),
        receipt_type: READ,
        thread_id,
        event_id,
        event_position,
        ts: ts.unwrap_or_else(now_ms),
        stream_position: 0,
    };
    store_receipt(pool, streams, receipt, Origin::Remote).await
}

/// Where a receipt comes from: a local user's is passed on to the room's other servers
/// (when public); a remote one came from its user's server, which tells the others itself.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Local,
    Remote,
}

/// Stores `receipt` (its `stream_position` is taken here) unless the user already has one at
/// or after its event.
pub(crate) async fn store_receipt(
    pool: &Store,
    streams: &Streams,
    mut receipt: db::ephemeral::NewReceipt<'_>,
    origin: Origin,
) -> Result<()> {
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let current = db::ephemeral::receipt_event_position_for_update(
        &mut tx,
        receipt.room_id,
        receipt.user_id,
        receipt.receipt_type,
        receipt.thread_id,
    )
    .await?;
    // Like Synapse, a receipt for an event before the current one is accepted but ignored:
    // clients racing on several devices must not move a user's read position backwards.
    if current.is_some_and(|current| current >= receipt.event_position) {
        tx.rollback().await?;
        return Ok(());
    }
    receipt.stream_position = reservation.next(&mut tx).await?;
    db::ephemeral::put_receipt(&mut tx, &receipt).await?;
    if origin == Origin::Local && receipt.receipt_type == READ {
        let (Ok(room_id), Ok(user_id)) = (RoomId::parse(receipt.room_id), UserId::parse(receipt.user_id)) else {
            return Err(Error::internal("a receipt of an invalid room or user id"));
        };
        let outbound = crate::outbox::federation::ReadReceipt {
            room_id: &room_id,
            user_id: &user_id,
            event_id: receipt.event_id,
            thread_id: receipt.thread_id,
            ts: receipt.ts,
        };
        crate::outbox::federation::read_receipt(&mut tx, &outbound, receipt.stream_position).await?;
    }
    tx.commit().await?;
    // Private receipts concern only their owner, but their room's other syncs find nothing
    // and go back to waiting: not worth a second audience rule.
    reservation.committed_for(vec![receipt.room_id.to_owned()]).await?;
    Ok(())
}

/// `m.fully_read` is room account data that clients may not set directly (see
/// `users::account_data`); it goes through the account-data table and the stream.
async fn set_fully_read(
    pool: &Store,
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
