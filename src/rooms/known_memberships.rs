//! Each syncing user's memberships as this process last read them, so that a woken
//! incremental `/sync` need not read them again. Every look at a user's memberships used to
//! be a statement of its own, run by every member a message wakes; now the window's news
//! (one statement the sync runs anyway) says whether they moved since they were read.
//!
//! An entry is valid *through* a stream position: it was read after everything up to that
//! position had committed, so a membership change it lacks has a higher position, and
//! `room_memberships.stream_position` moves with every membership change. The news checks
//! for a row above it; a sync that finds one drops the entry and looks again. That holds
//! across processes with no notification, since the check is a read of the database.
//! Forgetting a room moves no position: it drops this process's entry (another process's
//! entry may list the forgotten room until the user's next membership change, which only
//! shows a leave the client was already sent).

use crate::db::sync::MembershipRow;
use ruma::UserId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Users kept at most; past this the cache starts over (a dropped entry costs one read).
const MAX_USERS: usize = 100_000;

/// A user's memberships and the position they are valid through.
#[derive(Clone)]
pub(crate) struct KnownMemberships {
    pub rows: Arc<Vec<MembershipRow>>,
    pub valid_through: i64,
}

/// The memberships of each user a store's syncs read.
#[derive(Default)]
pub(crate) struct MembershipCache(Mutex<HashMap<String, KnownMemberships>>);

impl MembershipCache {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, KnownMemberships>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn get(&self, user: &UserId) -> Option<KnownMemberships> {
        self.entries().get(user.as_str()).cloned()
    }

    /// Keeps `rows`, read after everything up to `valid_through` had committed.
    pub(crate) fn put(&self, user: &UserId, rows: Arc<Vec<MembershipRow>>, valid_through: i64) {
        let mut entries = self.entries();
        if entries.len() >= MAX_USERS && !entries.contains_key(user.as_str()) {
            entries.clear();
        }
        entries.insert(user.to_string(), KnownMemberships { rows, valid_through });
    }

    /// The window news found the user's memberships unmoved since `checked_through` in a look
    /// at a window ending at `upto` (readable, so every change at or below it was visible to
    /// that check): an entry valid through `checked_through` or later is valid through `upto`.
    /// A long-poll's next look, at the empty window from `upto`, then needs no check at all.
    pub(crate) fn confirm(&self, user: &UserId, checked_through: i64, upto: i64) {
        if let Some(entry) = self.entries().get_mut(user.as_str())
            && entry.valid_through >= checked_through
        {
            entry.valid_through = entry.valid_through.max(upto);
        }
    }

    /// Drops the user's entry: their memberships moved.
    pub(crate) fn forget(&self, user: &UserId) {
        self.entries().remove(user.as_str());
    }
}
