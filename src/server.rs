//! Building the shared state, opening the database, and serving HTTP until told to stop.

use crate::config::Config;
use crate::db;
use crate::db::cluster_keeper::ClusterKeeper;
use crate::db::embedded::{ClusterOptions, DataDirLock, LockOutcome, RunningCluster};
use crate::signing_key::SigningKey;
use crate::state::AppState;
use anyhow::{Context, anyhow, bail};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use std::time::Duration;
use tokio::net::TcpListener;

/// What keeps the database available: nothing for an external server; for the embedded one,
/// the data directory lock and (unless a running server owns it) the cluster itself, kept
/// running by a [`ClusterKeeper`].
pub struct DatabaseGuard {
    cluster: Option<ClusterKeeper>,
    _lock: Option<DataDirLock>,
}

impl DatabaseGuard {
    /// Stops the embedded cluster (if this process runs it) and releases the lock.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        if let Some(cluster) = self.cluster {
            cluster.shutdown().await?;
        }
        Ok(())
    }
}

/// Who is opening the database.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Opener {
    /// `hearth serve`: owns the data directory; a second server on it is an error.
    Server,
    /// Operator commands: run beside a server (sharing its cluster) or alone.
    Tool,
}

pub async fn open_database(config: &Config, opener: Opener) -> anyhow::Result<(PgPool, DatabaseGuard)> {
    let max_connections = config.database.max_connections;
    let session = |options| db::with_synchronous_commit(options, &config.database.synchronous_commit);
    let lock = match DataDirLock::try_acquire(&config.data_dir)? {
        LockOutcome::Acquired(lock) => Some(lock),
        LockOutcome::HeldElsewhere if opener == Opener::Server => bail!(
            "another Hearth process is already using the data directory {} (it holds {}); \
             stop it first, or give this one its own `data_dir`",
            config.data_dir.display(),
            config.data_dir.join("hearth.lock").display()
        ),
        LockOutcome::HeldElsewhere => None,
    };

    if let Some(url) = &config.database.url {
        let options = PgConnectOptions::from_str(url).context("`database.url`")?;
        let pool = db::open_pool(session(options), max_connections).await?;
        return Ok((pool, DatabaseGuard { cluster: None, _lock: lock }));
    }

    let options = ClusterOptions::for_data_dir(&config.data_dir);
    if lock.is_none() {
        // A running server owns the embedded cluster: use its socket.
        wait_for_running_cluster(&options.dir).await?;
        let pool =
            db::open_pool(session(db::embedded::connect_options(&options.dir, "hearth")), max_connections.min(2))
                .await?;
        return Ok((pool, DatabaseGuard { cluster: None, _lock: None }));
    }
    let keep_options = options.clone();
    let cluster = tokio::task::spawn_blocking(move || RunningCluster::start(&options)).await??;
    db::ensure_database(cluster.connect_options("postgres"), "hearth").await?;
    let pool = db::open_pool(session(cluster.connect_options("hearth")), max_connections).await?;
    let keeper = ClusterKeeper::start(cluster, keep_options);
    Ok((pool, DatabaseGuard { cluster: Some(keeper), _lock: lock }))
}

async fn wait_for_running_cluster(dir: &std::path::Path) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let Ok(text) = tokio::fs::read_to_string(dir.join("postmaster.pid")).await
            && text.lines().nth(7).map(str::trim) == Some("ready")
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("a Hearth server holds this data directory, but its PostgreSQL did not become ready within 30 s")
}

