//! The window news of syncs that ask at once, read in one statement. A message to a room where
//! a thousand members long-poll wakes a thousand syncs, and each used to ask the database its
//! own news query: a thousand statements, each a round trip and a plan, on a machine that
//! also has to build a thousand responses.
//!
//! Batching is by arrival, as a database groups commits: a sync's question joins the queue;
//! when no statement is running one starts with everything queued, and those that arrive while
//! it runs go together in the next. A lone sync waits for nothing (its statement starts at
//! once); a burst costs a few statements whatever its size. Each answer is what the sync's own
//! query would have read (every question carries its own window), so batching changes no
//! response. A batch that fails sends its syncs back to ask alone, so that one sync's trouble
//! is not every sync's.

use crate::db;
use crate::db::sync::{NewsQuery, WindowNews};
use crate::error::{Error, Result};
use crate::store::Store;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Questions asked in one statement at most (a bigger burst goes in several).
const MAX_BATCH: usize = 4096;

/// A question waiting for its batch, and where its answer goes (the question comes back when
/// its batch failed).
struct Queued {
    query: NewsQuery,
    answer: oneshot::Sender<std::result::Result<WindowNews, NewsQuery>>,
}

/// The questions of a store's syncs not yet asked, and whether a batch is running.
#[derive(Default)]
pub(super) struct NewsBatches {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queued: Vec<Queued>,
    running: bool,
}

impl NewsBatches {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next batch to ask, or `None` (and no batch running any more) when none is queued.
    fn next_batch(&self) -> Option<Vec<Queued>> {
        let mut state = self.state();
        if state.queued.is_empty() {
            state.running = false;
            return None;
        }
        let take = state.queued.len().min(MAX_BATCH);
        Some(state.queued.drain(..take).collect())
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
        !std::mem::replace(&mut state.running, true)
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
            self.0.state().running = false;
        }
    }
}
