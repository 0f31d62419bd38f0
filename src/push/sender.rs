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

use crate::db;
use crate::error::Result;
use crate::net::OutboundClient;
use crate::push::gateway::{self, Answer, PushedEvent, Target};
use crate::streams::Streams;
use crate::time::now_ms;
use ruma::push::Action;
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Backoff while a gateway fails: doubling from the first, up to the cap (Synapse's values).
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);
/// A notification that could not be delivered for this long is skipped: a day-old push is
/// noise, and a gateway that comes back must not be flooded with them.
const GIVE_UP_AFTER_MS: i64 = 24 * 60 * 60 * 1000;
/// After a database error, the worker looks again this much later.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);
/// How long a stopping worker waits for deliveries in flight (each HTTP request is bounded by
/// the outbound client's 30 s timeout).
const STOP_TIMEOUT: Duration = Duration::from_secs(40);
/// Two-key advisory lock class for pusher delivery locks ("HPSH").
const PUSHER_LOCK_CLASS: i32 = 0x4850_5348;

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

/// How one pusher's delivery run ended.
enum Outcome {
    /// Everything up to the bound is handled.
    CaughtUp,
    /// Another process holds the pusher; try again on a later wake-up (it may die).
    HeldElsewhere,
    /// The pusher is gone (deleted, or its pushkey rejected).
    Gone,
    /// The worker is stopping.
    Stopped,
    /// A database error; try again later.
    Failed,
}

async fn run(pool: PgPool, streams: Weak<Streams>, client: OutboundClient, stop: watch::Receiver<bool>) {
    let Some(mut changes) = streams.upgrade().map(|streams| streams.notifier.position_changes()) else { return };
    let locks = loop {
        match PgConnection::connect_with(&pool.connect_options()).await {
            Ok(connection) => break Arc::new(tokio::sync::Mutex::new(connection)),
            Err(error) => {
                tracing::warn!(%error, "push sender: connecting for delivery locks");
                if sleep_or_stop(RETRY_AFTER_ERROR, &mut stop.clone()).await {
                    return;
                }
            }
        }
    };
    let context = Arc::new(Delivery { pool, client, locks: locks.clone(), stop: stop.clone() });
    let mut worker =
        Worker { context, scanned: None, running: HashMap::new(), retry: HashSet::new(), tasks: JoinSet::new() };
    worker.run(&streams, &mut changes, stop).await;
    // Deliveries in flight finish and record their progress before the worker ends.
    while worker.tasks.join_next().await.is_some() {}
    let connection = Arc::try_unwrap(locks).map(tokio::sync::Mutex::into_inner);
    if let Ok(connection) = connection {
        let _ = connection.close().await;
    }
}

