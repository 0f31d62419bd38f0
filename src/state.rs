//! The handles a running Hearth process shares between everything it serves: configuration,
//! the database pool, the signing key, the room locks and the stream tracker. The edges (HTTP
//! today, XMPP later) hold an [`AppState`]; domain functions take only the handles they need.

use crate::config::Config;
use crate::signing_key::SigningKey;
use crate::store::Store;
use anyhow::anyhow;
use ruma::OwnedServerName;
use std::ops::Deref;
use std::sync::Arc;

/// Shared handles every request may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub server_name: OwnedServerName,
    /// The database, with this process's caches of it.
    pub pool: Store,
    /// Shared with the federation client and key ring, which sign with it.
    pub signing_key: Arc<SigningKey>,
    pub rate_limits: crate::ratelimit::RateLimits,
    pub room_locks: crate::rooms::send::RoomLocks,
    pub default_room_version: ruma::RoomVersionId,
    pub streams: Arc<crate::streams::Streams>,
    /// The guarded client for requests users can aim (push gateways).
    pub outbound: crate::net::OutboundClient,
    pub push_sender: crate::push::sender::PushSender,
    pub media: crate::media::MediaRepo,
    pub federation_sender: crate::federation::sender::FederationSender,
    /// Signed requests to other servers, found by the spec's discovery.
    pub federation: crate::federation::client::FederationClient,
    /// Other servers' signing keys (and ours).
    pub key_ring: crate::federation::key_ring::KeyRing,
    /// Rooms joined with a partial state, resynced in the background.
    pub partial_state: crate::federation::partial_state::PartialStateRooms,
    /// The operator's billing webhook for tips; `None` when tips are off.
    pub billing: Option<crate::creators::billing::BillingClient>,
    /// Broadcast deliveries in flight across the process (see `creators::broadcast::delivery`).
    pub broadcast_slots: tokio::sync::Semaphore,
    background: Background,
}

