//! Group commit for a room's concurrent sends. Events in a room are created one after another
//! (each names the previous as its parent), so concurrent senders queue on the room's lock;
//! a durable commit per event would bound a room at the disk's fsync rate. Instead each send
//! joins the room's queue, and whoever takes the lock appends everything queued so far in one
//! transaction — one commit for the lot — and hands each sender its own outcome. A send that
//! fails (refused by the auth rules, say) is rolled back alone, to a savepoint.
//!
//! A batch can be cut short (the request that led it dropped mid-way): its transaction rolls
//! back and its sends go back to the front of the queue, for the next holder of the lock.

use crate::error::Result;
use crate::rooms::RoomCtx;
use crate::rooms::build::EventTemplate;
use crate::rooms::send::appender::{Appended, Appender, Carried, Transaction};
use crate::rooms::send::committed::{KnownRoom, commit_events_knowing};
use crate::rooms::send::locks::{LocalRoomLock, RoomSerial};
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

type Room = RoomSerial<SendQueue>;

/// A send waiting for its room.
struct PendingAppend {
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
/// commit shared with whatever else is queued) when it gets the room's lock first.
pub(super) async fn append_batched(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    (sender, template, transaction): (&UserId, EventTemplate, Option<Transaction<'_>>),
) -> Result<OwnedEventId> {
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
            let batch: Vec<_> = {
                let mut queue = room.attached.pending();
                let take = queue.len().min(MAX_BATCH);
                queue.drain(..take).collect()
            };
            run(ctx, &room, lock, batch).await;
        }
    }
}

/// Appends a batch in one transaction and gives every send its outcome.
async fn run(ctx: RoomCtx<'_>, room: &Room, lock: LocalRoomLock, batch: Vec<Arc<PendingAppend>>) {
    if batch.is_empty() {
        return;
    }
    let mut unfinished = Requeue { room, batch: Some(batch) };
    let batch = unfinished.batch.as_deref().unwrap_or_default();
    let outcomes = match append_all(ctx, room, lock, batch).await {
        Ok(outcomes) => outcomes,
        // Nothing committed: every send fails the same way.
        Err(error) => batch.iter().map(|_| Err(error.replicate())).collect(),
    };
    for (pending, outcome) in batch.iter().zip(outcomes) {
        pending.finish(outcome.map(|appended| appended.event_id().to_owned()));
    }
    unfinished.batch = None;
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
    let room_id = held.room_id();
    let mut outcomes = Vec::with_capacity(batch.len());
    // Carries the room's extremities and auth state from one send to the next, and from the
    // last batch to this one. Taken: should this batch fail, the next starts afresh.
    let carried = room.attached.carried().take();
    let mut appender = match carried {
        Some(carried) => Appender::resuming(ctx, &held, carried),
        None => Appender::new(ctx, &held),
    };
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
    let known = KnownRoom {
        has_remote_servers: appender.room_has_remote_servers(),
        nobody_hears: appender.nobody_else_local(outcomes.iter().filter_map(|outcome| match outcome {
            Ok(Appended::New { pdu, .. }) => Some(pdu.sender.as_ref()),
            _ => None,
        })),
    };
    let carried = appender.carried();
    let appended = outcomes.iter().filter_map(|outcome| outcome.as_ref().ok());
    commit_events_knowing(ctx, tx, reservation, room_id, appended, known).await?;
    *room.attached.carried() = carried;
    Ok(outcomes)
}

async fn append_one(
    appender: &mut Appender<'_>,
    conn: &mut PgConnection,
    reservation: &mut Reservation<'_>,
    pending: &PendingAppend,
) -> Result<Appended> {
    let transaction = pending.transaction.as_ref().map(|(device_id, txn_id)| Transaction { device_id, txn_id });
    appender.append(conn, reservation, &pending.sender, pending.template.clone(), transaction).await
}

/// Puts a batch cut short back at the front of the queue and wakes its senders, one of which
/// takes the lock next.
struct Requeue<'a> {
    room: &'a Room,
    batch: Option<Vec<Arc<PendingAppend>>>,
}

impl Drop for Requeue<'_> {
    fn drop(&mut self) {
        let Some(batch) = self.batch.take() else { return };
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
