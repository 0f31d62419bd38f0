//! Keeping the embedded PostgreSQL running for as long as Hearth runs.
//!
//! Hearth manages that cluster, so a postmaster that dies (killed, out of memory) is Hearth's
//! to bring back: it is restarted with a short back-off, while requests answer 503 with
//! `Retry-After` (`Error::Unavailable`) and the pool, the stream writer and the notification
//! listener reconnect on their next use. Nothing acknowledged is lost: a commit was durable
//! before it was acknowledged, and PostgreSQL's crash recovery replays it on the restart.

use crate::db::embedded::{ClusterOptions, RunningCluster, wait_for_orphaned_backends};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const FIRST_RETRY: Duration = Duration::from_millis(250);
const LONGEST_RETRY: Duration = Duration::from_secs(10);
/// How long a killed postmaster's backends get to notice and exit before a restart.
const ORPHAN_WAIT: Duration = Duration::from_secs(30);

pub(crate) struct ClusterKeeper {
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl ClusterKeeper {
    /// Watches `cluster`, restarting it from `options` whenever it dies, until [`Self::shutdown`].
    pub(crate) fn start(cluster: RunningCluster, options: ClusterOptions) -> ClusterKeeper {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(keep(cluster, options, stopped));
        ClusterKeeper { stop, task }
    }

    /// Stops the cluster (fast shutdown) and waits for it.
    pub(crate) async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}

async fn keep(
    mut cluster: RunningCluster,
    options: ClusterOptions,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Absolute, as the backends' working directories are.
    let dir = cluster.dir().to_owned();
    loop {
        let mut died = cluster.died();
        tokio::select! {
            _ = turns_true(&mut stopped) => {
                return tokio::task::spawn_blocking(move || cluster.stop()).await?;
            }
            _ = turns_true(&mut died) => {}
        }
        tracing::error!(
            log = %options.log_file.display(),
            "the embedded PostgreSQL exited unexpectedly; restarting it"
        );
        let mut wait = FIRST_RETRY;
        cluster = loop {
            tokio::select! {
                _ = turns_true(&mut stopped) => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
            let (attempt, dir) = (options.clone(), dir.clone());
            let restarted = tokio::task::spawn_blocking(move || {
                if !wait_for_orphaned_backends(&dir, ORPHAN_WAIT) {
                    anyhow::bail!("backends of the dead PostgreSQL still run in {}", dir.display());
                }
                RunningCluster::start(&attempt)
            })
            .await?;
            match restarted {
                Ok(cluster) => {
                    tracing::info!("the embedded PostgreSQL is running again");
                    break cluster;
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), retry_in = ?wait, "restarting the embedded PostgreSQL");
                    wait = (wait * 2).min(LONGEST_RETRY);
                }
            }
        };
    }
}

/// Resolves once the flag is set (or its sender is gone).
async fn turns_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}
