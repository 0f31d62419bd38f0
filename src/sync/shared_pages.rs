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
/// Pages larger than this are a client's catch-up after a long absence, not a burst's page:
/// they are read without keeping them.
const MAX_SHARED_PAGE: i64 = 101;

/// Which page: the room's newest `limit` events with `after < position <= from`, unfiltered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PageKey {
    room_id: String,
    from: i64,
    after: i64,
    limit: i64,
}

type Slot = Arc<OnceCell<Arc<Vec<StoredEvent>>>>;

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
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    // An initial sync (or a newly joined room) reads from the room's start: such pages are
    // one user's, and would only crowd out the bursts' pages.
    if after <= 0 || limit > MAX_SHARED_PAGE {
        return Ok(db::events::timeline_page(pool, room_id, from, true, Some(after), limit).await?);
    }
    let pages = pool.cache::<SharedPages>();
    let key = PageKey { room_id: room_id.to_owned(), from, after, limit };
    let slot = pages.slot(key);
    let page = slot
        .get_or_try_init(|| async {
            let page = db::events::timeline_page(pool, room_id, from, true, Some(after), limit).await?;
            pages.bytes.fetch_add(page.iter().map(|event| event.json.len()).sum(), Ordering::Relaxed);
            Ok::<_, crate::error::Error>(Arc::new(page))
        })
        .await?;
    Ok(Vec::clone(page))
}
