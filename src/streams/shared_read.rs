//! One read of the stream's bounds for every reader that asks at once. When a message wakes a
//! thousand long-polls, each asks where the stream stands; the answer is the same for all of
//! them, so one pair of queries serves the whole burst instead of a thousand.
//!
//! A reader may only be given a read that *began after it asked*: it registered for wake-ups
//! before asking, and a read from before that could miss a change whose wake-up it then also
//! missed. So each caller takes a ticket on arrival, and a read made while tickets up to `n`
//! had been taken serves exactly those tickets.

use crate::error::Result;
use std::sync::atomic::{AtomicU64, Ordering};

pub(super) struct SharedRead<T> {
    tickets: AtomicU64,
    /// The newest read and the last ticket it may serve; the lock also keeps reads one at a
    /// time, so that callers queue behind the read that will serve them.
    newest: tokio::sync::Mutex<Option<(u64, T)>>,
}

impl<T: Copy> SharedRead<T> {
    pub(super) fn new() -> SharedRead<T> {
        SharedRead { tickets: AtomicU64::new(0), newest: tokio::sync::Mutex::new(None) }
    }

    /// The result of a `read` begun after this call: a waiting caller's, or a new one.
    pub(super) async fn get<F: Future<Output = Result<T>>>(&self, read: impl FnOnce() -> F) -> Result<T> {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut newest = self.newest.lock().await;
        if let Some((serves_upto, value)) = *newest
            && serves_upto >= ticket
        {
            return Ok(value);
        }
        // Every ticket taken by now belongs to a caller that asked before this read begins.
        let serves_upto = self.tickets.load(Ordering::SeqCst);
        let value = read().await?;
        *newest = Some((serves_upto, value));
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
                    .get(|| async move {
                        gate.notified().await;
                        Ok(reads.fetch_add(1, Ordering::SeqCst) + 1)
                    })
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
                tokio::spawn(
                    async move { shared.get(|| async move { Ok(reads.fetch_add(1, Ordering::SeqCst) + 1) }).await },
                )
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
}
