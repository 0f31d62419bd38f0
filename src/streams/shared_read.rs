//! One read of the stream's bounds for every reader that asks at once. When a message wakes a
//! thousand long-polls, each asks where the stream stands; the answer is the same for all of
//! them, so one pair of queries serves the whole burst instead of a thousand.
//!
//! A reader may only be given a read that *began after it asked*: it registered for wake-ups
//! before asking, and a read from before that could miss a change whose wake-up it then also
//! missed. So each caller takes a ticket on arrival, and a read made while tickets up to `n`
//! had been taken serves exactly those tickets.
//!
//! Or a read from before that no change was announced since: every change of the stream
//! moves the notifier's generation when it is announced (in this process at once, from
//! another through its notification), so a read begun under the generation the caller sees
//! when it asks holds every change whose wake-up the caller could have missed. A change
//! announced later wakes the caller. The members a message woke come back for their next
//! long-poll one by one; while nothing else happens, they all take the read the first made.

use crate::error::Result;
use std::sync::atomic::{AtomicU64, Ordering};

pub(super) struct SharedRead<T> {
    tickets: AtomicU64,
    /// The newest read; the lock also keeps reads one at a time, so that callers queue behind
    /// the read that will serve them.
    newest: tokio::sync::Mutex<Option<Read<T>>>,
}

#[derive(Clone, Copy)]
struct Read<T> {
    /// The last ticket taken when it began.
    serves_upto: u64,
    /// The generation when it began.
    generation: u64,
    value: T,
}

impl<T: Copy> SharedRead<T> {
    pub(super) fn new() -> SharedRead<T> {
        SharedRead { tickets: AtomicU64::new(0), newest: tokio::sync::Mutex::new(None) }
    }

    /// The result of a `read` begun after this call, or under `generation` (the caller's view
    /// of the announced changes, taken when it asks): a waiting caller's, or a new one.
    /// `current` gives the generation as it is when a read begins.
    pub(super) async fn get<F: Future<Output = Result<T>>>(
        &self,
        generation: u64,
        current: impl Fn() -> u64,
        read: impl FnOnce() -> F,
    ) -> Result<T> {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut newest = self.newest.lock().await;
        if let Some(known) = *newest
            && (known.serves_upto >= ticket || known.generation == generation)
        {
            return Ok(known.value);
        }
        // Every ticket taken by now belongs to a caller that asked before this read begins;
        // every change announced by now is in what it reads.
        let serves_upto = self.tickets.load(Ordering::SeqCst);
        let generation = current();
        let value = read().await?;
        *newest = Some(Read { serves_upto, generation, value });
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicI64;

    #[tokio::test]
    async fn callers_waiting_together_share_one_read_begun_after_they_asked() {
        let shared = Arc::new(SharedRead::<i64>::new());
        let reads = Arc::new(AtomicI64::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        // The first read is held open; the callers that arrive meanwhile must not be served
        // by it (it began before them) but by one read after it.
        let first = {
            let (shared, reads, gate) = (shared.clone(), reads.clone(), gate.clone());
            tokio::spawn(async move {
                shared
                    .get(
                        0,
                        || 1,
                        || async move {
                            gate.notified().await;
                            Ok(reads.fetch_add(1, Ordering::SeqCst) + 1)
                        },
                    )
                    .await
            })
        };
        tokio::task::yield_now().await;
        while reads.load(Ordering::SeqCst) == 0 && shared.newest.try_lock().is_ok() {
            tokio::task::yield_now().await;
        }
        let later: Vec<_> = (0..10)
            .map(|_| {
                let (shared, reads) = (shared.clone(), reads.clone());
                tokio::spawn(async move {
                    shared.get(0, || 1, || async move { Ok(reads.fetch_add(1, Ordering::SeqCst) + 1) }).await
                })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        assert_eq!(first.await.expect("joins").expect("reads"), 1);
        for caller in later {
            assert_eq!(caller.await.expect("joins").expect("reads"), 2, "served by the one read after the first");
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_read_serves_later_callers_until_a_change_is_announced() {
        let shared = SharedRead::<i64>::new();
        let generation = AtomicU64::new(5);
        let reads = AtomicI64::new(0);
        let read = || async { Ok(reads.fetch_add(1, Ordering::SeqCst) + 1) };
        let now = || generation.load(Ordering::SeqCst);
        assert_eq!(shared.get(now(), now, read).await.expect("reads"), 1);
        assert_eq!(shared.get(now(), now, read).await.expect("reads"), 1, "nothing announced since");
        assert_eq!(shared.get(now(), now, read).await.expect("reads"), 1);
        generation.fetch_add(1, Ordering::SeqCst);
        assert_eq!(shared.get(now(), now, read).await.expect("reads"), 2, "a change was announced");
        assert_eq!(shared.get(now(), now, read).await.expect("reads"), 2);
        // A caller that saw an older generation than the read's is served by a new read.
        assert_eq!(shared.get(now() - 1, now, read).await.expect("reads"), 3);
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }
}
