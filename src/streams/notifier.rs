//! Wake-ups for waiting syncs. A generation counter in a watch channel: waiters subscribe
//! *before* they look for changes (so a write in between is never missed), then wait for the
//! counter to move. Local commits bump it directly; other processes' commits arrive through
//! PostgreSQL `LISTEN hearth_stream`.

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Clone)]
pub struct Notifier {
    sender: watch::Sender<u64>,
}

impl Notifier {
    pub async fn start(pool: &PgPool) -> anyhow::Result<Notifier> {
        let (sender, _) = watch::channel(0u64);
        let notifier = Notifier { sender };
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen("hearth_stream").await?;
        let waker = notifier.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(_) => waker.wake(),
                    // The server is shutting down: its pool is closed.
                    Err(sqlx::Error::PoolClosed) => break,
                    Err(error) => {
                        // sqlx reconnects on the next recv; wake everyone in case a
                        // notification was lost while the connection was down.
                        tracing::warn!(%error, "stream notification listener");
                        waker.wake();
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(notifier)
    }

    pub fn wake(&self) {
        self.sender.send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// Subscribe before checking for changes; then `changed().await` returns on the next
    /// wake-up after the subscription.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }
}