/// This process's periodic database work: stopped by [`AppState::shutdown`] before the pool
/// closes, so no task finds the pool closed under it.
struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Also registers this process as a stream writer and starts its notification listener.
    pub async fn new(config: Config, pool: sqlx::PgPool, signing_key: SigningKey) -> anyhow::Result<AppState> {
        let server_name = OwnedServerName::try_from(config.server_name.as_str())
            .map_err(|error| anyhow!("`server_name`: {error}"))?;
        let rate_limits = crate::ratelimit::RateLimits::new(&config.rate_limits);
        let default_room_version = ruma::RoomVersionId::try_from(config.rooms.default_version.as_str())
            .map_err(|error| anyhow!("`rooms.default_version`: {error}"))?;
        let pool = Store::new(pool);
        // The token cache is coherent across processes through the stream's listener.
        let subscriptions = vec![crate::users::token_cache::invalidations(&pool)];
        let streams = Arc::new(crate::streams::Streams::start(&pool, subscriptions).await?);
        let outbound = crate::net::OutboundClient::new(&config.network)?;
        let signing_key = Arc::new(signing_key);
        let federation =
            crate::federation::client::FederationClient::new(&config, server_name.clone(), signing_key.clone())?;
        // Other servers' media comes over federation, so only with federation on.
        let remote_media = config
            .federation
            .enabled
            .then(|| crate::media::remote::Remote { federation: federation.clone(), outbound: outbound.clone() });
        let media = crate::media::MediaRepo::open(&config.media, &config.data_dir, remote_media)?;
        let key_ring = crate::federation::key_ring::KeyRing::new(
            pool.clone(),
            server_name.clone(),
            signing_key.clone(),
            federation.clone(),
            &config.federation.trusted_key_servers,
        );
        // Keys we signed with before this one stay published as old keys.
        key_ring.record_own_key().await?;
        let billing = crate::creators::billing::BillingClient::from_config(&config.tips)?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let background = Background { stop, tasks: Default::default() };
        let state = AppState(Arc::new(Inner {
            background,
            streams,
            outbound,
            push_sender: Default::default(),
            media,
            federation_sender: Default::default(),
            federation,
            key_ring,
            partial_state: Default::default(),
            billing,
            // A quarter of the pool: broadcasts never crowd out other requests.
            broadcast_slots: tokio::sync::Semaphore::new((pool.options().get_max_connections() as usize / 4).max(1)),
            config,
            server_name,
            pool,
            signing_key,
            rate_limits,
            room_locks: Default::default(),
            default_room_version,
        }));
        // Notifications reach push gateways without any request.
        state.push_sender.start(state.pool.clone(), Arc::downgrade(&state.streams), state.outbound.clone());
        // Local events reach the other servers in their rooms without any request. With
        // federation off, whatever is queued (from when it was on) waits for it to be on again.
        if state.config.federation.enabled {
            state.federation_sender.start(state.pool.clone(), Arc::downgrade(&state.streams), state.federation.clone());
        }
        // Rooms joined with a partial state get their full state, also after a restart.
        if state.config.federation.enabled {
            let resyncing = state.clone();
            let stopped = stopped.clone();
            let resync = tokio::spawn(async move {
                crate::federation::partial_state::run(resyncing.fed(), stopped).await;
            });
            state.background_tasks().push(resync);
        }
        // Expired typing must reach other clients' syncs as a stop without any request.
        let sweeper = crate::rooms::typing::spawn_sweeper(
            state.pool.clone(),
            Arc::downgrade(&state.streams),
            state.server_name.clone(),
            stopped.clone(),
        );
        state.background_tasks().push(sweeper);
        // Bytes whose commit failed are deleted after a grace period, without any request.
        let media_sweeper =
            crate::media::orphans::spawn_sweeper(state.media.orphan_sweeper(), state.pool.clone(), stopped);
        state.background_tasks().push(media_sweeper);
        // Tips a crash or a silent webhook left unsettled are asked about again (same
        // idempotency key), and approved ones shown, without waiting for the client to retry.
        if state.billing.is_some() {
            let recovering = state.clone();
            let recovery = tokio::spawn(async move {
                if let Err(error) = crate::creators::tips::recover(recovering.tips()).await {
                    tracing::warn!(%error, "recovering unsettled tips failed");
                }
            });
            state.background_tasks().push(recovery);
        }
        // Broadcasts a stop or a crash interrupted go on where they were.
        for broadcast_id in crate::db::broadcast::running(&state.pool).await? {
            state.deliver_broadcast(broadcast_id);
        }
        Ok(state)
    }

    /// Delivers a broadcast in the background (nothing happens if it is being delivered
    /// already); stopping the server leaves its undelivered recipients for the next start.
    pub fn deliver_broadcast(&self, broadcast_id: String) {
        let state = self.clone();
        let stopped = self.background.stop.subscribe();
        let delivery = tokio::spawn(async move {
            let delivered = crate::creators::broadcast::delivery::deliver(state.broadcasts(), &broadcast_id, stopped);
            if let Err(error) = delivered.await {
                tracing::warn!(broadcast_id, %error, "delivering a broadcast stopped");
            }
        });
        let mut tasks = self.background_tasks();
        tasks.retain(|task| !task.is_finished());
        tasks.push(delivery);
    }

    /// What broadcasting needs.
    pub fn broadcasts(&self) -> crate::creators::broadcast::BroadcastCtx<'_> {
        crate::creators::broadcast::BroadcastCtx {
            fed: self.fed(),
            default_room_version: &self.default_room_version,
            slots: &self.broadcast_slots,
        }
    }

    fn background_tasks(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.background.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stops the process's periodic work (each task finishes what it is doing first), then
    /// closes the pool. Requests must have drained already.
    pub async fn shutdown(&self) {
        // Push deliveries and federation transactions in flight record their progress first.
        tokio::join!(self.push_sender.stop(), self.federation_sender.stop());
        let _ = self.background.stop.send(true);
        let tasks = std::mem::take(&mut *self.background_tasks());
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a background task failed while stopping");
            }
        }
        self.pool.close().await;
    }

    /// What federation operations need.
    pub fn fed(&self) -> crate::federation::FedCtx<'_> {
        crate::federation::FedCtx {
            rooms: self.rooms(),
            client: &self.federation,
            key_ring: &self.key_ring,
            partial: &self.partial_state,
        }
    }

    /// What tipping needs.
    pub fn tips(&self) -> crate::creators::tips::TipCtx<'_> {
        crate::creators::tips::TipCtx {
            rooms: self.rooms(),
            billing: self.billing.as_ref(),
            default_room_version: &self.default_room_version,
        }
    }

    /// What room operations need.
    pub fn rooms(&self) -> crate::rooms::RoomCtx<'_> {
        crate::rooms::RoomCtx {
            pool: &self.pool,
            server_name: &self.server_name,
            key: &self.signing_key,
            locks: &self.room_locks,
            streams: &self.streams,
        }
    }
}
