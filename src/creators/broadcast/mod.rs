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

use crate::db;
use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::store::Store;
use ruma::{OwnedUserId, ServerName, UserId};
use std::collections::HashSet;

/// What broadcasting needs.
#[derive(Clone, Copy)]
pub struct BroadcastCtx<'a> {
    /// Rooms, and the other servers of recipients who are not users of this one (their new
    /// DMs are invitations through their server).
    pub fed: FedCtx<'a>,
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

/// Those of `users` a creator may broadcast to: users of this server with an active account
/// who subscribed to the creator or share a room with them, and users of other servers who
/// share a room with them (subscriptions are a local account's).
async fn reachable(
    pool: &Store,
    server_name: &ServerName,
    creator: &UserId,
    users: &[String],
) -> Result<HashSet<String>> {
    let (remote, local): (Vec<String>, Vec<String>) =
        users.iter().cloned().partition(|user| remote_user(user, server_name).is_some());
    let mut reachable: HashSet<String> = HashSet::with_capacity(users.len());
    if !local.is_empty() {
        reachable.extend(db::broadcast::reachable(pool, creator.as_str(), &local).await?);
    }
    if !remote.is_empty() {
        reachable.extend(db::broadcast::remote_reachable(pool, creator.as_str(), &remote).await?);
    }
    Ok(reachable)
}

/// `user` when it is a valid user id of another server than `server_name`. Anything else
/// counts as local: an invalid id then finds no account, and is neither reachable nor sent to.
fn remote_user(user: &str, server_name: &ServerName) -> Option<OwnedUserId> {
    OwnedUserId::try_from(user).ok().filter(|user| user.server_name() != server_name)
}
