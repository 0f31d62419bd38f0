//! Facts derived from rows that never change once written — a room's version, what a state
//! snapshot holds — kept in process so that hot paths (every `/sync`, every send) stop asking
//! the database for them again.
//!
//! Only immutable facts belong in a [`FactCache`]: then several Hearth processes on one
//! database each keep their own cache and can never disagree, and nothing needs invalidating.
//! Each cache lives in the [`Store`](crate::store::Store) of the database it came from.

use quick_cache::sync::Cache;
use std::hash::Hash;

/// A bounded map of immutable facts of one kind.
pub(crate) struct FactCache<K, V> {
    entries: Cache<K, V>,
}

impl<K: Eq + Hash + Clone, V: Clone> FactCache<K, V> {
    /// Keeps about `capacity` entries, evicting the least useful beyond that.
    pub(crate) fn new(capacity: usize) -> FactCache<K, V> {
        FactCache { entries: Cache::new(capacity) }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.entries.get(key)
    }

    pub(crate) fn insert(&self, key: K, value: V) {
        self.entries.insert(key, value);
    }
}
