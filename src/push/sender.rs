//! Delivery of notifications to HTTP pushers: a durable queue with one cursor per pusher.
//!
//! The queue is the notifications table itself (one row per user and notifying event, written
//! in the event's own transaction, at the event's stream position). Each pusher remembers
//! the position of the last notification it handled (`pushers.delivered_upto`), moved only
//! after the gateway answered 2xx. So a restart resumes exactly where delivery stood: nothing
//! is lost, and nothing the gateway took is sent again (short of a crash between the
//! gateway's answer and the cursor's commit, which resends that one notification).
//!
//! Only positions up to the stream's readable bound are read: below it everything has
//! committed, so a notification committed out of order (a slower writer's lower position)
//! can never be passed over by a cursor that already moved beyond it.
//!
//! The worker sleeps until the stream notifier announces a change of the readable position
//! (local commits, and other processes' through `LISTEN/NOTIFY`), then looks for pushers with
//! new notifications in the newly readable range — no polling. Each pusher is delivered to by
//! one task at a time, in order, with capped exponential backoff while its gateway fails.
//! Across processes, a session advisory lock per pusher (on the worker's own connection, so a
//! dead process's locks vanish with it) keeps two processes from delivering to one pusher.

use super::delivery::{Deliveries, Outcome};
use crate::db;
use crate::error::Result;
use crate::net::OutboundClient;
use crate::streams::Streams;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{Id as TaskId, JoinSet};

/// After a database error, the worker looks again this much later.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);
/// How long a stopping worker waits for deliveries in flight (each HTTP request is bounded by
/// the outbound client's 30 s timeout).
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// The process's push delivery worker.
#[derive(Default)]
pub struct PushSender {
    running: std::sync::Mutex<Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>>,
}

impl PushSender {
    /// Starts delivering; the worker ends when the process's streams are dropped (it holds
    /// only a weak reference, so dropping the server state — a test server, say — ends it) or
    /// [`PushSender::stop`] is called.
    pub fn start(&self, pool: PgPool, streams: Weak<Streams>, client: OutboundClient) {
        let (stop, stopped) = watch::channel(false);
        let worker = tokio::spawn(run(pool, streams, client, stopped));
        *self.running() = Some((stop, worker));
    }

    /// Stops the worker after the deliveries in flight have finished and recorded their
    /// progress. Call before closing the pool: a delivery whose cursor cannot be written
    /// would be sent again by the next process.
    pub async fn stop(&self) {
        let Some((stop, worker)) = self.running().take() else { return };
        let _ = stop.send(true);
        if tokio::time::timeout(STOP_TIMEOUT, worker).await.is_err() {
            tracing::warn!("push deliveries were still running at shutdown");
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>> {
        self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn run(pool: PgPool, streams: Weak<Streams>, client: OutboundClient, stop: watch::Receiver<bool>) {
    let Some(mut changes) = streams.upgrade().map(|streams| streams.notifier.position_changes()) else { return };
    let deliveries = Arc::new(Deliveries::new(pool.clone(), client, stop.clone()));
    let mut worker = Worker {
        pool,
        deliveries: deliveries.clone(),
        scanned: None,
        running: HashMap::new(),
        tasks: HashMap::new(),
        retry: HashSet::new(),
        joins: JoinSet::new(),
    };
    worker.run(&streams, &mut changes, stop).await;
    // Deliveries in flight finish and record their progress before the worker ends.
    while worker.joins.join_next().await.is_some() {}
    deliveries.close().await;
}

struct Worker {
    pool: PgPool,
    deliveries: Arc<Deliveries>,
    /// The readable position up to which new notifications have been looked for; `None`
    /// before the first look, which takes every pusher with anything pending.
    scanned: Option<i64>,
    /// Pushers being delivered to, with the bound of a further run if more arrived meanwhile.
    running: HashMap<i64, Option<i64>>,
    /// Which pusher each delivery task serves.
    tasks: HashMap<TaskId, i64>,
    /// Pushers to try again on the next look (held by another process, or failed).
    retry: HashSet<i64>,
    joins: JoinSet<Outcome>,
}

impl Worker {
    async fn run(
        &mut self,
        streams: &Weak<Streams>,
        changes: &mut watch::Receiver<u64>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut look = true;
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            if look {
                look = false;
                // Seen before the bound is read: a commit after this wakes the next round.
                changes.borrow_and_update();
                let Some(streams) = streams.upgrade() else { return };
                let readable = streams.current_position(&self.pool).await;
                drop(streams);
                match self.look(readable).await {
                    Ok(()) => retry_at = None,
                    Err(error) => {
                        tracing::warn!(%error, "push sender: looking for notifications");
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

    /// Starts deliveries for the pushers with notifications up to `readable` they have not
    /// handled.
    async fn look(&mut self, readable: Result<i64>) -> Result<()> {
        let readable = readable?;
        let pool = &self.pool;
        let found = match self.scanned {
            None => db::push_delivery::pushers_with_pending(pool, readable).await?,
            Some(scanned) if scanned >= readable => Vec::new(),
            Some(scanned) => db::push_delivery::pushers_notified_between(pool, scanned, readable).await?,
        };
        self.scanned = Some(readable);
        let retry: Vec<i64> = self.retry.drain().collect();
        for pusher_id in found.into_iter().chain(retry) {
            self.deliver(pusher_id, readable);
        }
        Ok(())
    }

    fn deliver(&mut self, pusher_id: i64, upto: i64) {
        if let Some(again) = self.running.get_mut(&pusher_id) {
            *again = Some(again.map_or(upto, |bound| bound.max(upto)));
            return;
        }
        self.running.insert(pusher_id, None);
        let deliveries = self.deliveries.clone();
        let task = self.joins.spawn(async move { deliveries.run(pusher_id, upto).await });
        self.tasks.insert(task.id(), pusher_id);
    }

    fn finished(
        &mut self,
        joined: std::result::Result<(TaskId, Outcome), tokio::task::JoinError>,
        retry_at: &mut Option<tokio::time::Instant>,
    ) {
        let (task, outcome) = match joined {
            Ok((task, outcome)) => (task, outcome),
            Err(error) => {
                tracing::error!(%error, "push sender: a delivery task failed");
                (error.id(), Outcome::Failed)
            }
        };
        let Some(pusher_id) = self.tasks.remove(&task) else { return };
        let again = self.running.remove(&pusher_id).flatten();
        match outcome {
            Outcome::CaughtUp => {
                if let Some(upto) = again {
                    self.deliver(pusher_id, upto);
                }
            }
            Outcome::HeldElsewhere => {
                self.retry.insert(pusher_id);
            }
            Outcome::Failed => {
                self.retry.insert(pusher_id);
                retry_at.get_or_insert_with(|| tokio::time::Instant::now() + RETRY_AFTER_ERROR);
            }
            Outcome::Gone | Outcome::Stopped => {}
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