/// Binds every configured listener; an address that cannot be bound is named in the error.
pub async fn bind(config: &Config) -> anyhow::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for address in &config.listen {
        let listener = TcpListener::bind(address.as_str())
            .await
            .with_context(|| format!("`listen`: cannot listen on {address}"))?;
        tracing::info!(address = %listener.local_addr()?, "listening");
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Binds `federation.listen` (nothing when federation is off or shares `listen`).
pub async fn bind_federation(config: &Config) -> anyhow::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    if !config.federation.enabled {
        return Ok(listeners);
    }
    for address in &config.federation.listen {
        let listener = TcpListener::bind(address.as_str())
            .await
            .with_context(|| format!("`federation.listen`: cannot listen on {address}"))?;
        tracing::info!(address = %listener.local_addr()?, tls = config.federation.tls_cert.is_some(), "listening for federation");
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Binds `metrics.listen` (nothing when metrics are off).
pub async fn bind_metrics(config: &Config) -> anyhow::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for address in &config.metrics.listen {
        let listener = TcpListener::bind(address.as_str())
            .await
            .with_context(|| format!("`metrics.listen`: cannot listen on {address}"))?;
        tracing::info!(address = %listener.local_addr()?, "serving metrics");
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve_metrics_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = Duration::from_secs(state.config.limits.header_timeout_secs);
    crate::http::serve::serve(listener, crate::telemetry::router(state), header_timeout, shutdown).await
}

/// Serves the federation API on `listener` (over TLS when `federation.tls_cert` is set) until
/// `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve_federation_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let header_timeout = Duration::from_secs(state.config.limits.header_timeout_secs);
    let tls = crate::federation::tls::acceptor(&state.config.federation)?;
    let app = crate::http::federation_router(state);
    crate::http::serve::serve_with_tls(listener, tls, app, header_timeout, shutdown).await?;
    Ok(())
}

/// Serves the application on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = Duration::from_secs(state.config.limits.header_timeout_secs);
    crate::http::serve::serve(listener, crate::http::router(state), header_timeout, shutdown).await
}

/// How long a stop waits for requests in flight.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// `hearth serve`.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (pool, guard) = open_database(&config, Opener::Server).await?;
    let signing_key = SigningKey::load_or_generate(&config.data_dir.join("signing.key"))?;
    tracing::info!(server_name = %config.server_name, key_id = %signing_key.key_id(), "starting Hearth");
    let listeners = bind(&config).await?;
    let federation_listeners = bind_federation(&config).await?;
    let metrics_listeners = bind_metrics(&config).await?;
    let xmpp_listeners = crate::xmpp::bind(&config).await?;
    // A bad certificate or key stops the start, rather than every TLS handshake later.
    crate::federation::tls::acceptor(&config.federation)?;
    if config.xmpp.enabled {
        crate::xmpp::tls::acceptor(&config)?;
    }
    let state = AppState::new(config, pool, signing_key).await?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for listener in listeners {
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let state = state.clone();
        servers.spawn(async move { serve_on(listener, state, shutdown).await.map_err(anyhow::Error::from) });
    }
    for listener in federation_listeners {
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        servers.spawn(serve_federation_on(listener, state.clone(), shutdown));
    }
    for listener in metrics_listeners {
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let state = state.clone();
        servers.spawn(async move { serve_metrics_on(listener, state, shutdown).await.map_err(anyhow::Error::from) });
    }
    for (listener, mode) in xmpp_listeners {
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        servers.spawn(crate::xmpp::serve(listener, mode, state.clone(), shutdown));
    }
    let pruner = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(60));
            loop {
                interval.tick().await;
                state.rate_limits.prune();
            }
        })
    };

    let outcome = tokio::select! {
        signal = shutdown_signal() => { tracing::info!(signal, "shutting down"); Ok(()) }
        Some(result) = servers.join_next() => match result {
            Ok(Ok(())) => Err(anyhow!("an HTTP listener stopped unexpectedly")),
            Ok(Err(error)) => Err(anyhow!("an HTTP listener failed: {error}")),
            Err(error) => Err(anyhow!("an HTTP listener panicked: {error}")),
        },
    };

    // Waiting syncs answer now (empty, with the current token), so that the listeners drain
    // in the time ordinary requests take, well within the 10 s Docker and systemd grant.
    state.streams.stop_waiting();
    let _ = stop_tx.send(true);
    let drain = async { while servers.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_LIMIT, drain).await.is_err() {
        tracing::warn!("some requests were still running after {DRAIN_LIMIT:?}; closing them");
    }
    pruner.abort();
    // Background work first (push deliveries record their progress), then the pool, then the
    // database itself.
    state.shutdown().await;
    guard.shutdown().await?;
    tracing::info!("stopped");
    outcome
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}
