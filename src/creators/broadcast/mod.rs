//! Broadcast lists (issue #21, item 3): a creator messages, in bulk, the members who opted in —
//! each in their DM with the creator, through the ordinary send path, so every client shows it.
//!
//! - [`subscriptions`]: members opt in (or out) of a creator's broadcasts;
//! - [`lists`]: the creator's named lists, whose members must have opted in or share a room;
//! - [`send`]: one message to one list becomes a durable broadcast with a row per recipient;
//! - [`delivery`]: the background job that delivers it, resumable after a restart.

pub(crate) mod delivery;
pub(crate) mod lists;
pub(crate) mod send;
pub(crate) mod subscriptions;

use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::store::Store;
use ruma::UserId;

/// What broadcasting needs.
#[derive(Clone, Copy)]
pub struct BroadcastCtx<'a> {
    pub rooms: RoomCtx<'a>,
    /// The version new DMs are created in.
    pub default_room_version: &'a ruma::RoomVersionId,
    /// Deliveries in flight across every broadcast of this process: bounds what broadcasts
    /// take of the database pool, so other users' requests are not starved.
    pub slots: &'a tokio::sync::Semaphore,
}

/// Refuses anyone but a creator.
async fn require_creator(pool: &Store, user: &UserId) -> Result<()> {
    if super::flag::is_creator(pool, user).await? {
        Ok(())
    } else {
        Err(Error::forbidden("Only creators have broadcast lists"))
    }
}
