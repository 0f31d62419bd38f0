//! Stream positions that never let a reader skip a change.
//!
//! Positions come from one PostgreSQL sequence, so writers may commit them out of order.
//! Before a writer takes a position it publishes, in `stream_writers`, a floor no higher
//! than any position it may still commit; readers hand out only positions below every live
//! writer's floor and below the last allocation they saw *before* reading the floors. The
//! floor is cleared after the writer's commits (or abandonments), so an idle writer blocks
//! nobody, and a dead writer's row is removed once its liveness lock is gone.

use crate::db;
use crate::error::{Error, Result};
use crate::streams::shared_read::SharedRead;
use crate::streams::{Audience, Notifier, OutboxKind};
use crate::time::now_ms;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often dead writers are looked for; a crashed process delays others by at most this.
const REAP_INTERVAL: Duration = Duration::from_secs(10);

pub struct StreamTracker {
    inner: Arc<Inner>,
}

struct Inner {
    /// The writer's own connection: holds its liveness lock and publishes its floor.
    /// Publishing happens under this lock, from the current in-flight set, so concurrent
    /// publishes cannot overtake one another with stale values.
    control: tokio::sync::Mutex<Control>,
    in_flight: Mutex<BTreeSet<i64>>,
    notifier: Notifier,
    bounds: SharedRead<PositionBounds>,
}

/// The control connection and what was last written through it.
///
/// A PostgreSQL backend can die under a live process (an operator's `pg_terminate_backend`,
/// an out-of-memory kill, a restart of the server). The connection is then replaced on its
/// next use and the writer takes its liveness lock again under the same id, so its row —
/// and the floor protecting its in-flight positions — carries on. Only if a reaper removed
/// the row in between (it looks every [`REAP_INTERVAL`], and the replacement happens on the
/// first use after the failure, within milliseconds while anything is in flight) does the
/// writer register anew; that is logged, since a reader may then have passed a position
/// still in flight.
struct Control {
    connect_options: PgConnectOptions,
    /// `None` after it failed: the next use connects again.
    connection: Option<PgConnection>,
    writer_id: i32,
    published: Option<i64>,
}