struct Worker {
    context: Arc<Delivery>,
    /// The readable position up to which new notifications have been looked for; `None`
    /// before the first look, which takes every pusher with anything pending.
    scanned: Option<i64>,
    /// Pushers being delivered to, with the bound of a further run if more arrived meanwhile.
    running: HashMap<i64, Option<i64>>,
    /// Pushers to try again on the next look (held by another process, or failed).
    retry: HashSet<i64>,
    tasks: JoinSet<(i64, Outcome)>,
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
                let readable = streams.current_position(&self.context.pool).await;
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
                Some(joined) = self.tasks.join_next() => self.finished(joined, &mut retry_at),
                _ = sleep_until(retry_at) => look = true,
            }
        }
    }

    /// Starts deliveries for the pushers with notifications up to `readable` they have not
    /// handled.
    async fn look(&mut self, readable: Result<i64>) -> Result<()> {
        let readable = readable?;
        let pool = &self.context.pool;
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
        let context = self.context.clone();
        self.tasks.spawn(async move { (pusher_id, context.run(pusher_id, upto).await) });
    }

    fn finished(
        &mut self,
        joined: std::result::Result<(i64, Outcome), tokio::task::JoinError>,
        retry_at: &mut Option<tokio::time::Instant>,
    ) {
        let Ok((pusher_id, outcome)) = joined else {
            // A panicking delivery: its pusher is found again by the next look's retry list.
            tracing::error!("push sender: a delivery task failed");
            return;
        };
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

/// What every delivery task shares.
struct Delivery {
    pool: PgPool,
    client: OutboundClient,
    /// The connection holding this process's pusher locks.
    locks: Arc<tokio::sync::Mutex<PgConnection>>,
    stop: watch::Receiver<bool>,
}

impl Delivery {
    /// Delivers the pusher's notifications up to `upto`, holding its lock meanwhile.
    async fn run(&self, pusher_id: i64, upto: i64) -> Outcome {
        let key = lock_key(pusher_id);
        match db::push_delivery::try_lock(&mut *self.locks.lock().await, PUSHER_LOCK_CLASS, key).await {
            Ok(true) => {}
            Ok(false) => return Outcome::HeldElsewhere,
            Err(error) => {
                tracing::warn!(%error, pusher_id, "push sender: locking a pusher");
                return Outcome::Failed;
            }
        }
        let outcome = match self.deliver_locked(pusher_id, upto).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(%error, pusher_id, "push sender: delivering");
                Outcome::Failed
            }
        };
        if let Err(error) = db::push_delivery::unlock(&mut *self.locks.lock().await, PUSHER_LOCK_CLASS, key).await {
            tracing::warn!(%error, pusher_id, "push sender: unlocking a pusher");
        }
        outcome
    }

    async fn deliver_locked(&self, pusher_id: i64, upto: i64) -> Result<Outcome> {
        let mut stop = self.stop.clone();
        let mut backoff = FIRST_BACKOFF;
        loop {
            if *stop.borrow() {
                return Ok(Outcome::Stopped);
            }
            // Read afresh each round: the pusher may have been deleted or changed meanwhile.
            let Some(pusher) = db::pushers::get(&self.pool, pusher_id).await? else { return Ok(Outcome::Gone) };
            let Some(url) = pusher.data.get("url").and_then(|url| url.as_str()) else { return Ok(Outcome::Gone) };
            let next =
                db::push_delivery::next_pending(&self.pool, &pusher.user_id, pusher.delivered_upto, upto).await?;
            let Some(next) = next else { return Ok(Outcome::CaughtUp) };
            let position = next.stream_position;
            let Some((event, actions)) = to_pushed_event(next) else {
                // Nothing a gateway could be sent (an id that does not parse): pass over it.
                db::pushers::advance(&self.pool, pusher_id, position).await?;
                continue;
            };
            let unread = db::push_delivery::unread_count(&self.pool, &pusher.user_id).await?;
            let target = Target {
                user_id: &pusher.user_id,
                app_id: &pusher.app_id,
                pushkey: &pusher.pushkey,
                pushkey_ts: pusher.pushkey_ts,
                data: &pusher.data,
            };
            let request = gateway::notification(&target, &event, u64::try_from(unread).unwrap_or_default(), &actions);
            match gateway::post(&self.client, url, request).await {
                Answer::Accepted { rejected } => {
                    if rejected.iter().any(|pushkey| *pushkey == pusher.pushkey) {
                        tracing::info!(pusher_id, app_id = %pusher.app_id, "the push gateway rejected the pushkey; removing the pusher");
                        db::pushers::delete_by_id(&self.pool, pusher_id).await?;
                        return Ok(Outcome::Gone);
                    }
                    if !db::pushers::advance(&self.pool, pusher_id, position).await? {
                        return Ok(Outcome::Gone);
                    }
                    backoff = FIRST_BACKOFF;
                }
                Answer::Failed(reason) => {
                    let now = now_ms();
                    let Some(since) = db::pushers::mark_failing(&self.pool, pusher_id, now).await? else {
                        return Ok(Outcome::Gone);
                    };
                    if now - since > GIVE_UP_AFTER_MS {
                        tracing::warn!(pusher_id, %reason, event_id = %event.event_id, "giving up on a push after a day of failures");
                        db::pushers::advance(&self.pool, pusher_id, position).await?;
                        continue;
                    }
                    tracing::info!(pusher_id, %reason, retry_in = ?backoff, "push failed");
                    if sleep_or_stop(backoff, &mut stop).await {
                        return Ok(Outcome::Stopped);
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// The event of a stored notification as the gateway is shown it, and the actions the
/// user's rules gave it.
fn to_pushed_event(row: db::push_delivery::Pending) -> Option<(PushedEvent, Vec<Action>)> {
    let content = if row.redacted {
        None
    } else {
        let event: serde_json::Value = serde_json::from_str(&row.json).ok()?;
        event.get("content").and_then(|content| serde_json::value::to_raw_value(content).ok())
    };
    // Unknown or malformed actions are left out: the rules said to notify, which the stored
    // row already tells.
    let actions = match row.actions {
        serde_json::Value::Array(actions) => {
            actions.into_iter().filter_map(|action| serde_json::from_value(action).ok()).collect()
        }
        _ => Vec::new(),
    };
    let event = PushedEvent {
        event_id: row.event_id.try_into().ok()?,
        room_id: row.room_id.try_into().ok()?,
        event_type: row.event_type,
        sender: row.sender.try_into().ok()?,
        state_key: row.state_key,
        content,
        sender_display_name: row.sender_display_name,
        room_name: row.room_name.or(row.room_alias),
    };
    Some((event, actions))
}

/// The second key of a pusher's advisory lock. Ids beyond 32 bits share keys, which only
/// ever makes two pushers wait for each other.
fn lock_key(pusher_id: i64) -> i32 {
    (pusher_id & 0xffff_ffff) as u32 as i32
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sleeps; true if told to stop meanwhile.
async fn sleep_or_stop(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = stop.wait_for(|stop| *stop) => true,
    };
    stopped || *stop.borrow()
}
