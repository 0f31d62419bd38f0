//! Group commit for a room's concurrent sends. Events in a room are created one after another
//! (each names the previous as its parent), so concurrent senders queue on the room's lock;
//! a durable commit per event would bound a room at the disk's fsync rate. Instead each send
//! joins the room's queue, and whoever takes the lock takes everything queued so far as the
//! room's batch, to be appended in one transaction (with other rooms' batches: see `group`) —
//! one commit for the lot — and hands each sender its own outcome.
//!
//! A batch can be cut short (the request that led it dropped mid-way): its transaction rolls
//! back and its sends go back to the front of the queue, for the next holder of the lock.

use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::rooms::build::EventTemplate;
use crate::rooms::send::appender::{Appended, Appender, Carried, Transaction};
use crate::rooms::send::committed::{KnownRoom, commit_events_knowing};
use crate::rooms::send::locks::{HeldRoomLock, LocalRoomLock, RoomSerial};
use crate::streams::Reservation;
use ruma::{OwnedEventId, OwnedUserId, RoomId, UserId};
use sqlx::{Acquire, PgConnection};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Sends appended in one transaction at most: bounds the wait of the batch's first sender.
const MAX_BATCH: usize = 100;

/// The sends waiting for a room's lock, kept beside the lock (see `locks`), and what the last
/// batch knew of the room for the next one (only the holder of the lock touches it).
#[derive(Default)]
pub struct SendQueue {
    pending: Mutex<VecDeque<Arc<PendingAppend>>>,
    carried: Mutex<Option<Carried>>,
}

