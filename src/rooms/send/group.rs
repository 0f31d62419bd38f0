//! Group commit across rooms. A room's batch of sends (see `batch`) used to be a transaction of
//! its own, each paying a `BEGIN` with the room's lock, a round trip for its stream positions,
//! a commit (an fsync) and a wake-up: ten senders in ten rooms cost ten times that, where ten
//! senders in one room shared it. Now the batches rooms have ready at the same moment are
//! appended in one transaction: one `BEGIN` takes every room's lock, one round trip takes
//! every position, one commit and one wake-up serve them all.
//!
//! A group runs optimistically, with no savepoint per send (two round trips each): when any of
//! its sends fails (refused by the auth rules, a statement failed), the whole group rolls back
//! and each room's batch runs again alone, where each send is rolled back alone to its
//! savepoint (`batch::run_alone`). A refusal then costs its group a second try, and no other
//! send fails for it. The rooms stay locked in this process in between, so nobody else's send
//! slips in before them.
//!
//! Leading is by arrival, as the window news of syncs is batched (`sync::news_batch`): a batch
//! that finds no group running starts one, lets the batches readied with it queue, and runs
//! what is queued; the batches that queue while it runs go back to their rooms when it ends
//! (their senders take the rooms' locks again, and the first starts the next group). So a
//! leader answers its own request after one group, however busy the server is.

use crate::error::Result;
use crate::rooms::RoomCtx;
use crate::rooms::send::appender::{Appended, Carried};
use crate::rooms::send::batch::{Requeue, RoomBatch, append_one, known_room, run_alone};
use crate::rooms::send::committed::{KnownRoom, RoomCommit, commit_rooms_knowing};
use crate::rooms::send::locks::{LocalRoomLock, roll_back_keeping};
use crate::store::Store;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Rooms in one group at most: bounds the `BEGIN` that locks them and the leader's wait.
const MAX_ROOMS: usize = 64;
/// Sends in one group at most (a room's batch alone may hold up to `batch::MAX_BATCH`).
const MAX_SENDS: usize = 200;

/// The room batches of a store's process waiting for a group, and whether one is running.
#[derive(Default)]
pub(super) struct CommitGroups {
    state: Mutex<State>,
    /// Sends between their arrival at their room's queue and their outcome (see [`Sending`]).
    sending: AtomicUsize,
}

/// Held by a send from its arrival at its room's queue to its outcome: a group's leader waits
/// for others to join only when some other send is on its way.
pub(super) struct Sending(Arc<CommitGroups>);

