//! Delivering one pusher's notifications, in order, from its cursor: the gateway request for
//! each, the cursor moved after each 2xx, capped exponential backoff while the gateway fails,
//! and the pusher removed when the gateway rejects its pushkey.

use crate::db;
use crate::error::Result;
use crate::net::OutboundClient;
use crate::outbox::{Backoff, Outbox, Outcome, SessionLocks, sleep_or_stop};
use crate::push::gateway::{self, Answer, PushedEvent, Target};
use crate::store::Store;
use crate::time::now_ms;
use ruma::push::Action;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// Backoff while a gateway fails: doubling from 1 s up to an hour (Synapse's values).
const BACKOFF: Backoff = Backoff { first: Duration::from_secs(1), cap: Duration::from_secs(60 * 60) };
/// A notification that could not be delivered for this long is skipped: a day-old push is
/// noise, and a gateway that comes back must not be flooded with them (as Synapse does).
const GIVE_UP_AFTER_MS: i64 = 24 * 60 * 60 * 1000;
/// Attempts (database reads, the gateway request, the cursor write) in flight at once, so a
/// backlog — every pusher after a long outage — neither floods the pool nor the gateways.
const CONCURRENT_ATTEMPTS: usize = 16;
/// Two-key advisory lock class for pusher delivery locks ("HPSH").
const PUSHER_LOCK_CLASS: i32 = 0x4850_5348;

/// What every delivery shares.
pub(super) struct Deliveries {
    pool: Store,
    client: OutboundClient,
    locks: SessionLocks,
    attempts: Semaphore,
    stop: watch::Receiver<bool>,
}

impl Deliveries {
    pub(super) fn new(pool: Store, client: OutboundClient, stop: watch::Receiver<bool>) -> Deliveries {
        let locks = SessionLocks::new(pool.pool().clone(), PUSHER_LOCK_CLASS);
        Deliveries { pool, client, locks, attempts: Semaphore::new(CONCURRENT_ATTEMPTS), stop }
    }

    async fn deliver_locked(&self, pusher_id: i64, upto: i64) -> Result<Outcome> {
        let mut stop = self.stop.clone();
        let mut backoff = BACKOFF.first;
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
                    backoff = BACKOFF.first;
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
                    backoff = BACKOFF.next(backoff);
                }
            }
        }
    }
}

impl Outbox for Deliveries {
    type Queue = i64;
    const NAME: &'static str = "push";
    const KIND: crate::streams::OutboxKind = crate::streams::OutboxKind::Push;

    async fn queues_with_work(&self, after: Option<i64>, upto: i64) -> Result<Vec<i64>> {
        Ok(match after {
            None => db::push_delivery::pushers_with_pending(&self.pool, upto).await?,
            Some(after) => db::push_delivery::pushers_notified_between(&self.pool, after, upto).await?,
        })
    }

    /// Delivers the pusher's notifications up to `upto`, holding its lock meanwhile.
    async fn deliver(&self, pusher_id: i64, upto: i64) -> Outcome {
        let what = format!("pusher {pusher_id}");
        self.locks.while_locked(lock_key(pusher_id), &what, self.deliver_locked(pusher_id, upto)).await
    }

    async fn close(&self) {
        self.locks.close().await;
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