impl SendQueue {
    fn pending(&self) -> MutexGuard<'_, VecDeque<Arc<PendingAppend>>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn carried(&self) -> MutexGuard<'_, Option<Carried>> {
        self.carried.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(super) type Room = RoomSerial<SendQueue>;

/// A send waiting for its room.
pub(super) struct PendingAppend {
    sender: OwnedUserId,
    template: EventTemplate,
    /// `(device_id, txn_id)` of an idempotent client send.
    transaction: Option<(String, String)>,
    outcome: Mutex<Option<Result<OwnedEventId>>>,
    done: Notify,
}

impl PendingAppend {
    fn take_outcome(&self) -> Option<Result<OwnedEventId>> {
        self.outcome.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }

    fn finish(&self, outcome: Result<OwnedEventId>) {
        *self.outcome.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(outcome);
        self.done.notify_one();
    }
}

/// Queues a send for its room and waits for its outcome, appending the queue itself (in a
/// commit shared with whatever else is queued, in this room and others: see `group`) when it
/// gets the room's lock first.
pub(super) async fn append_batched(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    (sender, template, transaction): (&UserId, EventTemplate, Option<Transaction<'_>>),
) -> Result<OwnedEventId> {
    let _sending = crate::rooms::send::group::Sending::start(ctx.pool);
    let pending = Arc::new(PendingAppend {
        sender: sender.to_owned(),
        template,
        transaction: transaction.map(|txn| (txn.device_id.to_owned(), txn.txn_id.to_owned())),
        outcome: Mutex::new(None),
        done: Notify::new(),
    });
    let room = ctx.locks.room(room_id);
    room.attached.pending().push_back(pending.clone());
    loop {
        // Either the holder of the lock appends this send, or this task gets the lock and
        // appends the queue, this send among it.
        let lock = tokio::select! {
            () = pending.done.notified() => None,
            lock = room.lock(room_id) => Some(lock),
        };
        if let Some(outcome) = pending.take_outcome() {
            return outcome;
        }
        if let Some(lock) = lock {
            let sends: Vec<_> = {
                let mut queue = room.attached.pending();
                let take = queue.len().min(MAX_BATCH);
                queue.drain(..take).collect()
            };
            if !sends.is_empty() {
                // Appended with the batches other rooms have ready, in one transaction; this
                // task may be the one that runs them, or hand its batch to the one that does
                // (the room stays locked until then) and wait for its outcome above.
                let batch = RoomBatch { lock, sends: Requeue { room: room.clone(), sends: Some(sends) } };
                crate::rooms::send::group::submit(ctx, batch).await;
            }
        }
    }
}

/// A room's queued sends, taken by the holder of its lock to be appended in one commit.
pub(super) struct RoomBatch {
    pub(super) lock: LocalRoomLock,
    pub(super) sends: Requeue,
}

/// Appends a room's batch in a transaction of its own and gives every send its outcome, each
/// send rolled back alone (to a savepoint) if it fails.
pub(super) async fn run_alone(ctx: RoomCtx<'_>, batch: RoomBatch) {
    let RoomBatch { lock, sends: unfinished } = batch;
    let sends = unfinished.sends();
    match append_all(ctx, &unfinished.room, lock, sends).await {
        Ok(outcomes) => unfinished.finish(outcomes),
        Err(error) => unfinished.fail(&error),
    }
}

async fn append_all(
    ctx: RoomCtx<'_>,
    room: &Room,
    lock: LocalRoomLock,
    batch: &[Arc<PendingAppend>],
) -> Result<Vec<Result<Appended>>> {
    let (mut tx, held) = lock.begin(ctx.pool).await?;
    let mut reservation = ctx.streams.reserve();
    // A position for each send, taken with the stream floor that covers them in one round
    // trip (the transaction asks for none), once the room's lock orders this batch after the
    // room's previous one. A retransmission leaves its position unused: a gap.
    reservation.take_ahead(batch.len()).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut appender = room.appender(ctx, &held);
    for pending in batch {
        let outcome = if batch.len() == 1 {
            // Alone, a send needs no savepoint: its failure is the transaction's.
            append_one(&mut appender, &mut tx, &mut reservation, pending).await
        } else {
            let mut savepoint = tx.begin().await?;
            let outcome = append_one(&mut appender, &mut savepoint, &mut reservation, pending).await;
            match outcome {
                Ok(_) => savepoint.commit().await?,
                Err(_) => savepoint.rollback().await?,
            }
            outcome
        };
        outcomes.push(outcome);
    }
    if outcomes.iter().all(Result::is_err) {
        tx.rollback().await?;
        drop(reservation);
        return Ok(outcomes);
    }
    let appended: Vec<&Appended> = outcomes.iter().filter_map(|outcome| outcome.as_ref().ok()).collect();
    let known = known_room(&appender, &appended);
    let carried = appender.carried();
    commit_events_knowing(ctx, tx, reservation, held.room_id(), appended, known).await?;
    room.carry(carried);
    Ok(outcomes)
}

impl RoomSerial<SendQueue> {
    /// An appender for the room, starting from what its last batch left (taken: should this
    /// batch fail, the next starts afresh).
    pub(super) fn appender<'a>(&self, ctx: RoomCtx<'a>, held: &'a HeldRoomLock) -> Appender<'a> {
        match self.attached.carried().take() {
            Some(carried) => Appender::resuming(ctx, held, carried),
            None => Appender::new(ctx, held),
        }
    }

    /// What the next batch may start from, once this one's transaction has committed.
    pub(super) fn carry(&self, carried: Option<Carried>) {
        *self.attached.carried() = carried;
    }
}

/// What the appender learnt of its room that spares the commit work.
pub(super) fn known_room(appender: &Appender<'_>, appended: &[&Appended]) -> KnownRoom {
    KnownRoom {
        has_remote_servers: appender.room_has_remote_servers(),
        nobody_hears: appender.nobody_else_local(appended.iter().filter_map(|appended| match appended {
            Appended::New { pdu, .. } => Some(pdu.sender.as_ref()),
            Appended::SentBefore(_) => None,
        })),
    }
}

pub(super) async fn append_one(
    appender: &mut Appender<'_>,
    conn: &mut PgConnection,
    reservation: &mut Reservation<'_>,
    pending: &PendingAppend,
) -> Result<Appended> {
    let transaction = pending.transaction.as_ref().map(|(device_id, txn_id)| Transaction { device_id, txn_id });
    appender.append(conn, reservation, &pending.sender, pending.template.clone(), transaction).await
}

/// A room's sends taken from its queue and not yet given their outcomes. Dropped so (the
/// request that was appending them went away mid-way, its transaction rolled back), they go
/// back to the front of the room's queue and their senders are woken, one of which takes the
/// lock next.
pub(super) struct Requeue {
    pub(super) room: Arc<Room>,
    sends: Option<Vec<Arc<PendingAppend>>>,
}

impl Requeue {
    pub(super) fn sends(&self) -> &[Arc<PendingAppend>] {
        self.sends.as_deref().unwrap_or_default()
    }

    /// Gives each send its outcome (in the order of [`Requeue::sends`]).
    pub(super) fn finish(mut self, outcomes: Vec<Result<Appended>>) {
        let sends = self.sends.take().unwrap_or_default();
        for (pending, outcome) in sends.iter().zip(outcomes) {
            pending.finish(outcome.map(|appended| appended.event_id().to_owned()));
        }
    }

    /// Every send fails with `error` (nothing of them was committed).
    pub(super) fn fail(self, error: &Error) {
        let outcomes = self.sends().iter().map(|_| Err(error.replicate())).collect();
        self.finish(outcomes);
    }
}

impl Drop for Requeue {
    fn drop(&mut self) {
        let Some(batch) = self.sends.take() else { return };
        let mut queue = self.room.attached.pending();
        for pending in batch.iter().rev() {
            queue.push_front(pending.clone());
        }
        drop(queue);
        for pending in &batch {
            pending.done.notify_one();
        }
    }
}
