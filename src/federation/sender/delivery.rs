//! Sending one destination its queue: transactions of at most
//! [`MAX_PDUS_PER_TRANSACTION`](super::MAX_PDUS_PER_TRANSACTION) PDUs and
//! [`MAX_EDUS_PER_TRANSACTION`](super::MAX_EDUS_PER_TRANSACTION) EDUs, oldest first, each
//! retried under the same transaction id until the destination acknowledges it (so it can
//! drop a retransmission), with capped exponential backoff while it fails. The backoff is kept
//! in `federation_destinations`, so a restarted process does not hammer a destination that is
//! down; the first answer resets it and the queue is then sent in full (catch-up).

use super::{MAX_EDUS_PER_TRANSACTION, MAX_PDUS_PER_TRANSACTION};
use crate::db;
use crate::db::federation_queue::OutgoingTransaction;
use crate::error::Result;
use crate::federation::client::FederationClient;
use crate::outbox::{Backoff, Outbox, Outcome, SessionLocks, sleep_or_stop};
use crate::store::Store;
use crate::time::now_ms;
use ruma::api::federation::transactions::send_transaction_message;
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId, ServerName};
use serde_json::value::RawValue as RawJsonValue;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// Backoff while a destination fails: doubling from 1 s up to an hour.
const BACKOFF: Backoff = Backoff { first: Duration::from_secs(1), cap: Duration::from_secs(60 * 60) };
/// Transactions in flight at once, over all destinations: after an outage every destination
/// has a backlog, which must neither flood the pool nor the network.
const CONCURRENT_ATTEMPTS: usize = 16;
/// Two-key advisory lock class for destination delivery locks ("HFED").
const DESTINATION_LOCK_CLASS: i32 = 0x4846_4544;

/// What every destination's delivery shares.
pub(super) struct Destinations {
    pool: Store,
    client: FederationClient,
    locks: SessionLocks,
    attempts: Semaphore,
    stop: watch::Receiver<bool>,
    /// Ticks when an operator resets backoffs (`reset_connection`): a waiting destination
    /// looks at its row again and, if its backoff is gone, tries at once.
    resets: watch::Receiver<u64>,
}

/// How a wait for the next attempt ended.
enum Waited {
    Due,
    /// The operator forgot the backoff: start again from no backoff.
    Reset,
    Stopped,
}

impl Destinations {
    pub(super) fn new(
        pool: Store,
        client: FederationClient,
        stop: watch::Receiver<bool>,
        resets: watch::Receiver<u64>,
    ) -> Destinations {
        let locks = SessionLocks::new(pool.pool().clone(), DESTINATION_LOCK_CLASS);
        Destinations { pool, client, locks, attempts: Semaphore::new(CONCURRENT_ATTEMPTS), stop, resets }
    }

