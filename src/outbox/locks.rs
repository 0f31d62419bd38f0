//! Session advisory locks, one per queue being delivered, on a connection of their own: they
//! die with the process (its connection), so a crashed process never blocks a queue, and two
//! processes never deliver the same queue at once.

use super::Outcome;
use crate::db;
use crate::error::Result;
use sqlx::{Connection, PgConnection, PgPool};
use std::future::Future;
use tokio::sync::Mutex;

pub(crate) struct SessionLocks {
    pool: PgPool,
    /// The first key of every lock: one class per kind of queue.
    class: i32,
    connection: Mutex<Option<PgConnection>>,
}

impl SessionLocks {
    pub(crate) fn new(pool: PgPool, class: i32) -> SessionLocks {
        SessionLocks { pool, class, connection: Mutex::new(None) }
    }

    /// Runs `work` while holding the lock `key`; [`Outcome::HeldElsewhere`] without running it
    /// when another session holds it. `what` names the queue in logs.
    pub(crate) async fn while_locked(
        &self,
        key: i32,
        what: &str,
        work: impl Future<Output = Result<Outcome>>,
    ) -> Outcome {
        match self.try_lock(key).await {
            Ok(true) => {}
            Ok(false) => return Outcome::HeldElsewhere,
            Err(error) => {
                tracing::warn!(%error, queue = what, "outbox: locking a queue");
                return Outcome::Failed;
            }
        }
        let outcome = match work.await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(%error, queue = what, "outbox: delivering");
                Outcome::Failed
            }
        };
        self.unlock(key, what).await;
        outcome
    }

    async fn try_lock(&self, key: i32) -> Result<bool> {
        let mut connection = self.connection.lock().await;
        if connection.is_none() {
            *connection = Some(PgConnection::connect_with(&self.pool.connect_options()).await?);
        }
        let Some(open) = connection.as_mut() else { return Ok(false) };
        match db::advisory_locks::try_lock(open, self.class, key).await {
            Ok(locked) => Ok(locked),
            Err(error) => {
                // A broken connection took its locks with it; the next lock opens a new one.
                *connection = None;
                Err(error.into())
            }
        }
    }

    async fn unlock(&self, key: i32, what: &str) {
        let mut connection = self.connection.lock().await;
        let Some(open) = connection.as_mut() else { return };
        if let Err(error) = db::advisory_locks::unlock(open, self.class, key).await {
            tracing::warn!(%error, queue = what, "outbox: unlocking a queue");
            *connection = None;
        }
    }

    pub(crate) async fn close(&self) {
        if let Some(connection) = self.connection.lock().await.take() {
            let _ = connection.close().await;
        }
    }
}
