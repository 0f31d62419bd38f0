//! The send path: every local event enters here and flows one way.
//!
//! ```text
//! append ──▶ locks (the room's queue) ──▶ batch (one transaction for what queued)
//!        ──▶ appender (place in the DAG, auth) ──▶ persist (rows)
//!        ──▶ committed (notifications, commit, wake-ups)
//! ```
//!
//! Room creation enters lower down (it holds the lock of a room nobody else can see yet and
//! builds its first events in memory, stored in one write by [`new_room`]), and inbound
//! federation will too; all finish through [`committed::commit_events`], the one way events
//! are committed with what depends on them (notifications in the same transaction, wake-ups
//! after it). Appending needs a [`locks::HeldRoomLock`], which only [`locks`] can make, so no
//! writer can forget to serialise on the room.

mod appender;
mod auth_state;
mod batch;
pub mod committed;
mod group;
pub mod locks;
mod new_room;
mod persist;
mod redaction_auth;

pub use appender::{Appended, Appender, Carried, Transaction};
pub use batch::SendQueue;
pub use new_room::{NewRoomEvents, persist_all};

/// Every room's lock, each with its queue of waiting sends.
pub type RoomLocks = locks::RoomLocks<SendQueue>;
pub use auth_state::AuthState;
pub use persist::{Stored, persist, persist_outlier};

use crate::error::Result;
use crate::rooms::RoomCtx;
use crate::rooms::build::EventTemplate;
use ruma::{OwnedEventId, RoomId, UserId};

/// A user's message event, as every edge sends it: within the user's message rate, and for a
/// shadow-banned user a fake id with nothing sent.
pub async fn send_message(
    ctx: RoomCtx<'_>,
    rate_limits: &crate::ratelimit::RateLimits,
    session: &crate::users::Session,
    room_id: &RoomId,
    template: EventTemplate,
    txn_id: Option<&str>,
) -> Result<OwnedEventId> {
    rate_limits.check_message(session)?;
    if let Some(event_id) = crate::rooms::shadow_ban::fake_event_id(session)? {
        return Ok(event_id);
    }
    let transaction = txn_id.map(|txn_id| Transaction { device_id: session.device_id.as_str(), txn_id });
    append(ctx, room_id, &session.user_id, template, transaction).await
}

/// Appends a new local event to an existing room, in a commit shared with whatever else is
/// being sent to the room at the same moment (see `batch`).
pub async fn append(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    sender: &UserId,
    template: EventTemplate,
    transaction: Option<Transaction<'_>>,
) -> Result<OwnedEventId> {
    batch::append_batched(ctx, room_id, (sender, template, transaction)).await
}
