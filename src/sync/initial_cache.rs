//! Initial syncs served from what an earlier one already built (issue #24, item 2).
//!
//! A joined room's entry in an initial `/sync` is a function of the user, the filter and
//! everything of the room's streams up to the window's end: its events (state, redactions,
//! edits, member changes all are events), its typing and receipts, and the user's account data
//! (ignore list, room tags). Each carries a position of the one global stream, so an entry
//! built at position `P` is still exact at a later `Q` when none of them moved in `(P, Q]` —
//! which the incremental sync's one news query answers for every room at once. An initial sync
//! then rebuilds only the rooms that moved and takes the others from here.
//!
//! Nothing here is trusted across processes or kept consistent by notifications: the news
//! query reads PostgreSQL, which every process writes, so an entry is never served past a
//! change another process committed below the window's end.

use crate::db::sync::MembershipRow;
use crate::error::Result;
use crate::store::Store;
use crate::sync::news::{News, Wanted};
use crate::sync::sections::SectionFilters;
use crate::sync::types::{SyncOptions, SyncWindow};
use ruma::{OwnedUserId, UserId};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Room entries kept across all users. An entry of ten events is ~10-30 KB as a JSON value,
/// so this bounds the cache to roughly 100 MB; past it, the least recently used users' entries
/// go first.
const ROOM_ENTRIES_BUDGET: usize = 5_000;

/// The joined-room entries of recent initial syncs, by user and filter. Held by the process
/// (in `Streams`), not a `static`, so that each server in a test process has its own.
#[derive(Default)]
pub struct InitialSyncCache {
    inner: Mutex<Inner>,
    /// Entries served from here, for tests and operators to see that it works.
    served: AtomicU64,
}

#[derive(Default)]
struct Inner {
    by_key: HashMap<CacheKey, Cached>,
    entries: usize,
    /// Ticks on every use; the smallest `last_used` is evicted first.
    clock: u64,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    user: OwnedUserId,
    /// Everything of the request that shapes a room's entry (the device does not: its
    /// transaction ids are added to the answer later, and an initial sync sends lazily
    /// loaded members whatever the device was sent before).
    filter: String,
}

struct Cached {
    /// The position every entry is exact at.
    upto: i64,
    rooms: HashMap<String, Arc<Value>>,
    last_used: u64,
}

/// The entries a sync may take from the cache, and what it needs to store its own.
pub(super) struct Reuse {
    key: Option<CacheKey>,
    /// Joined rooms' entries still exact at the window's end.
    pub rooms: HashMap<String, Arc<Value>>,
}

impl Reuse {
    /// Nothing to reuse, nothing to store: the sync is not one this cache serves.
    pub fn none() -> Reuse {
        Reuse { key: None, rooms: HashMap::new() }
    }
}

impl InitialSyncCache {
    /// The entries of the user's joined rooms that an initial sync ending at `upto` can take
    /// as they are. Only plain initial syncs are served (not `full_state`, which asks to see
    /// everything again, and not incremental ones, which build only what moved anyway).
    pub(super) async fn reusable(
        &self,
        pool: &Store,
        user: &UserId,
        memberships: &[MembershipRow],
        window: SyncWindow,
        (options, filters): (&SyncOptions, &SectionFilters),
    ) -> Result<Reuse> {
        if window.since.is_some() || options.full_state {
            return Ok(Reuse::none());
        }
        let key = CacheKey { user: user.to_owned(), filter: fingerprint(options, filters) };
        let Some((cached_upto, rooms)) = self.lookup(&key) else {
            return Ok(Reuse { key: Some(key), rooms: HashMap::new() });
        };
        if cached_upto > window.upto {
            // Built by a sync that saw further than this one: not exact for this window.
            return Ok(Reuse { key: Some(key), rooms: HashMap::new() });
        }
        if cached_upto == window.upto {
            return Ok(Reuse { key: Some(key), rooms });
        }
        let since_cached = SyncWindow { since: Some(cached_upto), upto: window.upto };
        let news = News::of(pool, user, None, memberships, since_cached, Wanted::ALL).await?;
        if news.account_data() {
            // The ignore list or a room's account data may have changed: start again.
            return Ok(Reuse { key: Some(key), rooms: HashMap::new() });
        }
        let mut rooms = rooms;
        // Every list is known: the news of an incremental window always reads them all.
        for moved in [news.rooms_with_events(), news.rooms_with_typing(), news.rooms_with_receipts()] {
            for room_id in moved.unwrap_or_default() {
                rooms.remove(room_id);
            }
        }
        // A membership that moved (a leave and a re-join) makes the room new again.
        for row in memberships {
            if row.stream_position > cached_upto {
                rooms.remove(&row.room_id);
            }
        }
        Ok(Reuse { key: Some(key), rooms })
    }

    /// Keeps the joined rooms' entries of an initial sync ending at `upto`: those it reused
    /// (exact at `upto` too) and those it built. The user's other rooms are dropped: no longer
    /// joined, or without an entry.
    pub(super) fn store(&self, reuse: Reuse, upto: i64, reused: &[(String, Arc<Value>)], built: &[(String, Value)]) {
        let Some(key) = reuse.key else { return };
        self.served.fetch_add(reused.len() as u64, Ordering::Relaxed);
        if reused.len() + built.len() > ROOM_ENTRIES_BUDGET {
            return;
        }
        let mut rooms: HashMap<String, Arc<Value>> = reused.iter().cloned().collect();
        rooms.extend(built.iter().map(|(room_id, entry)| (room_id.clone(), Arc::new(entry.clone()))));
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if inner.by_key.get(&key).is_some_and(|cached| cached.upto > upto) {
            // A sync that saw further stored already; keep the newer entries.
            return;
        }
        inner.clock += 1;
        let last_used = inner.clock;
        let added = rooms.len();
        if let Some(replaced) = inner.by_key.insert(key, Cached { upto, rooms, last_used }) {
            inner.entries -= replaced.rooms.len();
        }
        inner.entries += added;
        while inner.entries > ROOM_ENTRIES_BUDGET {
            let Some(oldest) = inner.by_key.iter().min_by_key(|(_, cached)| cached.last_used).map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(evicted) = inner.by_key.remove(&oldest) {
                inner.entries -= evicted.rooms.len();
            }
        }
    }

    /// Room entries an initial sync took from here since the process started.
    pub fn served_entries(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Forgets everything: for changes that move no stream position (an admin's history purge).
    pub fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.by_key.clear();
        inner.entries = 0;
    }

    fn lookup(&self, key: &CacheKey) -> Option<(i64, HashMap<String, Arc<Value>>)> {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.clock += 1;
        let now = inner.clock;
        let cached = inner.by_key.get_mut(key)?;
        cached.last_used = now;
        Some((cached.upto, cached.rooms.clone()))
    }
}

/// The `(member, event id)` of the member events in a room entry's state and timeline.
pub(super) fn member_events(entry: &Value) -> impl Iterator<Item = (&str, &str)> {
    ["state", "timeline"]
        .into_iter()
        .filter_map(|section| entry[section]["events"].as_array())
        .flatten()
        .filter(|event| event["type"] == "m.room.member")
        .filter_map(|event| Some((event["state_key"].as_str()?, event["event_id"].as_str()?)))
}

/// What of the options and section filters shapes a joined room's entry, as a comparable
/// string (their debug forms hold every field).
fn fingerprint(options: &SyncOptions, filters: &SectionFilters) -> String {
    format!(
        "{:?}|{}|{}|{}|{:?}",
        options.timeline, options.timeline_limit, options.unread_thread_notifications, options.include_leave, filters
    )
}
