//! Timeline pages read once for every sync that asks for the same one. When a message wakes a
//! room's thousand long-polls, each asks for the room's newest events in the same window —
//! the same page, a thousand times. Here the first sync to ask reads it, those arriving while
//! it reads wait for that read, and those arriving later take it from memory.
//!
//! Only what cannot change is kept: a page of an incremental window ends at or below the
//! readable position, where everything has committed, and events never move in or out of a
//! position range once committed. The page's per-event facts read beside the JSON (whether
//! anything relates to an event, whether its sender was erased) may have changed since; a
//! sync served the older facts answers as it would have a moment earlier, and the change
//! itself (a redaction, an edit) reaches the client in a later window either way. So the
//! cache is per process and needs no invalidation: several processes each keep their own.

use crate::db;
use crate::db::events::StoredEvent;
use crate::error::Result;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::OnceCell;

/// Bytes of event JSON kept at most; past this the cache starts over (a rough bound: a
/// dropped page only costs one read, and a burst refills it with the page it needs).
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Pages holding more events than this are a client's catch-up after a long absence, not a
/// burst's page: they are not kept (the syncs that share the window read it themselves).
const MAX_SHARED_PAGE: usize = 101;

/// Which window: the room's events with `after < position <= from`. The page size is not
/// part of it: syncs whose filters ask different timeline limits share a window's read when
/// the page read holds as many events as they ask or the whole window (a live window holds
/// one event, whatever the limit).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PageKey {
    room_id: String,
    from: i64,
    after: i64,
}

/// The first read of a window, newest first.
enum Page {
    Kept {
        events: Vec<StoredEvent>,
        /// Whether the read reached the window's start (fewer events than it asked for).
        whole: bool,
    },
    /// Too large to keep.
    NotKept,
}

impl Page {
    /// The window's newest `limit` events, when this read holds them.
    fn newest(&self, limit: usize) -> Option<Vec<StoredEvent>> {
        match self {
            Page::Kept { events, whole } if *whole || events.len() >= limit => {
                Some(events.iter().take(limit).cloned().collect())
            }
            _ => None,
        }
    }
}

type Slot = Arc<OnceCell<Arc<Page>>>;

/// The pages a store's syncs share.
#[derive(Default)]
pub(super) struct SharedPages {
    slots: Mutex<HashMap<PageKey, Slot>>,
    bytes: AtomicUsize,
}

impl SharedPages {
    fn slots(&self) -> MutexGuard<'_, HashMap<PageKey, Slot>> {
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn slot(&self, key: PageKey) -> Slot {
        let mut slots = self.slots();
        if self.bytes.load(Ordering::Relaxed) > MAX_BYTES && !slots.contains_key(&key) {
            slots.clear();
            self.bytes.store(0, Ordering::Relaxed);
        }
        slots.entry(key).or_default().clone()
    }
}

/// The room's newest `limit` events with `after < position <= from` (newest first), as
/// `db::events::timeline_page` reads them, for a sync whose window ends at `from` or above
/// (so `from` is readable). An incremental window's page is shared; others are read as they
/// are.
pub(super) async fn newest_page(
    pool: &Store,
    room_id: &str,
    from: i64,
    after: i64,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    let read = |limit: usize| db::events::timeline_page(pool, room_id, from, true, Some(after), limit as i64);
    // An initial sync (or a newly joined room) reads from the room's start: such pages are
    // one user's, and would only crowd out the bursts' pages.
    if after <= 0 {
        return Ok(read(limit).await?);
    }
    let pages = pool.cache::<SharedPages>();
    let slot = pages.slot(PageKey { room_id: room_id.to_owned(), from, after });
    // A read too large to keep is still this sync's answer: it is not read a second time.
    let mut not_kept = None;
    let not_kept_here = &mut not_kept;
    let page = slot
        .get_or_try_init(|| async move {
            let events = read(limit).await?;
            if events.len() > MAX_SHARED_PAGE {
                *not_kept_here = Some(events);
                return Ok::<_, crate::error::Error>(Arc::new(Page::NotKept));
            }
            pages.bytes.fetch_add(events.iter().map(|event| event.json.len()).sum(), Ordering::Relaxed);
            let whole = events.len() < limit;
            Ok(Arc::new(Page::Kept { events, whole }))
        })
        .await?;
    if let Some(events) = not_kept {
        return Ok(events);
    }
    match page.newest(limit) {
        Some(events) => Ok(events),
        // The first read asked fewer events than this sync does, and the window holds more.
        None => Ok(read(limit).await?),
    }
}