/// What the tracker asks of its control connection.
enum ControlStatement<'a> {
    /// Publish the lowest position `nextval` can still return as the floor (and return it).
    PublishNextFloor,
    SetFloor(Option<i64>),
    Notify(&'a str),
    /// `SetFloor`, then `Notify`, in one statement.
    SetFloorAndNotify(Option<i64>, &'a str),
    /// A write that changes nothing: proves the database takes writes.
    Touch,
    /// Move the floor so, then take this many positions (see [`db::streams::allocate_on_control`]).
    Allocate(db::streams::NewFloor, i64),
}

/// What a control statement returned: the floor it published, if it says, and the positions
/// it took.
type Ran = (Option<i64>, Vec<i64>);

impl Control {
    /// Runs `statement`; when the connection turns out to be gone, connects again (see
    /// [`Control`]) and runs it once more. `in_flight` is the floor to restore then.
    async fn run(
        &mut self,
        statement: ControlStatement<'_>,
        in_flight: Option<i64>,
        notifier: &Notifier,
    ) -> Result<Ran> {
        // A connection that had worked may simply have been cut: one more try, on a new one.
        // A failure to connect at all means the database is away; the caller hears of it.
        let had_connection = self.connection.is_some();
        match self.try_run(&statement, in_flight, notifier).await {
            Err(error) if had_connection && crate::error::database_unavailable(&error) => {
                tracing::warn!(%error, writer_id = self.writer_id, "the stream writer's connection failed; reconnecting");
                Ok(self.try_run(&statement, in_flight, notifier).await?)
            }
            result => Ok(result?),
        }
    }

    async fn try_run(
        &mut self,
        statement: &ControlStatement<'_>,
        in_flight: Option<i64>,
        notifier: &Notifier,
    ) -> sqlx::Result<Ran> {
        if self.connection.is_none() {
            self.reconnect(in_flight, notifier).await?;
        }
        let writer_id = self.writer_id;
        let Some(connection) = self.connection.as_mut() else { return Err(sqlx::Error::PoolClosed) };
        let result = match statement {
            ControlStatement::PublishNextFloor => db::streams::publish_next_position_floor(&mut *connection, writer_id)
                .await
                .map(|floor| (Some(floor), Vec::new())),
            ControlStatement::SetFloor(floor) => {
                db::streams::set_blocking_from(&mut *connection, writer_id, *floor).await.map(|()| (None, Vec::new()))
            }
            ControlStatement::Notify(payload) => {
                db::streams::notify(&mut *connection, payload).await.map(|()| (None, Vec::new()))
            }
            ControlStatement::SetFloorAndNotify(floor, payload) => {
                db::streams::set_blocking_from_and_notify(&mut *connection, writer_id, *floor, payload)
                    .await
                    .map(|()| (None, Vec::new()))
            }
            ControlStatement::Touch => {
                db::streams::touch_writer(&mut *connection, writer_id).await.map(|()| (None, Vec::new()))
            }
            ControlStatement::Allocate(floor, count) => {
                db::streams::allocate_on_control(&mut *connection, writer_id, *floor, *count).await
            }
        };
        if result.as_ref().is_err_and(crate::error::database_unavailable) {
            db::connection_health::connection_failed();
            self.connection = None;
        }
        result
    }

    async fn reconnect(&mut self, in_flight: Option<i64>, notifier: &Notifier) -> sqlx::Result<()> {
        let mut connection = PgConnection::connect_with(&self.connect_options).await?;
        db::streams::relax_durability(&mut connection).await?;
        if !db::streams::reclaim_writer(&mut connection, self.writer_id).await? {
            let lost = self.writer_id;
            self.writer_id = db::streams::register_writer(&mut connection, now_ms()).await?;
            notifier.set_own_writer(self.writer_id);
            if in_flight.is_some() {
                tracing::error!(
                    lost,
                    writer_id = self.writer_id,
                    "the stream writer's row was reaped while positions were in flight; a sync may miss them"
                );
            }
        }
        // The row may hold a floor from before the failure: write the one that is true now.
        db::streams::set_blocking_from(&mut connection, self.writer_id, in_flight).await?;
        self.published = in_flight;
        self.connection = Some(connection);
        tracing::info!(writer_id = self.writer_id, "the stream writer's connection is back");
        Ok(())
    }
}

impl StreamTracker {
    pub async fn register(pool: &PgPool, notifier: Notifier) -> anyhow::Result<StreamTracker> {
        let connect_options = pool.connect_options().as_ref().clone();
        let mut connection = PgConnection::connect_with(&connect_options).await?;
        // The floors are runtime state: they must be visible at once, but need not survive a
        // crash (a restarted process registers anew). Without this every write would pay two
        // more durable commits.
        db::streams::relax_durability(&mut connection).await?;
        db::streams::remove_dead_writers(&mut connection).await?;
        let writer_id = db::streams::register_writer(&mut connection, now_ms()).await?;
        tracing::debug!(writer_id, "registered as a stream writer");
        notifier.set_own_writer(writer_id);
        let inner = Arc::new(Inner {
            control: tokio::sync::Mutex::new(Control {
                connect_options,
                connection: Some(connection),
                writer_id,
                published: None,
            }),
            in_flight: Mutex::new(BTreeSet::new()),
            notifier,
            bounds: SharedRead::new(),
        });
        let reaper = Arc::downgrade(&inner);
        let reaper_pool = pool.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(REAP_INTERVAL);
            loop {
                interval.tick().await;
                let Some(inner) = reaper.upgrade() else { break };
                match db::streams::remove_dead_writers(&reaper_pool).await {
                    // A dead writer's floor held the stream back: syncs waiting for it to
                    // move, here and in other processes, may go on.
                    Ok(removed) if removed > 0 => {
                        let nobody = Audience::Keys(Vec::new());
                        let payload = inner.notifier.payload(&nobody);
                        if let Err(error) = db::streams::notify(&reaper_pool, &payload).await {
                            tracing::warn!(%error, "announcing reaped stream writers");
                        }
                        inner.notifier.wake(&nobody);
                    }
                    Ok(_) => {}
                    // The server is shutting down: its pool is closed.
                    Err(_) if reaper_pool.is_closed() => break,
                    Err(error) => tracing::warn!(%error, "looking for dead stream writers"),
                }
            }
        });
        Ok(StreamTracker { inner })
    }

    /// Whether this process can write to the stream: one write through the control
    /// connection (reconnecting it if it failed). What `/health` asks.
    pub async fn check_writable(&self) -> Result<()> {
        let mut control = self.inner.control.lock().await;
        control.run(ControlStatement::Touch, self.lowest_in_flight(), &self.inner.notifier).await?;
        Ok(())
    }

    /// A set of positions for one transaction. Commit it after the transaction commits.
    pub fn reserve(&self) -> Reservation<'_> {
        Reservation { tracker: self, positions: Vec::new(), ahead: VecDeque::new(), committed: false }
    }

    /// The highest position below which everything has committed (see the module docs).
    pub async fn current_position(&self, pool: &PgPool) -> Result<i64> {
        Ok(self.position_bounds(pool).await?.readable)
    }

    /// The readable position, and the highest one handed out before it was determined.
    pub async fn position_bounds(&self, pool: &PgPool) -> Result<PositionBounds> {
        // Sampled now, after the caller registered for wake-ups (see `shared_read`).
        let notifier = &self.inner.notifier;
        self.inner.bounds.get(notifier.generation(), || notifier.generation(), || Self::read_bounds(pool)).await
    }

    async fn read_bounds(pool: &PgPool) -> Result<PositionBounds> {
        // Order matters: the allocation bound is read before the floors, so any position
        // allocated before that read has its writer's floor visible to the second query.
        let allocated = db::streams::last_allocated(pool).await?;
        let blocking = db::streams::lowest_blocking(pool).await?;
        let readable = match blocking {
            Some(floor) => allocated.min(floor - 1),
            None => allocated,
        };
        Ok(PositionBounds { readable, allocated })
    }

    async fn allocate(&self, transaction: &mut PgConnection) -> Result<i64> {
        let positions = self.allocate_many(transaction, 1).await?;
        positions.first().copied().ok_or_else(|| Error::internal("no stream position allocated"))
    }

    /// `count` positions (ascending) in one round trip.
    async fn allocate_many(&self, transaction: &mut PgConnection, count: usize) -> Result<Vec<i64>> {
        // Held until the positions are in flight, so no `finish` in between lifts the floor
        // that covers them.
        let mut control = self.inner.control.lock().await;
        let notifier = &self.inner.notifier;
        // The floor must be public before the position exists. A published floor no higher
        // than every position still in flight covers the new one too (positions only grow);
        // with nothing in flight and nothing published, the next position `nextval` can
        // return is published in the statement that reads it.
        match self.lowest_in_flight() {
            Some(lowest) if control.published.is_none_or(|published| published > lowest) => {
                control.run(ControlStatement::SetFloor(Some(lowest)), Some(lowest), notifier).await?;
                control.published = Some(lowest);
            }
            Some(_) => {}
            None if control.published.is_none() => {
                let (floor, _) = control.run(ControlStatement::PublishNextFloor, None, notifier).await?;
                control.published = floor;
            }
            None => {}
        }
        let positions = match count {
            1 => vec![db::streams::allocate_position(transaction).await?],
            _ => {
                let count = i64::try_from(count).map_err(|_| Error::internal("too many positions at once"))?;
                db::streams::allocate_positions(transaction, count).await?
            }
        };
        self.in_flight().extend(positions.iter().copied());
        drop(control);
        Ok(positions)
    }

    /// `count` positions (ascending) taken on the control connection, in the round trip that
    /// publishes the floor covering them when one must be published: the writing transaction
    /// needs no `nextval` of its own, and a sequential writer (nothing in flight between its
    /// commits) pays one round trip for floor and positions instead of two.
    async fn allocate_on_control(&self, count: usize) -> Result<Vec<i64>> {
        let count = i64::try_from(count).map_err(|_| Error::internal("too many positions at once"))?;
        // Held until the positions are in flight, so no `finish` in between lifts the floor
        // that covers them.
        let mut control = self.inner.control.lock().await;
        // The same choice as `allocate_many`: the floor must cover every position `nextval`
        // may return from now on, and must be public before they exist.
        let (floor, restore) = match self.lowest_in_flight() {
            Some(lowest) if control.published.is_none_or(|published| published > lowest) => {
                (db::streams::NewFloor::At(lowest), Some(lowest))
            }
            None if control.published.is_none() => (db::streams::NewFloor::Next, None),
            _ => (db::streams::NewFloor::Keep, control.published),
        };
        let (published, positions) =
            control.run(ControlStatement::Allocate(floor, count), restore, &self.inner.notifier).await?;
        if published.is_some() {
            control.published = published;
        }
        self.in_flight().extend(positions.iter().copied());
        drop(control);
        Ok(positions)
    }

    /// Positions are done (committed or abandoned): lower or clear the published floor, then
    /// wake the syncs the change concerns. An abandoned write concerns nobody, but lifting its
    /// floor may make others' changes readable.
    async fn finish(&self, positions: &[i64], audience: Audience, spared: &[OutboxKind]) -> Result<()> {
        {
            let mut in_flight = self.in_flight();
            for position in positions {
                in_flight.remove(position);
            }
        }
        if positions.is_empty() {
            return self.publish().await;
        }
        let payload = self.inner.notifier.payload(&audience);
        {
            // The floor moves and the other processes hear of it in one round trip.
            let mut control = self.inner.control.lock().await;
            let wanted = self.lowest_in_flight();
            let statement = if control.published == wanted {
                ControlStatement::Notify(&payload)
            } else {
                ControlStatement::SetFloorAndNotify(wanted, &payload)
            };
            control.run(statement, wanted, &self.inner.notifier).await?;
            control.published = wanted;
        }
        self.inner.notifier.wake_sparing(&audience, spared);
        Ok(())
    }

    async fn publish(&self) -> Result<()> {
        let mut control = self.inner.control.lock().await;
        let wanted = self.lowest_in_flight();
        if control.published != wanted {
            // Lifting the floor may make other writers' changes readable: it is announced like
            // any change, so that readers holding an older read of the bounds read again.
            let nobody = Audience::Keys(Vec::new());
            let payload = self.inner.notifier.payload(&nobody);
            control.run(ControlStatement::SetFloorAndNotify(wanted, &payload), wanted, &self.inner.notifier).await?;
            control.published = wanted;
            drop(control);
            self.inner.notifier.wake_sparing(&nobody, &OutboxKind::ALL);
        }
        Ok(())
    }

    fn lowest_in_flight(&self) -> Option<i64> {
        self.in_flight().first().copied()
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, BTreeSet<i64>> {
        self.inner.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Where the stream stands for a reader.
#[derive(Clone, Copy, Debug)]
pub struct PositionBounds {
    /// Everything up to here has committed (or been abandoned).
    pub readable: i64,
    /// Positions up to here exist; those above `readable` may still be in flight.
    pub allocated: i64,
}

/// Positions taken by one transaction.
pub struct Reservation<'a> {
    tracker: &'a StreamTracker,
    positions: Vec<i64>,
    /// Among `positions`, those taken ahead and not used yet, lowest first.
    ahead: VecDeque<i64>,
    committed: bool,
}

impl Reservation<'_> {
    /// Takes the next position, inside `transaction`.
    pub async fn next(&mut self, transaction: &mut PgConnection) -> Result<i64> {
        let position = self.tracker.allocate(transaction).await?;
        self.positions.push(position);
        Ok(position)
    }

    /// Takes `count` next positions at once (ascending), inside `transaction`.
    pub async fn next_many(&mut self, transaction: &mut PgConnection, count: usize) -> Result<Vec<i64>> {
        let positions = self.tracker.allocate_many(transaction, count).await?;
        self.positions.extend(positions.iter().copied());
        Ok(positions)
    }

    /// Takes `count` positions ahead of their use, outside the transaction (on the tracker's
    /// own connection, with the floor that covers them: one round trip), for
    /// [`Reservation::next_ahead`]. Those left unused are gaps, which readers skip. Take them
    /// once the transaction holds the locks that order its writes: positions follow the order
    /// in which they are taken.
    pub async fn take_ahead(&mut self, count: usize) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let positions = self.tracker.allocate_on_control(count).await?;
        self.positions.extend(positions.iter().copied());
        self.ahead.extend(positions);
        Ok(())
    }

    /// The lowest position taken ahead and not used yet, or (none left) the next one inside
    /// `transaction`. Give it back with [`Reservation::unused`] if it was not used after all.
    pub async fn next_ahead(&mut self, transaction: &mut PgConnection) -> Result<i64> {
        match self.ahead.pop_front() {
            Some(position) => Ok(position),
            None => self.next(transaction).await,
        }
    }

    /// Gives back a position from [`Reservation::next_ahead`] that nothing was written at.
    pub fn unused(&mut self, position: i64) {
        self.ahead.push_front(position);
    }

    /// The positions taken so far (some may belong to work rolled back to a savepoint).
    pub fn positions(&self) -> &[i64] {
        &self.positions
    }

    /// Call after the transaction committed: readers may now deliver these positions, and
    /// every waiting sync (here and in other processes) is woken. Prefer
    /// [`Reservation::committed_for`] when the change concerns known rooms or users.
    pub async fn committed(self) -> Result<()> {
        self.committed_to(Audience::Everyone, &[]).await
    }

    /// As [`Reservation::committed`], waking only the syncs of users in these rooms or of
    /// these users (room ids and user ids).
    pub async fn committed_for(self, keys: Vec<String>) -> Result<()> {
        self.committed_to(Audience::Keys(keys), &[]).await
    }

    /// As [`Reservation::committed_for`], by a writer that knows its transaction gave the
    /// `spared` outboxes nothing to deliver: their workers are not woken for it.
    pub async fn committed_sparing(self, keys: Vec<String>, spared: &[OutboxKind]) -> Result<()> {
        self.committed_to(Audience::Keys(keys), spared).await
    }

    async fn committed_to(mut self, audience: Audience, spared: &[OutboxKind]) -> Result<()> {
        self.committed = true;
        let positions = std::mem::take(&mut self.positions);
        self.tracker.finish(&positions, audience, spared).await
    }
}

impl Drop for Reservation<'_> {
    /// An abandoned reservation (the transaction failed) leaves gaps, which readers skip;
    /// its floor must still be lifted, or the whole stream would stall.
    fn drop(&mut self) {
        if self.committed || self.positions.is_empty() {
            return;
        }
        let positions = std::mem::take(&mut self.positions);
        let inner = self.tracker.inner.clone();
        tokio::spawn(async move {
            let tracker = StreamTracker { inner };
            // Nothing was written: no outbox got work (a worker waiting for the positions to
            // become readable follows the generation, which moves).
            let spared = [OutboxKind::Push, OutboxKind::Federation];
            if let Err(error) = tracker.finish(&positions, Audience::Keys(Vec::new()), &spared).await {
                tracing::error!(%error, "lifting the stream floor after a failed write");
            }
        });
    }
}
