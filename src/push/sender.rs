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
//! The worker is an outbox's (`crate::outbox`): woken by the stream notifier, it looks for
//! pushers with new notifications in the newly readable range — no polling. Each pusher is
//! delivered to by one task at a time, in order, with capped exponential backoff while its
//! gateway fails; a session advisory lock per pusher keeps two processes from delivering to
//! one pusher.

use super::delivery::Deliveries;
use crate::net::OutboundClient;
use crate::outbox::OutboxWorker;
use crate::store::Store;
use crate::streams::Streams;
use std::sync::Weak;

/// The process's push delivery worker.
#[derive(Default)]
pub struct PushSender(OutboxWorker);

impl PushSender {
    /// Starts delivering; the worker ends when the process's streams are dropped or
    /// [`PushSender::stop`] is called.
    pub fn start(&self, pool: Store, streams: Weak<Streams>, client: OutboundClient) {
        let deliveries_pool = pool.clone();
        self.0.start(pool.pool().clone(), streams, move |stop| Deliveries::new(deliveries_pool, client, stop));
    }

    /// Stops the worker after the deliveries in flight have finished and recorded their
    /// progress. Call before closing the pool: a delivery whose cursor cannot be written
    /// would be sent again by the next process.
    pub async fn stop(&self) {
        self.0.stop().await;
    }
}
