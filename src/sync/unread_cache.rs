//! Unread counts carried from one sync to the next. Counting means reading every notification
//! row after the user's read receipt — in a busy room nobody reads, hundreds per sync. But
//! between two syncs only the newer rows can change the counts, unless a receipt moved or
//! the ignore list changed; so the counts of the last sync are kept per (user, room), in the
//! store, and only the rows after them are read. (Rows never change once written: each event's
//! push actions are decided when it arrives.)
//!
//! The cache is per process and derived only from the database, so several processes on one
//! database each keep their own and agree.

use crate::db::unread::ReadPositions;
use crate::store::Store;
use crate::sync::unread::UnreadCounts;
use ruma::{RoomId, UserId};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// Entries kept at most; past this the cache starts over (a rough bound, not an LRU: a
/// cleared entry only costs one full count).
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct CacheKey {
    user: String,
    room: String,
}

impl CacheKey {
    pub(super) fn new(user: &UserId, room: &RoomId) -> CacheKey {
        CacheKey { user: user.to_string(), room: room.to_string() }
    }
}

struct Entry {
    positions: ReadPositions,
    ignored: u64,
    upto: i64,
    counts: UnreadCounts,
}

/// The counts of each (user, room) a store has counted.
#[derive(Default)]
pub(super) struct UnreadCache(Mutex<HashMap<CacheKey, Entry>>);

impl UnreadCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Entry>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Order-independent fingerprint of the ignore list.
fn fingerprint(ignored: &HashSet<String>) -> u64 {
    let mut sorted: Vec<&String> = ignored.iter().collect();
    sorted.sort_unstable();
    let mut hasher = DefaultHasher::new();
    sorted.hash(&mut hasher);
    hasher.finish()
}

/// The counts up to some position not after `upto`, if they were made with these read
/// positions and this ignore list.
pub(super) fn lookup(
    pool: &Store,
    key: &CacheKey,
    positions: &ReadPositions,
    ignored: &HashSet<String>,
    upto: i64,
) -> Option<(i64, UnreadCounts)> {
    let cache = pool.cache::<UnreadCache>();
    let entries = cache.entries();
    let entry = entries.get(key)?;
    let usable = &entry.positions == positions && entry.ignored == fingerprint(ignored) && entry.upto <= upto;
    usable.then(|| (entry.upto, entry.counts.clone()))
}

pub(super) fn store(
    pool: &Store,
    key: CacheKey,
    positions: ReadPositions,
    ignored: &HashSet<String>,
    upto: i64,
    counts: UnreadCounts,
) {
    let cache = pool.cache::<UnreadCache>();
    let mut entries = cache.entries();
    if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
        entries.clear();
    }
    // Never move an entry backwards: a sync of an older window must not undo a newer one.
    if entries.get(&key).is_some_and(|entry| entry.upto > upto) {
        return;
    }
    entries.insert(key, Entry { positions, ignored: fingerprint(ignored), upto, counts });
}