    /// Waits until the destination's next attempt is due (`due_in` from now), the process
    /// stops, or its backoff is reset.
    async fn wait_for_retry(
        &self,
        destination: &ServerName,
        mut due_in: Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Waited> {
        let mut resets = self.resets.clone();
        resets.mark_unchanged();
        loop {
            let started = tokio::time::Instant::now();
            tokio::select! {
                stopped = sleep_or_stop(due_in, stop) => {
                    return Ok(if stopped { Waited::Stopped } else { Waited::Due });
                }
                changed = resets.changed() => {
                    if changed.is_ok() && db::federation_queue::backoff(&self.pool, destination.as_str()).await?.is_none() {
                        return Ok(Waited::Reset);
                    }
                    if changed.is_err() {
                        // The sender handle is gone: only the timer is left to wait for.
                        return Ok(if sleep_or_stop(due_in.saturating_sub(started.elapsed()), stop).await {
                            Waited::Stopped
                        } else {
                            Waited::Due
                        });
                    }
                    due_in = due_in.saturating_sub(started.elapsed());
                }
            }
        }
    }

    async fn deliver_locked(&self, destination: &OwnedServerName) -> Result<Outcome> {
        let mut stop = self.stop.clone();
        let mut backoff = Duration::ZERO;
        // A backoff left by an earlier run (or process) is served first.
        if let Some(left) = db::federation_queue::backoff(&self.pool, destination.as_str()).await? {
            backoff = Duration::from_millis(u64::try_from(left.backoff_ms).unwrap_or_default());
            let due_in = Duration::from_millis(u64::try_from(left.retry_at_ts - now_ms()).unwrap_or_default());
            if !due_in.is_zero() {
                match self.wait_for_retry(destination, due_in, &mut stop).await? {
                    Waited::Stopped => return Ok(Outcome::Stopped),
                    Waited::Reset => backoff = Duration::ZERO,
                    Waited::Due => {}
                }
            }
        }
        loop {
            let attempt = self.attempts.acquire().await.map_err(|_| crate::Error::internal("semaphore closed"))?;
            if *stop.borrow() {
                return Ok(Outcome::Stopped);
            }
            let transaction = {
                let mut conn = self.pool.acquire().await?;
                let id_prefix = format!("{}.", now_ms());
                db::federation_queue::next_transaction(
                    &mut conn,
                    destination.as_str(),
                    (MAX_PDUS_PER_TRANSACTION, MAX_EDUS_PER_TRANSACTION),
                    &id_prefix,
                )
                .await?
            };
            let Some(transaction) = transaction else { return Ok(Outcome::CaughtUp) };
            match self.send(destination, &transaction).await {
                Ok(()) => {
                    db::federation_queue::acknowledge(&self.pool, destination.as_str(), &transaction.txn_id, now_ms())
                        .await?;
                    backoff = Duration::ZERO;
                }
                Err(reason) => {
                    backoff = BACKOFF.next(backoff);
                    let backoff_ms = i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX);
                    db::federation_queue::record_failure(
                        &self.pool,
                        destination.as_str(),
                        &reason,
                        backoff_ms,
                        now_ms(),
                    )
                    .await?;
                    tracing::info!(%destination, %reason, retry_in = ?backoff, txn_id = %transaction.txn_id, "federation transaction failed");
                    drop(attempt);
                    match self.wait_for_retry(destination, backoff, &mut stop).await? {
                        Waited::Stopped => return Ok(Outcome::Stopped),
                        Waited::Reset => backoff = Duration::ZERO,
                        Waited::Due => {}
                    }
                }
            }
        }
    }

    /// Sends one transaction; `Ok` once the destination acknowledged it. The destination's
    /// verdict on each PDU is its own business (a PDU it rejects is not sent again, as the
    /// spec has it); only the transaction failing as a whole means trying again.
    async fn send(
        &self,
        destination: &ServerName,
        transaction: &OutgoingTransaction,
    ) -> std::result::Result<(), String> {
        let pdus = transaction
            .pdus
            .iter()
            .map(|pdu| RawJsonValue::from_string(pdu.clone()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|error| format!("a stored PDU is not JSON: {error}"))?;
        let edus = transaction
            .edus
            .iter()
            .map(|edu| RawJsonValue::from_string(edu.clone()).map(Raw::from_json))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|error| format!("a stored EDU is not JSON: {error}"))?;
        let mut request = send_transaction_message::v1::Request::new(
            OwnedTransactionId::from(transaction.txn_id.as_str()),
            self.client.origin().to_owned(),
            MilliSecondsSinceUnixEpoch::now(),
        );
        request.pdus = pdus;
        request.edus = edus;
        let response = self.client.send(destination, request).await.map_err(|error| error.to_string())?;
        for (event_id, refused) in response.pdus.iter().filter_map(|(id, result)| Some((id, result.as_ref().err()?))) {
            tracing::info!(%destination, %event_id, reason = %refused, "the destination refused a PDU");
        }
        Ok(())
    }
}

impl Outbox for Destinations {
    type Queue = OwnedServerName;
    const NAME: &'static str = "federation";
    const KIND: crate::streams::OutboxKind = crate::streams::OutboxKind::Federation;

    async fn queues_with_work(&self, after: Option<i64>, upto: i64) -> Result<Vec<OwnedServerName>> {
        let names = match after {
            None => db::federation_queue::destinations_with_queue(&self.pool).await?,
            Some(after) => db::federation_queue::destinations_queued_between(&self.pool, after, upto).await?,
        };
        // A name that no longer parses (it was queued from a member's user id) cannot be sent to.
        Ok(names.into_iter().filter_map(|name| OwnedServerName::try_from(name).ok()).collect())
    }

    async fn deliver(&self, destination: OwnedServerName, _upto: i64) -> Outcome {
        let key = lock_key(destination.as_str());
        self.locks.while_locked(key, destination.as_str(), self.deliver_locked(&destination)).await
    }

    async fn close(&self) {
        self.locks.close().await;
    }
}

/// The second key of a destination's advisory lock: a stable hash (FNV-1a) of its name, the
/// same in every process. Names that share a key only ever make each other wait.
fn lock_key(destination: &str) -> i32 {
    let hash =
        destination.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    hash as i32
}
