//! In-process serialisation of event creation per room. The PostgreSQL advisory lock taken in
//! the same transaction serialises across processes; this lock keeps tasks of one process
//! from queueing on database connections while they wait. Beside the lock, each room keeps
//! the queue of sends waiting for it, so that whoever holds the lock next can append them all
//! in one commit (`rooms::batch`).

use crate::rooms::batch::PendingAppend;
use ruma::{OwnedRoomId, RoomId};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
pub struct RoomLocks {
    rooms: Mutex<HashMap<OwnedRoomId, Arc<RoomSerial>>>,
}

/// One room's lock and its queue of waiting sends.
#[derive(Default)]
pub struct RoomSerial {
    lock: Arc<tokio::sync::Mutex<()>>,
    queue: Mutex<VecDeque<Arc<PendingAppend>>>,
}

impl RoomSerial {
    pub async fn lock(&self) -> OwnedMutexGuard<()> {
        self.lock.clone().lock_owned().await
    }

    pub fn queue(&self) -> MutexGuard<'_, VecDeque<Arc<PendingAppend>>> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RoomLocks {
    pub fn room(&self, room_id: &RoomId) -> Arc<RoomSerial> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget rooms nobody is using, so the map does not grow without bound.
        if rooms.len() > 1024 {
            rooms.retain(|_, room| Arc::strong_count(room) > 1);
        }
        rooms.entry(room_id.to_owned()).or_default().clone()
    }

    pub async fn lock(&self, room_id: &RoomId) -> OwnedMutexGuard<()> {
        self.room(room_id).lock().await
    }
}
