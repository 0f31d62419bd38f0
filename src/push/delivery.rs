//! Delivering one pusher's notifications, in order, from its cursor: the gateway request for
//! each, the cursor moved after each 2xx, capped exponential backoff while the gateway fails,
//! and the pusher removed when the gateway rejects its pushkey.

use crate::db;
use crate::error::Result;
use crate::net::OutboundClient;
use crate::push::gateway::{self, Answer, PushedEvent, Target};
use crate::time::now_ms;
use ruma::push::Action;
use sqlx::{Connection, PgConnection, PgPool};
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore, watch};

/// Backoff while a gateway fails: doubling from the first, up to the cap (Synapse's values).
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);
/// A notification that could not be delivered for this long is skipped: a day-old push is
/// noise, and a gateway that comes back must not be flooded with them (as Synapse does).
const GIVE_UP_AFTER_MS: i64 = 24 * 60 * 60 * 1000;
/// Attempts (database reads, the gateway request, the cursor write) in flight at once, so a
/// backlog — every pusher after a long outage — neither floods the pool nor the gateways.
const CONCURRENT_ATTEMPTS: usize = 16;
/// Two-key advisory lock class for pusher delivery locks ("HPSH").
const PUSHER_LOCK_CLASS: i32 = 0x4850_5348;

/// How one pusher's delivery run ended.
pub(super) enum Outcome {
    /// Everything up to the bound is handled.
    CaughtUp,
    /// Another process is delivering to the pusher; try again later (it may die).
    HeldElsewhere,
    /// The pusher is gone (deleted, or its pushkey rejected).
    Gone,
    /// The worker is stopping.
    Stopped,
    /// A database error; try again later.
    Failed,
}

/// What every delivery shares.
pub(super) struct Deliveries {
    pool: PgPool,
    client: OutboundClient,
    locks: PusherLocks,
    attempts: Semaphore,
    stop: watch::Receiver<bool>,
}

impl Deliveries {
    pub(super) fn new(pool: PgPool, client: OutboundClient, stop: watch::Receiver<bool>) -> Deliveries {
        let locks = PusherLocks { pool: pool.clone(), connection: Mutex::new(None) };
        Deliveries { pool, client, locks, attempts: Semaphore::new(CONCURRENT_ATTEMPTS), stop }
    }

    pub(super) async fn close(&self) {
        self.locks.close().await;
    }

    /// Delivers the pusher's notifications up to `upto`, holding its lock meanwhile.
    pub(super) async fn run(&self, pusher_id: i64, upto: i64) -> Outcome {
        match self.locks.try_lock(pusher_id).await {
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
        self.locks.unlock(pusher_id).await;
        outcome
    }

    async fn deliver_locked(&self, pusher_id: i64, upto: i64) -> Result<Outcome> {
        let mut stop = self.stop.clone();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let attempt = self.attempts.acquire().await.map_err(|_| crate::Error::internal("semaphore closed"))?;
            if *stop.borrow() {
                return Ok(Outcome::Stopped);
            }
            // Read afresh each time: the pusher may have been deleted or changed meanwhile.
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
                    if rejected.contains(&pusher.pushkey) {
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
                    drop(attempt);
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

/// Session advisory locks, one per pusher being delivered to, on a connection of their own:
/// they die with the process (its connection), so a crashed process never blocks a pusher.
struct PusherLocks {
    pool: PgPool,
    connection: Mutex<Option<PgConnection>>,
}

impl PusherLocks {
    async fn try_lock(&self, pusher_id: i64) -> Result<bool> {
        let mut connection = self.connection.lock().await;
        if connection.is_none() {
            *connection = Some(PgConnection::connect_with(&self.pool.connect_options()).await?);
        }
        let Some(open) = connection.as_mut() else { return Ok(false) };
        match db::push_delivery::try_lock(open, PUSHER_LOCK_CLASS, lock_key(pusher_id)).await {
            Ok(locked) => Ok(locked),
            Err(error) => {
                // A broken connection took its locks with it; the next lock opens a new one.
                *connection = None;
                Err(error.into())
            }
        }
    }

    async fn unlock(&self, pusher_id: i64) {
        let mut connection = self.connection.lock().await;
        let Some(open) = connection.as_mut() else { return };
        if let Err(error) = db::push_delivery::unlock(open, PUSHER_LOCK_CLASS, lock_key(pusher_id)).await {
            tracing::warn!(%error, pusher_id, "push sender: unlocking a pusher");
            *connection = None;
        }
    }

    async fn close(&self) {
        if let Some(connection) = self.connection.lock().await.take() {
            let _ = connection.close().await;
        }
    }
}

/// The second key of a pusher's advisory lock. Ids beyond 32 bits share keys, which only
/// ever makes two pushers wait for each other.
fn lock_key(pusher_id: i64) -> i32 {
    (pusher_id & 0xffff_ffff) as u32 as i32
}

/// Sleeps; true if told to stop meanwhile.
pub(super) async fn sleep_or_stop(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = stop.wait_for(|stop| *stop) => true,
    };
    stopped || *stop.borrow()
}
