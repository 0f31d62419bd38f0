//! Unread counts carried from one sync to the next. Counting means reading every notification
//! row after the user's read receipt — in a busy room nobody reads, hundreds per sync. But
//! between two syncs only the newer rows can change the counts, unless a receipt moved or
//! the ignore list changed; so the counts of the last sync are kept per (database, user,
//! room) and only the rows after them are read. (Rows never change once written: each event's
//! push actions are decided when it arrives.)
//!
//! The cache is per process and derived only from the database, so several processes on one
//! database each keep their own and agree.

use crate::db::unread::ReadPositions;
use crate::sync::unread::UnreadCounts;
use ruma::{RoomId, UserId};
use sqlx::PgPool;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{LazyLock, Mutex};

/// Entries kept at most; past this the cache starts over (a rough bound, not an LRU: a
/// cleared entry only costs one full count).
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct CacheKey {
    database: String,
    user: String,
    room: String,
}

impl CacheKey {
    /// The database is part of the key: one process may serve several (tests do).
    pub(super) fn new(pool: &PgPool, user: &UserId, room: &RoomId) -> CacheKey {
        let database = pool.connect_options().get_database().unwrap_or_default().to_owned();
        CacheKey { database, user: user.to_string(), room: room.to_string() }
    }
}

struct Entry {
    positions: ReadPositions,
    ignored: u64,
    upto: i64,
    counts: UnreadCounts,
}

static CACHE: LazyLock<Mutex<HashMap<CacheKey, Entry>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn cache() -> std::sync::MutexGuard<'static, HashMap<CacheKey, Entry>> {
    CACHE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
    key: &CacheKey,
    positions: &ReadPositions,
    ignored: &HashSet<String>,
    upto: i64,
) -> Option<(i64, UnreadCounts)> {
    let cache = cache();
    let entry = cache.get(key)?;
    let usable = &entry.positions == positions && entry.ignored == fingerprint(ignored) && entry.upto <= upto;
    usable.then(|| (entry.upto, entry.counts.clone()))
}

pub(super) fn store(
    key: CacheKey,
    positions: ReadPositions,
    ignored: &HashSet<String>,
    upto: i64,
    counts: UnreadCounts,
) {
    let mut cache = cache();
    if cache.len() >= MAX_ENTRIES && !cache.contains_key(&key) {
        cache.clear();
    }
    // Never move an entry backwards: a sync of an older window must not undo a newer one.
    if cache.get(&key).is_some_and(|entry| entry.upto > upto) {
        return;
    }
    cache.insert(key, Entry { positions, ignored: fingerprint(ignored), upto, counts });
}
