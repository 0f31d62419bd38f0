//! The window news of syncs that ask at once, read in one statement. A message to a room where
//! a thousand members long-poll wakes a thousand syncs, and each used to ask the database its
//! own news query: a thousand statements, each a round trip and a plan, on a machine that
//! also has to build a thousand responses.
//!
//! Batching is by arrival, as a database groups commits: a sync's question joins the queue;
//! when a statement is free, one starts with what is queued, and those that arrive while it
//! runs go together in the next. A lone sync waits for nothing (its statement starts at
//! once); a burst costs a few statements whatever its size. Each answer is what the sync's own
//! query would have read (every question carries its own window), so batching changes no
//! response. A batch that fails sends its syncs back to ask alone, so that one sync's trouble
//! is not every sync's.
//!
//! Up to [`STATEMENTS_AT_ONCE`] statements run side by side, and a long queue is split between
//! them: a burst's questions are then answered in parallel by as many database backends, and
//! the first answered syncs are built while the database still reads the others' news
//! (measured on a 200-member room: one statement of 199 questions took 6.6 ms, during which
//! the process had nothing to build).

use crate::db;
use crate::db::sync::{NewsQuery, WindowNews};
use crate::error::{Error, Result};
use crate::store::Store;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Questions asked in one statement at most (a bigger burst goes in several).
const MAX_BATCH: usize = 4096;
/// Statements running at once at most.
const STATEMENTS_AT_ONCE: usize = 2;
/// A queue longer than this is split: a statement takes a share of it, and leaves the rest to
/// the next free statement. Shorter, it goes whole (a statement has a fixed cost too).
const SPLIT_ABOVE: usize = 32;

/// A question waiting for its batch, and where its answer goes (the question comes back when
/// its batch failed).
struct Queued {
    query: NewsQuery,
    answer: oneshot::Sender<std::result::Result<WindowNews, NewsQuery>>,
}

/// The questions of a store's syncs not yet asked, and how many statements are running.
#[derive(Default)]
pub(super) struct NewsBatches {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queued: Vec<Queued>,
    /// Statements running (each with a task that asks batch after batch).
    running: usize,
}

impl NewsBatches {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next batch to ask, or `None` (and one statement fewer running) when none is queued.
    fn next_batch(&self) -> Option<Vec<Queued>> {
        let mut state = self.state();
        let queued = state.queued.len();
        if queued == 0 {
            state.running = state.running.saturating_sub(1);
            return None;
        }
        // Oldest first; a long queue is shared with the other statement, which takes its
        // share when it is free.
        let take = match queued {
            n if n > SPLIT_ABOVE => n.div_ceil(STATEMENTS_AT_ONCE),
            n => n,
        };
        Some(state.queued.drain(..take.min(MAX_BATCH)).collect())
    }
}

/// The news of one sync's window, read together with those of the syncs asking at the same
/// time.
pub(super) async fn window_news(pool: &Store, query: NewsQuery) -> Result<WindowNews> {
    let batches = pool.cache::<NewsBatches>();
    let (answer, answered) = oneshot::channel();
    let start = {
        let mut state = batches.state();
        state.queued.push(Queued { query, answer });
        let start = state.running < STATEMENTS_AT_ONCE;
        state.running += usize::from(start);
        start
    };
    if start {
        tokio::spawn(run(pool.clone(), batches));
    }
    match answered.await {
        Ok(Ok(news)) => Ok(news),
        // The batch failed: ask alone, and fail alone if it is this question that fails.
        Ok(Err(query)) => {
            Ok(db::sync::window_news(pool, std::slice::from_ref(&query)).await?.pop().unwrap_or_default())
        }
        Err(_) => Err(Error::internal("the window news batch ended without an answer")),
    }
}

/// Asks the queued questions, batch after batch, until none is left.
async fn run(pool: Store, batches: Arc<NewsBatches>) {
    let _running = Running(batches.clone());
    // The syncs one wake-up readies are still being run: let them queue first.
    tokio::task::yield_now().await;
    while let Some(batch) = batches.next_batch() {
        let (queries, answers): (Vec<NewsQuery>, Vec<_>) =
            batch.into_iter().map(|queued| (queued.query, queued.answer)).unzip();
        match db::sync::window_news(&pool, &queries).await {
            Ok(found) => {
                for (answer, news) in answers.into_iter().zip(found) {
                    // A sync that gave up waiting (its client went away) takes no answer.
                    let _ = answer.send(Ok(news));
                }
            }
            Err(error) => {
                tracing::warn!(%error, questions = queries.len(), "window news batch failed; asking one by one");
                for (answer, query) in answers.into_iter().zip(queries) {
                    let _ = answer.send(Err(query));
                }
            }
        }
    }
}

/// Held by the running batch: should it end without emptying the queue (a panic, the runtime
/// stopping), the next question starts a new one instead of waiting for it forever.
struct Running(Arc<NewsBatches>);

impl Drop for Running {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = self.0.state();
            state.running = state.running.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(index: usize) -> Queued {
        let (answer, _) = oneshot::channel();
        let query = NewsQuery {
            user_id: format!("@u{index}:hearth.test"),
            device_id: None,
            rooms: Vec::new(),
            after: 1,
            upto: 2,
            memberships_through: None,
        };
        Queued { query, answer }
    }

    fn batches_with(queued: usize, running: usize) -> NewsBatches {
        let batches = NewsBatches::default();
        {
            let mut state = batches.state();
            state.queued = (0..queued).map(question).collect();
            state.running = running;
        }
        batches
    }

    #[test]
    fn a_burst_is_shared_between_the_statements_oldest_first() {
        let batches = batches_with(199, STATEMENTS_AT_ONCE);
        let sizes: Vec<usize> = std::iter::from_fn(|| batches.next_batch().map(|batch| batch.len())).collect();
        // Half to each free statement while the queue is long, the tail whole.
        assert_eq!(sizes, vec![100, 50, 25, 24]);
        let first = batches_with(40, 1).next_batch().unwrap_or_default();
        assert_eq!(first.first().map(|queued| queued.query.user_id.as_str()), Some("@u0:hearth.test"));
        // The statement that found the queue empty ended.
        assert_eq!(batches.state().running, STATEMENTS_AT_ONCE - 1);
    }

    #[test]
    fn a_short_queue_goes_in_one_statement() {
        let batches = batches_with(SPLIT_ABOVE, 1);
        assert_eq!(batches.next_batch().map(|batch| batch.len()), Some(SPLIT_ABOVE));
        assert!(batches.next_batch().is_none());
        assert_eq!(batches.state().running, 0);
    }
}
