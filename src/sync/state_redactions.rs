//! The redactions of a sync's state events, read once for every sync of the same window end.
//!
//! A lazy-loading sync sends the member events of a timeline's senders that the device has not
//! seen: a message from a new speaker in a room where a thousand members wait sends the
//! speaker's member event to each of them, and each would ask the database whether a
//! redaction applies to it — a thousand identical questions in the same instant. (Member
//! events come from the room facts, which keep only what never changes; whether an event is
//! redacted can change, so it is not kept there.)
//!
//! Here a question is keyed by the window's end and the events it asks about, and asked once.
//! Sharing an answer is what sharing a window's timeline page does (`shared_pages`): the read
//! begins after everything up to the window's end committed, so it holds every redaction a
//! sync of that window may show; a redaction committed after the window's end may be in it or
//! not, and reaches the client in a later window either way.

use crate::db;
use crate::db::relations::Related;
use crate::db::state::StateEntry;
use crate::error::{Error, Result};
use crate::rooms::served::{self, Served};
use crate::store::Store;
use quick_cache::sync::Cache;
use ruma::room_version_rules::RedactionRules;
use std::sync::Arc;

/// Answers kept: a burst asks a handful of distinct questions per window, and a window's
/// questions stop coming once its syncs are answered.
const KEPT_ANSWERS: usize = 1024;

/// Which redactions: of these events (ascending), as of this window's end.
type Question = (i64, Vec<i64>);

/// The answers a store's syncs share.
pub(super) struct SharedRedactions(Cache<Question, Arc<Vec<Related>>>);

impl Default for SharedRedactions {
    fn default() -> Self {
        SharedRedactions(Cache::new(KEPT_ANSWERS))
    }
}

/// `entries` as served to a sync whose window ends at `upto` (readable): redacted where a
/// redaction applies.
pub(super) async fn served_state(
    pool: &Store,
    rules: &RedactionRules,
    entries: &[StateEntry],
    upto: i64,
) -> Result<Vec<Served>> {
    let served::ParsedState { events, mut candidates } = served::parse_state(pool, entries)?;
    if candidates.is_empty() {
        return served::apply_found(rules, events, &[]);
    }
    candidates.sort_unstable();
    let question = (upto, candidates);
    let read = async { Ok::<_, Error>(Arc::new(db::relations::redactions_of(pool, &question.1).await?)) };
    let found = pool.cache::<SharedRedactions>().0.get_or_insert_async(&question, read).await?;
    served::apply_found(rules, events, &found)
}
