//! The worker loop every outbox shares (see the module docs of `outbox`).

use super::{Outbox, Outcome};
use crate::error::Result;
use crate::streams::Streams;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{Id as TaskId, JoinHandle, JoinSet};

/// After a database error, the worker looks again this much later.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);
/// How long a stopping worker waits for deliveries in flight (each HTTP request is bounded by
/// its client's timeout).
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// A running outbox worker, or none yet.
#[derive(Default)]
pub(crate) struct OutboxWorker {
    running: std::sync::Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>,
}

impl OutboxWorker {
    /// Starts delivering what `outbox` (given the stop signal its deliveries must heed) holds;
    /// the worker ends when the process's streams are dropped (it holds only a weak reference,
    /// so dropping the server state — a test server, say — ends it) or [`OutboxWorker::stop`]
    /// is called.
    pub(crate) fn start<O: Outbox>(
        &self,
        pool: PgPool,
        streams: Weak<Streams>,
        outbox: impl FnOnce(watch::Receiver<bool>) -> O,
    ) {
        let (stop, stopped) = watch::channel(false);
        let outbox = Arc::new(outbox(stopped.clone()));
        let worker = tokio::spawn(run(pool, streams, outbox, stopped));
        *self.running() = Some((stop, worker));
    }

    /// Stops the worker after the deliveries in flight have finished and recorded their
    /// progress. Call before closing the pool: progress that cannot be written would be
    /// delivered again by the next process.
    pub(crate) async fn stop(&self) {
        let Some((stop, worker)) = self.running().take() else { return };
        let _ = stop.send(true);
        if tokio::time::timeout(STOP_TIMEOUT, worker).await.is_err() {
            tracing::warn!("outbox deliveries were still running at shutdown");
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Option<(watch::Sender<bool>, JoinHandle<()>)>> {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn run<O: Outbox>(pool: PgPool, streams: Weak<Streams>, outbox: Arc<O>, stop: watch::Receiver<bool>) {
    let Some(mut changes) = streams.upgrade().map(|streams| Changes {
        work: streams.notifier.outbox_changes(O::KIND),
        position: streams.notifier.position_changes(),
        behind: true,
    }) else {
        return;
    };
    let mut worker = Worker {
        pool,
        outbox: outbox.clone(),
        scanned: None,
        running: HashMap::new(),
        tasks: HashMap::new(),
        retry: HashSet::new(),
        joins: JoinSet::new(),
    };
    worker.run(&streams, &mut changes, stop).await;
    // Deliveries in flight finish and record their progress before the worker ends.
    while worker.joins.join_next().await.is_some() {}
    outbox.close().await;
}

struct Worker<O: Outbox> {
    pool: PgPool,
    outbox: Arc<O>,
    /// The readable position up to which new work has been looked for; `None` before the
    /// first look, which takes every queue with anything pending.
    scanned: Option<i64>,
    /// Queues being delivered, with the bound of a further run if more arrived meanwhile.
    running: HashMap<O::Queue, Option<i64>>,
    /// Which queue each delivery task serves.
    tasks: HashMap<TaskId, O::Queue>,
    /// Queues to try again on the next look (held by another process, or failed).
    retry: HashSet<O::Queue>,
    joins: JoinSet<Outcome>,
}

impl<O: Outbox> Worker<O> {
    async fn run(&mut self, streams: &Weak<Streams>, changes: &mut Changes, mut stop: watch::Receiver<bool>) {
        let mut look = true;
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            if look {
                look = false;
                // Seen before the bound is read: a commit after this wakes the next round.
                changes.work.borrow_and_update();
                changes.position.borrow_and_update();
                let Some(streams) = streams.upgrade() else { return };
                let bounds = streams.position_bounds(&self.pool).await;
                drop(streams);
                // Work announced before this read has a position allocated before it; until
                // everything allocated is readable, any change may be the one that makes it so.
                changes.behind = bounds.as_ref().is_ok_and(|bounds| bounds.readable < bounds.allocated);
                match self.look(bounds.map(|bounds| bounds.readable)).await {
                    Ok(()) => retry_at = None,
                    Err(error) => {
                        tracing::warn!(%error, outbox = O::NAME, "looking for work");
                        retry_at = Some(tokio::time::Instant::now() + RETRY_AFTER_ERROR);
                    }
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                changed = changes.changed() => match changed {
                    Ok(()) => look = true,
                    Err(_) => return, // the process's notifier is gone
                },
                Some(joined) = self.joins.join_next_with_id() => self.finished(joined, &mut retry_at),
                _ = sleep_until(retry_at) => look = true,
            }
        }
    }

    /// Starts deliveries for the queues with work up to `readable` not handled yet.
    async fn look(&mut self, readable: Result<i64>) -> Result<()> {
        let readable = readable?;
        let found = match self.scanned {
            Some(scanned) if scanned >= readable => Vec::new(),
            scanned => self.outbox.queues_with_work(scanned, readable).await?,
        };
        self.scanned = Some(readable);
        let retry: Vec<O::Queue> = self.retry.drain().collect();
        for queue in found.into_iter().chain(retry) {
            self.deliver(queue, readable);
        }
        Ok(())
    }

    fn deliver(&mut self, queue: O::Queue, upto: i64) {
        if let Some(again) = self.running.get_mut(&queue) {
            *again = Some(again.map_or(upto, |bound| bound.max(upto)));
            return;
        }
        self.running.insert(queue.clone(), None);
        let outbox = self.outbox.clone();
        let delivered = queue.clone();
        let task = self.joins.spawn(async move { outbox.deliver(delivered, upto).await });
        self.tasks.insert(task.id(), queue);
    }

    fn finished(
        &mut self,
        joined: std::result::Result<(TaskId, Outcome), tokio::task::JoinError>,
        retry_at: &mut Option<tokio::time::Instant>,
    ) {
        let (task, outcome) = match joined {
            Ok((task, outcome)) => (task, outcome),
            Err(error) => {
                tracing::error!(%error, outbox = O::NAME, "a delivery task failed");
                (error.id(), Outcome::Failed)
            }
        };
        let Some(queue) = self.tasks.remove(&task) else { return };
        let again = self.running.remove(&queue).flatten();
        match outcome {
            Outcome::CaughtUp => {
                if let Some(upto) = again {
                    self.deliver(queue, upto);
                }
            }
            Outcome::HeldElsewhere => {
                self.retry.insert(queue);
            }
            Outcome::Failed => {
                self.retry.insert(queue);
                retry_at.get_or_insert_with(|| tokio::time::Instant::now() + RETRY_AFTER_ERROR);
            }
            Outcome::Gone | Outcome::Stopped => {}
        }
    }
}

/// What wakes a worker: changes that may have given its outbox work, and, while it is
/// `behind` (positions allocated at its last look were not all readable), every change of the
/// readable position.
struct Changes {
    work: watch::Receiver<u64>,
    position: watch::Receiver<u64>,
    behind: bool,
}

impl Changes {
    async fn changed(&mut self) -> std::result::Result<(), watch::error::RecvError> {
        if self.behind {
            tokio::select! {
                changed = self.work.changed() => changed,
                changed = self.position.changed() => changed,
            }
        } else {
            self.work.changed().await
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
