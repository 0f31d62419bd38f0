//! The sweep of orphaned bytes: bytes in storage that no row names. They are left when a
//! request stored its bytes and then failed to commit (the database went away, the process
//! died between the two), and when a staging file outlived its request in a crash. Every
//! [`SWEEP_INTERVAL`], whatever was last written more than [`GRACE`] ago and is named by no row
//! is deleted.
//!
//! The grace period keeps the sweep off a request that is between storing and committing; the
//! content's lock (`db::media::lock_content`, held by uploads from storing to commit and by
//! thumbnail making) makes the check and the deletion one step against those writers.

use super::MediaRepo;
use super::storage::{CONTENT_PREFIX, Storage, THUMBNAIL_PREFIX, thumbnail_key};
use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::time::now_ms;
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long stored bytes may go without a row before they count as orphaned: far longer than
/// any request takes between storing and committing.
pub const GRACE: Duration = Duration::from_secs(6 * 60 * 60);

/// How often the background sweep runs.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// The most keys of each kind looked at in one sweep (the next sweep takes the rest).
const KEYS_PER_SWEEP: usize = 10_000;

/// What a sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub contents: usize,
    pub thumbnails: usize,
    pub staging_files: usize,
}

/// The handles a sweep needs, owned so that it can run in a task of its own.
#[derive(Clone)]
pub struct OrphanSweeper {
    storage: Arc<dyn Storage>,
    staging: PathBuf,
}

impl MediaRepo {
    pub fn orphan_sweeper(&self) -> OrphanSweeper {
        OrphanSweeper { storage: self.storage.clone(), staging: self.staging.clone() }
    }
}

impl OrphanSweeper {
    /// Deletes the bytes no row names that were last written more than `grace` ago.
    pub async fn sweep(&self, pool: &Store, grace: Duration) -> Result<Swept> {
        let before_ms = now_ms().saturating_sub(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
        let mut swept = Swept::default();
        for key in self.storage.list_older(CONTENT_PREFIX, before_ms, KEYS_PER_SWEEP).await? {
            let Some(sha256) = key.strip_prefix(CONTENT_PREFIX) else { continue };
            if self.sweep_content(pool, sha256, &key).await? {
                swept.contents += 1;
            }
        }
        for key in self.storage.list_older(THUMBNAIL_PREFIX, before_ms, KEYS_PER_SWEEP).await? {
            if self.sweep_thumbnail(pool, &key).await? {
                swept.thumbnails += 1;
            }
        }
        swept.staging_files = self.sweep_staging(before_ms).await?;
        Ok(swept)
    }

    /// Deletes a content's bytes (and any thumbnails of it) if no media id names it.
    async fn sweep_content(&self, pool: &Store, sha256: &str, key: &str) -> Result<bool> {
        let mut tx = pool.begin().await?;
        db::media::lock_content(&mut *tx, sha256).await?;
        if db::media::content_referenced(&mut *tx, sha256).await? {
            return Ok(false);
        }
        for thumbnail in db::media::delete_thumbnails(&mut *tx, sha256).await? {
            let thumbnail_key =
                thumbnail_key(sha256, thumbnail.requested_width, thumbnail.requested_height, &thumbnail.method);
            self.storage.delete(&thumbnail_key).await?;
        }
        self.storage.delete(key).await?;
        tx.commit().await?;
        tracing::info!(%sha256, "deleted media bytes that no media id names");
        Ok(true)
    }

    /// Deletes a thumbnail's bytes if no thumbnail row names them (or they are not a
    /// thumbnail's at all: a write that never finished).
    async fn sweep_thumbnail(&self, pool: &Store, key: &str) -> Result<bool> {
        let parsed = parse_thumbnail_key(key);
        let mut tx = pool.begin().await?;
        if let Some((sha256, width, height, method)) = parsed {
            db::media::lock_content(&mut *tx, sha256).await?;
            if db::media::get_thumbnail(&mut *tx, sha256, width, height, method).await?.is_some() {
                return Ok(false);
            }
        }
        self.storage.delete(key).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes staging files older than the cutoff: a request that wrote them is long gone.
    async fn sweep_staging(&self, before_ms: i64) -> Result<usize> {
        let mut deleted = 0;
        let mut entries = match tokio::fs::read_dir(&self.staging).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(Error::internal(format!("list {}: {error}", self.staging.display()))),
        };
        while let Some(entry) = entries.next_entry().await.context("list the staging directory")? {
            let Ok(metadata) = entry.metadata().await else { continue };
            if metadata.is_file()
                && super::storage::modified_ms(&metadata).is_some_and(|modified| modified < before_ms)
                && tokio::fs::remove_file(entry.path()).await.is_ok()
            {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// `thumbnail/{sha256}/{width}x{height}-{method}` (see `storage::thumbnail_key`).
fn parse_thumbnail_key(key: &str) -> Option<(&str, i32, i32, &str)> {
    let (sha256, name) = key.strip_prefix(THUMBNAIL_PREFIX)?.split_once('/')?;
    let (size, method) = name.split_once('-')?;
    let (width, height) = size.split_once('x')?;
    Some((sha256, width.parse().ok()?, height.parse().ok()?, method))
}

/// Sweeps every [`SWEEP_INTERVAL`] until `stop`; the first sweep runs an interval after start.
pub fn spawn_sweeper(
    sweeper: OrphanSweeper,
    pool: Store,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_INTERVAL, SWEEP_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
            match sweeper.sweep(&pool, GRACE).await {
                Ok(swept) if swept != Swept::default() => tracing::info!(?swept, "swept orphaned media bytes"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "sweeping orphaned media bytes"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_thumbnail_key;

    #[test]
    fn thumbnail_keys_parse_back() {
        let key = super::thumbnail_key("abc", 320, 240, "scale");
        assert_eq!(parse_thumbnail_key(&key), Some(("abc", 320, 240, "scale")));
        assert_eq!(
            parse_thumbnail_key("thumbnail/abc/32x32-crop.partial-0f"),
            Some(("abc", 32, 32, "crop.partial-0f"))
        );
        assert_eq!(parse_thumbnail_key("thumbnail/abc/junk"), None);
    }
}
