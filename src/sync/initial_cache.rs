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
//! Stream changes need no notification across processes: the news query reads PostgreSQL,
//! which every process writes, so an entry is never served past a change another process
//! committed below the window's end. A history purge moves no position; every process counts
//! the purges announced on the stream's notifications (`Notifier::history_purges`, sent with
//! the purge's commit), and an entry is served only under the count it was built under. (Until
//! another process's notification arrives — milliseconds — it may still serve what the purge
//! removed, as it would had the sync come a moment earlier.)
//!
//! Entries are kept as built: events as their serialised JSON, so serving one again copies
//! bytes and parses nothing.

use crate::db::sync::MembershipRow;
use crate::error::Result;
use crate::store::Store;
use crate::sync::news::{News, Wanted};
use crate::sync::response::SyncRoom;
use crate::sync::sections::SectionFilters;
use crate::sync::types::{SyncOptions, SyncWindow};
use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Room entries kept across all users. An entry of ten events is ~5-15 KB of JSON text,
/// so this bounds the cache to roughly 50 MB; past it, the least recently used users' entries
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
    /// The device's own sends carry their transaction ids in its entries (a client's repeated
    /// initial syncs come from one device; the ids never change once an event is sent). An
    /// initial sync sends lazily loaded members whatever the device was sent before, so
    /// nothing else of the device shapes an entry.
    device: Option<OwnedDeviceId>,
    /// Everything of the request that shapes a room's entry.
    filter: String,
}

struct Cached {
    /// The position every entry is exact at.
    upto: i64,
    /// The history purges announced before the entries were built.
    history_purges: u64,
    rooms: HashMap<String, Arc<SyncRoom>>,
    last_used: u64,
}

/// The entries a sync may take from the cache, and what it needs to store its own.
pub(super) struct Reuse {
    key: Option<CacheKey>,
    history_purges: u64,
    /// Joined rooms' entries still exact at the window's end.
    pub rooms: HashMap<String, Arc<SyncRoom>>,
}

impl Reuse {
    /// Nothing to reuse, nothing to store: the sync is not one this cache serves.
    pub(super) fn none() -> Reuse {
        Reuse { key: None, history_purges: 0, rooms: HashMap::new() }
    }
}

/// The cache as one sync uses it: with the count of history purges announced when it began
/// (read before anything of the rooms is).
#[derive(Clone, Copy)]
pub struct CacheAt<'a> {
    pub cache: &'a InitialSyncCache,
    pub history_purges: u64,
}

impl CacheAt<'_> {
    pub(super) async fn reusable(
        self,
        pool: &Store,
        user: &UserId,
        memberships: &[MembershipRow],
        window: SyncWindow,
        shape: (&SyncOptions, &SectionFilters),
    ) -> Result<Reuse> {
        self.cache.reusable(pool, user, memberships, window, shape, self.history_purges).await
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
        history_purges: u64,
    ) -> Result<Reuse> {
        if window.since.is_some() || options.full_state {
            return Ok(Reuse::none());
        }
        let key =
            CacheKey { user: user.to_owned(), device: options.device.clone(), filter: fingerprint(options, filters) };
        let nothing = |key| Ok(Reuse { key: Some(key), history_purges, rooms: HashMap::new() });
        let Some((cached_upto, rooms)) = self.lookup(&key, history_purges) else {
            return nothing(key);
        };
        if cached_upto > window.upto {
            // Built by a sync that saw further than this one: not exact for this window.
            return nothing(key);
        }
        if cached_upto == window.upto {
            return Ok(Reuse { key: Some(key), history_purges, rooms });
        }
        let since_cached = SyncWindow { since: Some(cached_upto), upto: window.upto };
        let news = News::of(pool, user, None, memberships, since_cached, Wanted::ALL).await?;
        if news.account_data() {
            // The ignore list or a room's account data may have changed: start again.
            return nothing(key);
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
        Ok(Reuse { key: Some(key), history_purges, rooms })
    }

    /// Keeps the joined rooms' entries of an initial sync ending at `upto`: those it reused
    /// (exact at `upto` too) and those it built. The user's other rooms are dropped: no longer
    /// joined, or without an entry.
    pub(super) fn store(
        &self,
        reuse: Reuse,
        upto: i64,
        reused: &[(String, Arc<SyncRoom>)],
        built: &[(String, Arc<SyncRoom>)],
    ) {
        let Reuse { key: Some(key), history_purges, .. } = reuse else { return };
        self.served.fetch_add(reused.len() as u64, Ordering::Relaxed);
        if reused.len() + built.len() > ROOM_ENTRIES_BUDGET {
            return;
        }
        let rooms: HashMap<String, Arc<SyncRoom>> = reused.iter().chain(built).cloned().collect();
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if inner.by_key.get(&key).is_some_and(|cached| {
            cached.history_purges > history_purges || (cached.history_purges == history_purges && cached.upto > upto)
        }) {
            // A sync that saw further (or after a purge) stored already; keep the newer entries.
            return;
        }
        inner.clock += 1;
        let last_used = inner.clock;
        let added = rooms.len();
        if let Some(replaced) = inner.by_key.insert(key, Cached { upto, history_purges, rooms, last_used }) {
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

    /// The user's entries, when built under `history_purges` purges; older ones are dropped.
    fn lookup(&self, key: &CacheKey, history_purges: u64) -> Option<(i64, HashMap<String, Arc<SyncRoom>>)> {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.clock += 1;
        let now = inner.clock;
        if inner.by_key.get(key).is_some_and(|cached| cached.history_purges != history_purges) {
            // Built before a purge (or, if newer, by a sync that learnt of one first): the
            // purge may have removed what the entries show.
            if let Some(stale) = inner.by_key.remove(key) {
                inner.entries -= stale.rooms.len();
            }
            return None;
        }
        let cached = inner.by_key.get_mut(key)?;
        cached.last_used = now;
        Some((cached.upto, cached.rooms.clone()))
    }
}

/// The `(member, event id)` of the member events in a room entry's state and timeline.
pub(super) fn member_events(entry: &SyncRoom) -> impl Iterator<Item = (&str, &str)> {
    entry
        .state
        .events
        .iter()
        .chain(&entry.timeline.events)
        .filter(|event| event.kind == "m.room.member")
        .filter_map(|event| Some((event.state_key.as_deref()?, event.event_id.as_deref()?)))
}

/// What of the options and section filters shapes a joined room's entry, as a comparable
/// string (their debug forms hold every field).
fn fingerprint(options: &SyncOptions, filters: &SectionFilters) -> String {
    format!(
        "{:?}|{}|{}|{}|{:?}",
        options.timeline, options.timeline_limit, options.unread_thread_notifications, options.include_leave, filters
    )
}
