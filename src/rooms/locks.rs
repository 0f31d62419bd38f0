//! In-process serialisation of event creation per room. The PostgreSQL advisory lock taken in
//! the same transaction serialises across processes; this lock keeps tasks of one process
//! from queueing on database connections while they wait.

use ruma::{OwnedRoomId, RoomId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
pub struct RoomLocks {
    rooms: Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>,
}

impl RoomLocks {
    pub async fn lock(&self, room_id: &RoomId) -> OwnedMutexGuard<()> {
        let lock = {
            let mut rooms = self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // Forget rooms nobody is waiting on, so the map does not grow without bound.
            if rooms.len() > 1024 {
                rooms.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            rooms.entry(room_id.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }
}
