//! The media repository: uploads, downloads, thumbnails, and the hooks the admin API needs.
//!
//! Metadata lives in PostgreSQL (`db::media`), bytes in a [`storage::Storage`] backend. The
//! bytes of an upload are stored once per content (their SHA-256 names them), however many
//! media ids point at them; thumbnails belong to the content too.
//!
//! Media of other servers (`mxc://other.server/…`) is fetched over federation when first asked
//! for and kept like an upload, under the origin's name ([`remote`]); [`MediaRepo::locate`] is
//! the one place that decides whose media an mxc URI names.

pub(crate) mod admin;
pub mod animated;
pub(crate) mod download;
pub mod orphans;
pub(crate) mod preview;
pub(crate) mod remote;
pub(crate) mod storage;
pub(crate) mod thumbnail;
pub(crate) mod upload;

use crate::config::MediaConfig;
use ruma::ServerName;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use storage::Storage;

/// How long an id handed out by `create` waits for its upload (Synapse's default).
pub(crate) const UNUSED_ID_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// Shared handles of the media repository, held by `AppState`.
pub struct MediaRepo {
    storage: Arc<dyn Storage>,
    /// Where upload bodies are written while they arrive.
    staging: PathBuf,
    config: MediaConfig,
    /// Woken whenever a pending id receives its bytes, for downloads waiting on it.
    uploaded: tokio::sync::Notify,
    /// Bounds the images decoded at once (see [`thumbnail`]).
    renders: Arc<tokio::sync::Semaphore>,
    /// Recent URL previews (see [`preview`]).
    previews: preview::PreviewCache,
    /// Fetches other servers' media; `None` with federation off.
    remote: Option<remote::Remote>,
    /// Remote media being fetched now, so that concurrent first requests fetch once.
    fetching: remote::InFlight,
}

/// Whose media an mxc URI names.
pub enum Origin {
    Local,
    /// Another server's: fetched from it and kept (see [`remote`]).
    Remote,
}

impl MediaRepo {
    /// The repository; `remote` fetches other servers' media (without it, their media is
    /// not found).
    pub fn open(config: &MediaConfig, data_dir: &Path, remote: Option<remote::Remote>) -> anyhow::Result<MediaRepo> {
        let (storage, staging) = storage::open(config, data_dir)?;
        Ok(MediaRepo {
            storage,
            staging,
            config: config.clone(),
            uploaded: tokio::sync::Notify::new(),
            renders: Arc::new(tokio::sync::Semaphore::new(thumbnail::CONCURRENT_RENDERS)),
            previews: preview::PreviewCache::new(1000),
            remote,
            fetching: remote::InFlight::default(),
        })
    }

    pub fn max_upload_size(&self) -> u64 {
        self.config.max_upload_size
    }

    /// Decides whose media `server_name` names: the one place remote media branches off.
    pub fn locate(&self, own_server: &ServerName, server_name: &ServerName) -> Origin {
        if server_name == own_server { Origin::Local } else { Origin::Remote }
    }
}

/// Media ids this server hands out are 24 letters and digits; accepting a little more (what
/// other servers use: `-` and `_`) keeps lookups of remote ids possible later, and anything
/// else out of storage keys and logs.
pub(crate) fn is_valid_media_id(media_id: &str) -> bool {
    !media_id.is_empty()
        && media_id.len() <= 255
        && media_id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

fn new_media_id() -> String {
    use rand::Rng;
    rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(24).map(char::from).collect()
}
