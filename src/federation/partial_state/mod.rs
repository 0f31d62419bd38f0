//! Rooms joined with a partial state ("faster joins", MSC3706/MSC3902; server-server API,
//! `send_join`'s `omit_members`). The resident server answers a join without most member
//! events, so the join commits in about the time the rest of the state takes to check; the room
//! is recorded as partial (`db::partial_state`) in the join's own transaction. While it is:
//!
//! - our events also go to the servers the resident named (`servers_in_room`), since the
//!   membership that would name them is not known yet (`db::federation_queue`);
//! - received events are checked against the partial state with the keys it lacks taken from
//!   their own auth events (`inbound::accept`), and all are checked again at the end;
//! - the room is not served to other servers (`/state`, `/state_ids`, `/backfill`,
//!   `make_join`): what we would answer is incomplete ([`refuse_while_partial`]);
//! - `/members` waits for the full state ([`PartialStateRooms::wait_until_full`]).
//!
//! A background task ([`run`]) fetches the full state at the join from the room's servers
//! ([`resync`]), then replaces the partial state in one transaction under the room's lock
//! ([`replace`]): the states of the join and every event after it are derived again, each
//! event re-checked, the current state and membership brought up to date, and the flag
//! cleared. The task starts with the process, so a resync a stop or crash interrupted goes on
//! where the database says it stands; a session advisory lock per room keeps two processes
//! from resyncing one room at once.

mod replace;
mod resync;

use crate::db;
use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::outbox::{Outcome, SessionLocks};
use ruma::RoomId;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The first key of the per-room resync lock (`db::advisory_locks`); the second is
/// `hashtext(room_id)` (`db::partial_state::lock_key`).
pub const RESYNC_LOCK_CLASS: i32 = 0x4850_5354; // "HPST"
/// How long a resync that failed (no server answered, a database error) waits before the
/// next attempt, at first and at most.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(300);
/// How long `/members` of a partial room waits for the full state before answering with what
/// is known (Synapse waits without bound; a client's request should not).
pub const MEMBERS_WAIT: Duration = Duration::from_secs(60);

/// This process's handle on the resync task: woken by a partial join, announcing each room it
/// completes.
pub struct PartialStateRooms {
    wake: Notify,
    completed: watch::Sender<u64>,
}

impl Default for PartialStateRooms {
    fn default() -> Self {
        PartialStateRooms { wake: Notify::new(), completed: watch::channel(0).0 }
    }
}

impl PartialStateRooms {
    /// A room became partial: the task looks at the table again (a wake while it works is kept).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn completed(&self) {
        self.completed.send_modify(|count| *count += 1);
    }

    /// Waits until `room_id` has its full state, at most `timeout`; whether it has.
    pub async fn wait_until_full(
        &self,
        pool: &crate::store::Store,
        room_id: &RoomId,
        timeout: Duration,
    ) -> Result<bool> {
        let mut completions = self.completed.subscribe();
        let waiting = async {
            loop {
                // Subscribed before looking, so a completion in between is not missed.
                completions.borrow_and_update();
                if !db::partial_state::is_partial(pool, room_id.as_str()).await? {
                    return Ok::<_, Error>(());
                }
                if completions.changed().await.is_err() {
                    return Ok(());
                }
            }
        };
        match tokio::time::timeout(timeout, waiting).await {
            Ok(outcome) => outcome.map(|()| true),
            Err(_) => Ok(false),
        }
    }
}

/// Refuses to answer other servers about `room_id` while its state is partial (Synapse answers
/// 404 too): the joining server asks another resident.
pub async fn refuse_while_partial(pool: &crate::store::Store, room_id: &RoomId) -> Result<()> {
    if db::partial_state::is_partial(pool, room_id.as_str()).await? {
        return Err(Error::not_found(format!("This server does not have the full state of {room_id} yet")));
    }
    Ok(())
}

/// The resync task: resyncs every partial room, then sleeps until a join wakes it, a failed
/// room's retry is due, or `stopped` says so.
pub async fn run(ctx: FedCtx<'_>, mut stopped: watch::Receiver<bool>) {
    let locks = SessionLocks::new(ctx.rooms.pool.pool().clone(), RESYNC_LOCK_CLASS);
    let mut retry = RETRY_FIRST;
    loop {
        if *stopped.borrow() {
            break;
        }
        let left = match db::partial_state::all(ctx.rooms.pool).await {
            Ok(rooms) => resync_all(ctx, &locks, rooms, &stopped).await,
            Err(error) => {
                tracing::warn!(%error, "partial state: listing partial rooms");
                Left::Failed
            }
        };
        // A room another process resyncs is looked at again soon (that process may die); one
        // whose servers failed, less and less often.
        retry = match left {
            Left::Failed => (retry * 2).min(RETRY_CAP),
            Left::Nothing | Left::HeldElsewhere => RETRY_FIRST,
        };
        let unfinished = left != Left::Nothing;
        tokio::select! {
            () = ctx.partial.wake.notified() => {}
            _ = stopped.changed() => break,
            () = tokio::time::sleep(retry), if unfinished => {}
        }
    }
    locks.close().await;
}

/// What a pass over the partial rooms left partial.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Left {
    Nothing,
    /// Rooms another process is resyncing.
    HeldElsewhere,
    /// Rooms whose resync failed (or that the stop interrupted).
    Failed,
}

/// Resyncs each room; what is left partial.
async fn resync_all(
    ctx: FedCtx<'_>,
    locks: &SessionLocks,
    rooms: Vec<db::partial_state::PartialStateRoom>,
    stopped: &watch::Receiver<bool>,
) -> Left {
    let mut left = Left::Nothing;
    for room in rooms {
        let mut stopping = stopped.clone();
        let work = async {
            tokio::select! {
                done = resync::resync(ctx, &room) => done.map(|()| Outcome::CaughtUp),
                _ = stopping.wait_for(|stop| *stop) => Ok(Outcome::Stopped),
            }
        };
        match locks.while_locked(room.lock_key, &room.room_id, work).await {
            Outcome::CaughtUp => {
                tracing::info!(room_id = room.room_id, "partial state: the room's full state is in");
                ctx.partial.completed();
            }
            Outcome::Stopped => return Left::Failed,
            Outcome::HeldElsewhere => left = left.max(Left::HeldElsewhere),
            Outcome::Gone | Outcome::Failed => left = Left::Failed,
        }
    }
    left
}
