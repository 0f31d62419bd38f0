//! Serialisation of event creation per room. An in-process lock keeps tasks of one process
//! from queueing on database connections while they wait; the PostgreSQL advisory lock taken
//! in the writing transaction serialises across processes. Holding both is a value,
//! [`HeldRoomLock`], that only this module makes and that appending and storing events take:
//! a writer that forgot to lock the room does not compile.
//!
//! Beside its lock, each room keeps whatever its writers attach (the send path keeps its queue
//! of waiting sends there, so whoever holds the lock next can append them all in one commit).

use crate::db;
use crate::error::Result;
use crate::store::Store;
use ruma::{OwnedRoomId, RoomId};
use sqlx::{PgConnection, Postgres};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

/// Rooms not in use are forgotten once the map holds more than this many.
const FORGET_ABOVE: usize = 1024;

/// Every room's lock, with `Q` attached to each.
pub struct RoomLocks<Q> {
    rooms: Mutex<HashMap<OwnedRoomId, Arc<RoomSerial<Q>>>>,
}

impl<Q> Default for RoomLocks<Q> {
    fn default() -> Self {
        RoomLocks { rooms: Mutex::new(HashMap::new()) }
    }
}

/// One room's lock, and what its writers attached to it.
#[derive(Default)]
pub struct RoomSerial<Q> {
    lock: Arc<tokio::sync::Mutex<()>>,
    pub attached: Q,
}

/// The room's in-process lock, before its transaction took the database lock too.
pub struct LocalRoomLock {
    room_id: OwnedRoomId,
    guard: OwnedMutexGuard<()>,
}

/// Proof that this task holds the room's lock in this process and, in the transaction it was
/// taken in, in PostgreSQL: nobody else creates events in the room until it is dropped (and
/// that transaction ends).
pub struct HeldRoomLock {
    room_id: OwnedRoomId,
    _local: OwnedMutexGuard<()>,
}

impl<Q: Default> RoomLocks<Q> {
    pub fn room(&self, room_id: &RoomId) -> Arc<RoomSerial<Q>> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget rooms nobody is using, so the map does not grow without bound.
        if rooms.len() > FORGET_ABOVE {
            rooms.retain(|_, room| Arc::strong_count(room) > 1);
        }
        rooms.entry(room_id.to_owned()).or_default().clone()
    }

    /// Waits for the room's lock in this process, then takes it in `transaction` too.
    pub async fn lock_in(&self, transaction: &mut PgConnection, room_id: &RoomId) -> Result<HeldRoomLock> {
        self.room(room_id).lock(room_id).await.in_transaction(transaction).await
    }

    /// [`RoomLocks::lock_in`] for rooms that are being created (nobody else knows their ids
    /// yet, so nobody waits for them, in any order): all taken in `transaction` in one
    /// statement. In the order of `room_ids`.
    pub async fn lock_new_in(&self, transaction: &mut PgConnection, room_ids: &[&RoomId]) -> Result<Vec<HeldRoomLock>> {
        let mut held = Vec::with_capacity(room_ids.len());
        for room_id in room_ids {
            let local = self.room(room_id).lock(room_id).await;
            held.push(HeldRoomLock { room_id: local.room_id, _local: local.guard });
        }
        let ids: Vec<&str> = room_ids.iter().map(|room_id| room_id.as_str()).collect();
        db::rooms::lock_rooms(transaction, &ids).await?;
        Ok(held)
    }
}

impl<Q> RoomSerial<Q> {
    /// Waits for the room's lock in this process.
    pub async fn lock(&self, room_id: &RoomId) -> LocalRoomLock {
        LocalRoomLock { room_id: room_id.to_owned(), guard: self.lock.clone().lock_owned().await }
    }
}

impl LocalRoomLock {
    /// Takes the room's lock in `transaction` as well (held until it commits or rolls back).
    pub async fn in_transaction(self, transaction: &mut PgConnection) -> Result<HeldRoomLock> {
        db::rooms::lock_room(transaction, self.room_id.as_str()).await?;
        Ok(HeldRoomLock { room_id: self.room_id, _local: self.guard })
    }

    /// Begins a transaction on `pool` that takes the room's lock too, in the same round trip.
    pub async fn begin(self, pool: &Store) -> Result<(sqlx::Transaction<'static, Postgres>, HeldRoomLock)> {
        let transaction = db::rooms::begin_locked(pool, self.room_id.as_str()).await?;
        Ok((transaction, HeldRoomLock { room_id: self.room_id, _local: self.guard }))
    }
}

impl LocalRoomLock {
    /// [`LocalRoomLock::begin`] for several rooms: one transaction on `pool` that takes every
    /// room's lock in the round trip that opens it (in a fixed order, see
    /// [`db::rooms::begin_locked_all`]). The held locks are in the order of `locks`.
    pub async fn begin_all(
        locks: Vec<LocalRoomLock>,
        pool: &Store,
    ) -> Result<(sqlx::Transaction<'static, Postgres>, Vec<HeldRoomLock>)> {
        let room_ids: Vec<&str> = locks.iter().map(|lock| lock.room_id.as_str()).collect();
        let transaction = db::rooms::begin_locked_all(pool, &room_ids).await?;
        let held = locks.into_iter().map(|lock| HeldRoomLock { room_id: lock.room_id, _local: lock.guard }).collect();
        Ok((transaction, held))
    }
}

impl HeldRoomLock {
    pub fn room_id(&self) -> &RoomId {
        &self.room_id
    }
}

/// Rolls back `transaction`, in which `held` were taken, keeping the rooms' in-process locks:
/// the caller tries the work again another way, and nobody takes the rooms in between. A
/// failed rollback closes the connection, which ends the transaction all the same.
pub async fn roll_back_keeping(
    transaction: sqlx::Transaction<'static, Postgres>,
    held: Vec<HeldRoomLock>,
) -> Vec<LocalRoomLock> {
    if let Err(error) = transaction.rollback().await {
        tracing::warn!(%error, "rolling back a commit group");
    }
    held.into_iter().map(|held| LocalRoomLock { room_id: held.room_id, guard: held._local }).collect()
}
