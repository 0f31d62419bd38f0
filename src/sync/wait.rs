//! The long-poll steps `/sync` and sliding sync share: watch the user's keys, sample the
//! stream, and when a look found nothing new, wait for a change (never poll).
//!
//! This is the piece the exactly-once invariant hangs on, so it lives once. The wait is aimed:
//! the request registers under the user's id and the rooms they are in, so only changes there
//! wake it (see `streams::notifier`). A change can be committed before it is readable — a
//! slower writer may still hold the stream below it — and its wake-up may come before the
//! request registered; so a look that found nothing while the stream was held back waits for
//! the readable position to catch up before it waits for its own keys.

use crate::db;
use crate::db::sync::MembershipRow;
use crate::error::Result;
use crate::rooms::known_memberships::MembershipCache;
use crate::store::Store;
use crate::streams::notifier::Waiter;
use crate::streams::{PositionBounds, Streams};
use ruma::UserId;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// One request's registration with the notifier, kept across its looks (dropping it
/// unregisters).
pub(crate) struct ChangeWatch<'a> {
    streams: &'a Streams,
    waiter: Waiter,
}

/// What one look may read: the user's memberships and the stream up to `upto`, sampled after
/// the watch was registered for them.
pub(crate) struct Sample {
    /// Shared with the process's known memberships when they came from there: a woken member's
    /// look reads them, nothing copies them.
    pub memberships: Arc<Vec<MembershipRow>>,
    /// When the memberships were known already rather than read: the position they are valid
    /// through, which the look must check (see `rooms::known_memberships`).
    pub memberships_through: Option<i64>,
    /// The readable position: everything at or below it is committed.
    pub upto: i64,
    allocated: i64,
    position_moved: watch::Receiver<u64>,
}

impl<'a> ChangeWatch<'a> {
    pub(crate) fn new(streams: &'a Streams) -> Self {
        ChangeWatch { streams, waiter: streams.notifier.waiter() }
    }

    /// Registers for the user's current keys, then samples the stream: a change committing in
    /// between wakes the wait that follows.
    ///
    /// The memberships must hold every change up to the sampled position, or a room joined
    /// just then would be missed for good: its events sit at or below the position, so no
    /// later window has them. Read after everything up to `before` committed, they hold every
    /// change up to it; when the position sampled after them is higher, something committed
    /// in between, and they are read again (now after the position).
    pub(crate) async fn sample(&mut self, pool: &Store, user: &UserId) -> Result<Sample> {
        let before = self.streams.position_bounds(pool).await?.readable;
        let memberships = Arc::new(db::sync::memberships(pool, user.as_str()).await?);
        let mut sample = self.sample_with(pool, user, memberships, None).await?;
        if sample.upto > before {
            sample.memberships = Arc::new(db::sync::memberships(pool, user.as_str()).await?);
            self.waiter.watch(wake_keys(&sample.memberships, user));
        }
        Ok(sample)
    }

    /// [`ChangeWatch::sample`] with the memberships this process knows already, when it does
    /// (else read, and kept for the next look): the look that follows must check that they
    /// have not moved since ([`Sample::memberships_through`]).
    pub(crate) async fn sample_known(&mut self, pool: &Store, user: &UserId) -> Result<Sample> {
        let cache = pool.cache::<MembershipCache>();
        if let Some(known) = cache.get(user) {
            return self.sample_with(pool, user, known.rows, Some(known.valid_through)).await;
        }
        // Read after everything up to `before` committed: valid through it, which the look
        // checks like any known memberships' (a change committed between this read and the
        // stream's sample would otherwise be missed).
        let before = self.streams.position_bounds(pool).await?.readable;
        let memberships = Arc::new(db::sync::memberships(pool, user.as_str()).await?);
        cache.put(user, memberships.clone(), before);
        self.sample_with(pool, user, memberships, Some(before)).await
    }

    /// [`ChangeWatch::sample`] for a look that answers at once whatever it finds (an initial
    /// sync), and so never waits on the watch: the stream is sampled first and the
    /// memberships read after it, which makes them hold every change up to it in one read.
    pub(crate) async fn sample_answered_at_once(&mut self, pool: &Store, user: &UserId) -> Result<Sample> {
        let position_moved = self.streams.notifier.position_changes();
        let PositionBounds { readable: upto, allocated } = self.streams.position_bounds(pool).await?;
        let memberships = Arc::new(db::sync::memberships(pool, user.as_str()).await?);
        self.waiter.watch(wake_keys(&memberships, user));
        Ok(Sample { memberships, memberships_through: None, upto, allocated, position_moved })
    }

    async fn sample_with(
        &mut self,
        pool: &Store,
        user: &UserId,
        memberships: Arc<Vec<MembershipRow>>,
        memberships_through: Option<i64>,
    ) -> Result<Sample> {
        self.waiter.watch(wake_keys(&memberships, user));
        let position_moved = self.streams.notifier.position_changes();
        let PositionBounds { readable: upto, allocated } = self.streams.position_bounds(pool).await?;
        Ok(Sample { memberships, memberships_through, upto, allocated, position_moved })
    }

    /// After a look at `sample` found nothing new: waits until something may have changed for
    /// the user (true), or until `deadline` or the server stops (false — then the caller
    /// answers with what it has, and the client resumes from the same position).
    pub(crate) async fn wait_for_change(&self, sample: Sample, deadline: Instant) -> bool {
        let Sample { memberships, upto, allocated, mut position_moved, .. } = sample;
        // Not kept through the wait: an idle request should hold only this small state.
        drop(memberships);
        let wait = async {
            if upto < allocated {
                // Changes up to `allocated` may be committed already, with their wake-ups gone
                // by before we registered: look again once the stream has moved.
                tokio::time::timeout_at(deadline, position_moved.changed()).await.is_ok()
            } else {
                tokio::time::timeout_at(deadline, self.waiter.woken()).await.is_ok()
            }
        };
        tokio::select! {
            woken = wait => woken,
            () = self.streams.stopped() => false,
        }
    }
}

/// What wakes the user's sync: changes to the user (account data, to-device messages, their
/// own membership anywhere) and in the rooms where something can still reach them.
fn wake_keys(memberships: &[MembershipRow], user: &UserId) -> Vec<String> {
    let mut keys: Vec<String> = memberships
        .iter()
        .filter(|row| matches!(row.membership.as_str(), "join" | "invite" | "knock"))
        .map(|row| row.room_id.clone())
        .collect();
    keys.push(user.to_string());
    keys
}