impl Sending {
    pub(super) fn start(pool: &Store) -> Sending {
        let groups = pool.cache::<CommitGroups>();
        groups.sending.fetch_add(1, Ordering::Relaxed);
        Sending(groups)
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct State {
    queued: Vec<RoomBatch>,
    running: bool,
}

impl CommitGroups {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The queued batches the next group takes, oldest first.
    fn take_group(&self) -> Vec<RoomBatch> {
        let mut state = self.state();
        let (mut rooms, mut sends) = (0, 0);
        for batch in &state.queued {
            let more = batch.sends.sends().len();
            if rooms == MAX_ROOMS || rooms > 0 && sends + more > MAX_SENDS {
                break;
            }
            rooms += 1;
            sends += more;
        }
        state.queued.drain(..rooms).collect()
    }

    /// Ends the running group: the batches queued since it began, to hand back to their rooms.
    fn end(&self) -> Vec<RoomBatch> {
        let mut state = self.state();
        state.running = false;
        std::mem::take(&mut state.queued)
    }
}

/// Appends a room's batch in a group with the batches other rooms have ready: this task runs
/// the group when none is running, else leaves its batch to the one that is (its senders learn
/// their outcomes from the batch, see `batch::append_batched`).
pub(super) async fn submit(ctx: RoomCtx<'_>, batch: RoomBatch) {
    let groups = ctx.pool.cache::<CommitGroups>();
    let own = batch.sends.sends().len();
    let lead = {
        let mut state = groups.state();
        state.queued.push(batch);
        !std::mem::replace(&mut state.running, true)
    };
    if !lead {
        return;
    }
    let leading = Leading(groups.clone());
    // Other sends on their way (readied by the same wake-ups, say) may join once they have
    // run up to their room's queue: let them. A send alone (one sender sending one message
    // after another) has nobody to wait for, and does not.
    if groups.sending.load(Ordering::Relaxed) > own {
        tokio::task::yield_now().await;
    }
    let group = groups.take_group();
    run(ctx, group).await;
    drop(leading);
}

/// Held by the task running a group: however it stops (done, or its request dropped mid-way),
/// the group ends, and the batches queued meanwhile go back to their rooms (dropping a batch
/// does that, see `batch::Requeue`).
struct Leading(Arc<CommitGroups>);

impl Drop for Leading {
    fn drop(&mut self) {
        drop(self.0.end());
    }
}

/// Runs a group: together when that can save anything, and every batch alone when together
/// failed.
async fn run(ctx: RoomCtx<'_>, mut group: Vec<RoomBatch>) {
    let sends: usize = group.iter().map(|batch| batch.sends.sends().len()).sum();
    if sends == 1 {
        // One send alone needs no savepoint anyway: the path alone is the same, and a refusal
        // is answered at once.
        if let Some(batch) = group.pop() {
            run_alone(ctx, batch).await;
        }
        return;
    }
    if let Err(group) = together(ctx, group).await {
        for batch in group {
            run_alone(ctx, batch).await;
        }
    }
}

/// What appending one room's batch of a group gave.
struct RoomAppended {
    appended: Vec<Appended>,
    known: KnownRoom,
    carried: Option<Carried>,
}

/// Appends every batch of the group in one transaction and gives every send its outcome. When
/// a send failed, nothing is committed and the batches come back (their rooms still locked in
/// this process), to be run alone.
async fn together(ctx: RoomCtx<'_>, group: Vec<RoomBatch>) -> std::result::Result<(), Vec<RoomBatch>> {
    let (locks, unfinished): (Vec<LocalRoomLock>, Vec<Requeue>) =
        group.into_iter().map(|batch| (batch.lock, batch.sends)).unzip();
    let (mut tx, held) = match LocalRoomLock::begin_all(locks, ctx.pool).await {
        Ok(begun) => begun,
        Err(error) => {
            unfinished.into_iter().for_each(|batch| batch.fail(&error));
            return Ok(());
        }
    };
    let mut reservation = ctx.streams.reserve();
    let appended: Result<Vec<RoomAppended>> = async {
        // Positions for every send at once, now that every room's lock orders this group after
        // the rooms' previous batches. Those of retransmissions stay unused: gaps.
        let sends = unfinished.iter().map(|batch| batch.sends().len()).sum();
        reservation.take_ahead(sends).await?;
        let mut rooms = Vec::with_capacity(held.len());
        for (held, batch) in held.iter().zip(&unfinished) {
            let mut appender = batch.room.appender(ctx, held);
            let mut appended = Vec::with_capacity(batch.sends().len());
            for pending in batch.sends() {
                appended.push(append_one(&mut appender, &mut tx, &mut reservation, pending).await?);
            }
            let known = known_room(&appender, &appended.iter().collect::<Vec<_>>());
            rooms.push(RoomAppended { appended, known, carried: appender.carried() });
        }
        Ok(rooms)
    }
    .await;
    let rooms = match appended {
        Ok(rooms) => rooms,
        Err(_) => {
            // Some send failed, and the transaction may take no more: every batch again, alone.
            drop(reservation);
            let locks = roll_back_keeping(tx, held).await;
            let batches = locks.into_iter().zip(unfinished).map(|(lock, sends)| RoomBatch { lock, sends });
            return Err(batches.collect());
        }
    };
    let commits: Vec<RoomCommit<'_>> = held
        .iter()
        .zip(&rooms)
        .map(|(held, room)| RoomCommit {
            room_id: held.room_id(),
            events: room.appended.iter().collect(),
            known: room.known,
        })
        .collect();
    let committed = commit_rooms_knowing(ctx, tx, reservation, &commits).await;
    drop(commits);
    if let Err(error) = committed {
        // Whether the commit itself happened is not known: the sends are not tried again (a
        // client's retry with its transaction id finds a committed send).
        unfinished.into_iter().for_each(|batch| batch.fail(&error));
        return Ok(());
    }
    for ((batch, room), _held) in unfinished.into_iter().zip(rooms).zip(held) {
        // Carried to the room's next batch while this group still holds the room.
        batch.room.carry(room.carried);
        batch.finish(room.appended.into_iter().map(Ok).collect());
    }
    Ok(())
}
