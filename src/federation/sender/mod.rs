//! The federation sender (DESIGN §4): every local event of a room with remote members goes to
//! each of their servers through a durable per-destination queue (`federation_queue`).
//!
//! - The queue's rows are written by `crate::outbox::federation` inside the transaction of the
//!   change they announce (events in `rooms::send::committed::commit_events`, EDUs beside
//!   typing, receipts, presence, devices and keys), so a change is queued exactly when it
//!   exists — and the domains that write them need not know the sender.
//! - [`FederationSender`] is the process's worker (a `crate::outbox`): the stream notifier
//!   that wakes `/sync` after every commit wakes it too; it sends each destination its queue
//!   oldest first in transactions of at most [`MAX_PDUS_PER_TRANSACTION`] PDUs (and
//!   [`MAX_EDUS_PER_TRANSACTION`] EDUs), with capped
//!   exponential backoff while the destination fails, and deletes rows only once the
//!   destination acknowledged them (see `delivery`).

mod delivery;

use crate::federation::client::FederationClient;
use crate::outbox::OutboxWorker;
use crate::store::Store;
use crate::streams::Streams;
use std::sync::Weak;

/// The spec's bound on the PDUs of one transaction.
pub(crate) const MAX_PDUS_PER_TRANSACTION: i64 = 50;
/// The spec's bound on the EDUs of one transaction.
pub(crate) const MAX_EDUS_PER_TRANSACTION: i64 = 100;

/// The process's federation sender.
#[derive(Default)]
pub struct FederationSender {
    worker: OutboxWorker,
    /// Ticked by [`FederationSender::backoffs_reset`].
    resets: tokio::sync::watch::Sender<u64>,
}

impl FederationSender {
    /// Starts sending through `client`; the worker ends when the process's streams are dropped
    /// or [`FederationSender::stop`] is called.
    pub fn start(&self, pool: Store, streams: Weak<Streams>, client: FederationClient) {
        let destinations_pool = pool.clone();
        let resets = self.resets.subscribe();
        self.worker.start(pool.pool().clone(), streams, move |stop| {
            delivery::Destinations::new(destinations_pool, client, stop, resets)
        });
    }

    /// Tells destinations waiting out a backoff that backoffs were reset in the database: those
    /// whose backoff is gone try again at once (the admin API's `reset_connection`).
    pub fn backoffs_reset(&self) {
        self.resets.send_modify(|ticks| *ticks = ticks.wrapping_add(1));
    }

    /// Stops the worker after the transactions in flight have been answered and recorded.
    /// Call before closing the pool.
    pub async fn stop(&self) {
        self.worker.stop().await;
    }
}
