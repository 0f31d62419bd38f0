//! Typing notifications (`PUT /rooms/{roomId}/typing/{userId}`). Kept in PostgreSQL, not in
//! memory, because every Hearth process on the database serves the same rooms' syncs. A start
//! and a stop are each a change with a stream position; renewing a running timeout is not
//! (nothing a client sees changes), so a client refreshing its typing state wakes nobody.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::Streams;
use crate::time::now_ms;
use ruma::events::room::member::MembershipState;
use ruma::{RoomId, ServerName, UserId};
use std::time::Duration;

/// Longest a client may say it types for: a client that crashes mid-sentence must not show
/// as typing for hours. Clients renew well within this (Element every few seconds).
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a client that names no timeout types for (the spec leaves it to the server;
/// Synapse's value).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often each process turns expired typing into stops.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Stops per transaction of the sweeper; more wait for the next tick.
const SWEEP_BATCH: i64 = 500;

pub(crate) async fn set_typing(
    pool: &Store,
    streams: &Streams,
    sender: &UserId,
    user_id: &UserId,
    room_id: &RoomId,
    timeout: Option<Duration>,
) -> Result<()> {
    if sender != user_id {
        return Err(Error::forbidden("You cannot set another user's typing state"));
    }
    ensure_joined(pool, sender, room_id).await?;
    let now = now_ms();
    let expires_ts = match timeout {
        Some(timeout) => now.saturating_add(i64::try_from(timeout.min(MAX_TIMEOUT).as_millis()).unwrap_or(0)),
        None => now,
    };
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let current = db::ephemeral::typing_for_update(&mut tx, room_id.as_str(), user_id.as_str()).await?;
    let was_typing = current.as_ref().is_some_and(|row| row.typing && row.expires_ts > now);
    let stopped_already = current.as_ref().is_none_or(|row| !row.typing);
    let edus = crate::outbox::federation::typing;
    match (timeout.is_some(), was_typing) {
        // Still typing: only the timeout moves. Other servers time typing out on their own,
        // so they hear of the renewal (which takes a position only for that).
        (true, true) => {
            db::ephemeral::extend_typing(&mut tx, room_id.as_str(), user_id.as_str(), expires_ts).await?;
            let local = user_id.server_name();
            if crate::outbox::federation::room_has_remote_servers(&mut tx, room_id, local).await? {
                let position = reservation.next(&mut tx).await?;
                edus(&mut tx, room_id, user_id, true, position).await?;
            }
        }
        // Stopping a user who is not typing changes nothing anyone sees.
        (false, _) if stopped_already => {}
        (typing, _) => {
            let position = reservation.next(&mut tx).await?;
            db::ephemeral::set_typing(&mut tx, room_id.as_str(), user_id.as_str(), typing, expires_ts, position)
                .await?;
            edus(&mut tx, room_id, user_id, typing, position).await?;
        }
    }
    tx.commit().await?;
    reservation.committed_for(vec![room_id.to_string()]).await?;
    Ok(())
}

/// How long a remote user shows as typing after their server's last word: their server
/// renews it while they type (Synapse's federation timeout).
const REMOTE_TIMEOUT_MS: i64 = 60_000;

/// A remote user's typing state as their server sent it (`m.typing`); only a user joined to
/// the room counts. Synced like a local user's.
pub(crate) async fn receive_remote(
    pool: &Store,
    streams: &Streams,
    room_id: &RoomId,
    user_id: &UserId,
    typing: bool,
) -> Result<()> {
    ensure_joined(pool, user_id, room_id).await?;
    let now = now_ms();
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let current = db::ephemeral::typing_for_update(&mut tx, room_id.as_str(), user_id.as_str()).await?;
    let was_typing = current.as_ref().is_some_and(|row| row.typing && row.expires_ts > now);
    if typing && was_typing {
        db::ephemeral::extend_typing(&mut tx, room_id.as_str(), user_id.as_str(), now + REMOTE_TIMEOUT_MS).await?;
    } else if typing || current.as_ref().is_some_and(|row| row.typing) {
        let position = reservation.next(&mut tx).await?;
        let expires_ts = if typing { now + REMOTE_TIMEOUT_MS } else { now };
        db::ephemeral::set_typing(&mut tx, room_id.as_str(), user_id.as_str(), typing, expires_ts, position).await?;
    }
    tx.commit().await?;
    reservation.committed_for(vec![room_id.to_string()]).await?;
    Ok(())
}

/// Typing starts and stops (`room, user, typing`) in `rooms` in `(after, upto]`, in order:
/// for a live reader that keeps its own position (the XMPP edge).
pub(crate) async fn changes_between(
    pool: &Store,
    rooms: &[String],
    after: i64,
    upto: i64,
) -> Result<Vec<(String, String, bool)>> {
    if rooms.is_empty() || after >= upto {
        return Ok(Vec::new());
    }
    Ok(db::ephemeral::typing_changes_between(pool, rooms, after, upto).await?)
}

pub(crate) async fn ensure_joined(pool: &Store, user: &UserId, room_id: &RoomId) -> Result<()> {
    let membership = db::rooms::membership(pool, room_id.as_str(), user.as_str()).await?;
    if membership.is_none_or(|m| m.membership != MembershipState::Join) {
        return Err(Error::forbidden("You are not joined to this room"));
    }
    Ok(())
}

/// Turns every expired typing row into a stop with its own stream position, so that other
/// clients see the typist stop without any request from them; other servers hear of a local
/// typist's stop too (they would otherwise show them typing until their own, longer timeout).
/// Returns how many stopped.
pub(crate) async fn sweep_expired(pool: &Store, streams: &Streams, local: &ServerName) -> Result<usize> {
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let now = now_ms();
    let expired = db::ephemeral::expired_typing_for_update(&mut tx, now, SWEEP_BATCH).await?;
    if expired.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    // One position for the batch: the rows commit together, so they belong to one window.
    let position = reservation.next(&mut tx).await?;
    for (room_id, user_id) in &expired {
        db::ephemeral::set_typing(&mut tx, room_id, user_id, false, now, position).await?;
        if let (Ok(room_id), Ok(user_id)) = (RoomId::parse(room_id), UserId::parse(user_id))
            && user_id.server_name() == local
        {
            crate::outbox::federation::typing(&mut tx, &room_id, &user_id, false, position).await?;
        }
    }
    tx.commit().await?;
    reservation.committed_for(expired.iter().map(|(room_id, _)| room_id.clone()).collect()).await?;
    Ok(expired.len())
}

/// Runs [`sweep_expired`] every second until `stop` says so (or is dropped) or the process's
/// streams are gone (it holds only a weak reference, so dropping the server state — a test
/// server, say — ends the task). A sweep under way when `stop` comes finishes first, so the
/// owner may close the pool once the task has ended.
pub(crate) fn spawn_sweeper(
    pool: Store,
    streams: std::sync::Weak<Streams>,
    local: ruma::OwnedServerName,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(SWEEP_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
            let Some(streams) = streams.upgrade() else { break };
            if let Err(error) = sweep_expired(&pool, &streams, &local).await {
                tracing::warn!(%error, "stopping expired typing notifications");
            }
        }
    })
}
