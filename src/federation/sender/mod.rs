//! The federation sender (DESIGN §4): every local event of a room with remote members goes to
//! each of their servers through a durable per-destination queue (`federation_queue`).
//!
//! - [`enqueue_pdus`] runs inside the transaction that commits the events
//!   (`rooms::send::committed::commit_events`), so an event is queued exactly when it exists.
//!   Only events of local senders are sent: a remote server's events reach the others from
//!   their origin, as the spec has it.
//! - [`FederationSender`] is the process's worker (a `crate::outbox`): the stream notifier
//!   that wakes `/sync` after every commit wakes it too; it sends each destination its queue
//!   oldest first in transactions of at most [`MAX_PDUS_PER_TRANSACTION`] PDUs (and
//!   [`MAX_EDUS_PER_TRANSACTION`] EDUs, queued by [`edus`] beside the changes they announce), with capped
//!   exponential backoff while the destination fails, and deletes rows only once the
//!   destination acknowledged them (see `delivery`).

mod delivery;
pub mod edus;

use crate::db;
use crate::db::federation_queue::Outgoing;
use crate::error::Result;
use crate::federation::client::FederationClient;
use crate::outbox::OutboxWorker;
use crate::rooms::send::Appended;
use crate::streams::Streams;
use ruma::events::TimelineEventType;
use ruma::{RoomId, ServerName, UserId};
use sqlx::{PgConnection, PgPool};
use std::sync::Weak;

/// The spec's bound on the PDUs of one transaction.
pub const MAX_PDUS_PER_TRANSACTION: i64 = 50;
/// The spec's bound on the EDUs of one transaction.
pub const MAX_EDUS_PER_TRANSACTION: i64 = 100;

/// Queues the new local events among `events` (appended to `room_id` in the transaction
/// `tx`) for every remote server with a joined member in the room, and a kick or ban of a
/// remote user for that user's server too. Costs nothing when no event is local, and
/// one statement otherwise.
pub async fn enqueue_pdus(
    tx: &mut PgConnection,
    local: &ServerName,
    room_id: &RoomId,
    events: &[&Appended],
) -> Result<()> {
    let outgoing: Vec<Outgoing<'_>> = events
        .iter()
        .filter_map(|appended| match appended {
            Appended::New { pdu, stored } if pdu.sender.server_name() == local => Some(Outgoing {
                event_nid: stored.event_nid,
                stream_position: stored.position,
                membership_target: membership_target(pdu, local),
            }),
            _ => None,
        })
        .collect();
    if outgoing.is_empty() {
        return Ok(());
    }
    db::federation_queue::enqueue(tx, room_id.as_str(), local.as_str(), &outgoing).await?;
    Ok(())
}

/// The server of a remote user that `pdu` (a local user's doing) kicks, bans, unbans or
/// uninvites: it must hear of it even when none of its users is (still) joined, as Synapse
/// does. An invite is not among them: it reaches the invitee's server through `/invite`
/// (`federation::membership`), and a server outside the room would refuse it in a transaction.
fn membership_target<'p>(pdu: &'p crate::rooms::pdu::Pdu, local: &ServerName) -> Option<&'p str> {
    if pdu.kind != TimelineEventType::RoomMember {
        return None;
    }
    let membership = pdu.content_value()["membership"].as_str().map(str::to_owned);
    if !matches!(membership.as_deref(), Some("leave" | "ban")) {
        return None;
    }
    let target = <&UserId>::try_from(pdu.state_key.as_deref()?).ok()?;
    (target.server_name() != local).then(|| target.server_name().as_str())
}

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
    pub fn start(&self, pool: PgPool, streams: Weak<Streams>, client: FederationClient) {
        let destinations_pool = pool.clone();
        let resets = self.resets.subscribe();
        self.worker
            .start(pool, streams, move |stop| delivery::Destinations::new(destinations_pool, client, stop, resets));
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
