//! Facts derived from rows that never change once written — a room's version, what a state
//! snapshot holds — kept in process so that hot paths (every `/sync`, every send) stop asking
//! the database for them again.
//!
//! Only immutable facts belong here: then several Hearth processes on one database each keep
//! their own cache and can never disagree, and nothing needs invalidating. One process may
//! serve several databases (the tests do), so every key carries the database it came from.

use quick_cache::sync::Cache;
use sqlx::PgPool;
use std::hash::{BuildHasher, Hash};

/// A bounded map of immutable facts of one kind, per database.
pub struct FactCache<K, V> {
    entries: Cache<(u64, K), V>,
}

impl<K: Eq + Hash + Clone, V: Clone> FactCache<K, V> {
    /// Keeps about `capacity` entries, evicting the least useful beyond that.
    pub fn new(capacity: usize) -> FactCache<K, V> {
        FactCache { entries: Cache::new(capacity) }
    }

    pub fn get(&self, pool: &PgPool, key: K) -> Option<V> {
        self.entries.get(&(database_of(pool), key))
    }

    pub fn insert(&self, pool: &PgPool, key: K, value: V) {
        self.entries.insert((database_of(pool), key), value);
    }
}

/// The database a pool connects to (server and database name), as a number: hashing
/// allocates nothing, and two databases colliding in 64 bits is not a case worth a branch.
pub fn database_of(pool: &PgPool) -> u64 {
    let options = pool.connect_options();
    FIXED_STATE.hash_one((
        options.get_host(),
        options.get_port(),
        options.get_socket(),
        options.get_database().unwrap_or_default(),
    ))
}

/// A fixed hasher: the same name gives the same number for the life of the process.
static FIXED_STATE: std::sync::LazyLock<std::collections::hash_map::RandomState> =
    std::sync::LazyLock::new(std::collections::hash_map::RandomState::new);
