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

    /// The fact under `key`, read by `read` when it is missing. Callers missing the same key at
    /// once wait for one read: a message from a new speaker wakes a big room's members, who all
    /// ask for the same member event in the same instant, and would otherwise each read it.
    pub(crate) async fn get_or_read<E>(&self, key: &K, read: impl Future<Output = Result<V, E>>) -> Result<V, E> {
        self.entries.get_or_insert_async(key, read).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_missing_the_same_fact_at_once_share_one_read() {
        let facts = Arc::new(FactCache::<i64, String>::new(100));
        let reads = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let (facts, reads, gate) = (facts.clone(), reads.clone(), gate.clone());
                tokio::spawn(async move {
                    let read = async {
                        reads.fetch_add(1, Ordering::SeqCst);
                        // Held open while the other callers ask.
                        let _open = gate.acquire().await;
                        Ok::<_, ()>("fact".to_owned())
                    };
                    facts.get_or_read(&7, read).await
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        gate.add_permits(1);
        for caller in callers {
            assert_eq!(caller.await.expect("caller"), Ok("fact".to_owned()));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1, "one read for twenty callers");
        assert_eq!(facts.get(&7), Some("fact".to_owned()));
    }
}
