//! What the admin API (and the CLI) will call: who uploaded what and when, quarantine, and
//! deletion that takes the bytes and thumbnails with it once nothing else names them.

use super::MediaRepo;
use super::storage::{content_key, thumbnail_key};
use crate::db;
use crate::error::Result;
use crate::store::Store;
use crate::time::now_ms;
use ruma::{ServerName, UserId};

pub(crate) use db::media::Media;

impl MediaRepo {
    /// A user's uploads, newest first.
    pub async fn uploads_of(&self, pool: &Store, uploader: &UserId, limit: i64) -> Result<Vec<Media>> {
        Ok(db::media::list_by_uploader(pool, uploader.as_str(), limit).await?)
    }

    /// The record of one media id (uploader, time, size, quarantine…), if it exists.
    pub async fn describe(&self, pool: &Store, origin: &ServerName, media_id: &str) -> Result<Option<Media>> {
        Ok(db::media::get(pool, origin.as_str(), media_id).await?)
    }

    /// Quarantined media is served to nobody (it answers as missing); false if there is no
    /// such media.
    pub async fn set_quarantined(
        &self,
        pool: &Store,
        origin: &ServerName,
        media_id: &str,
        quarantined: bool,
    ) -> Result<bool> {
        Ok(db::media::set_quarantined(pool, origin.as_str(), media_id, quarantined).await?)
    }

    /// Deletes a media id; its bytes and thumbnails go too unless another media id names the
    /// same content. False if there was no such media.
    pub async fn delete(&self, pool: &Store, origin: &ServerName, media_id: &str) -> Result<bool> {
        let Some(media) = db::media::get(pool, origin.as_str(), media_id).await? else { return Ok(false) };
        let mut tx = pool.begin().await?;
        // Taken before the row goes, so an upload of the same bytes either commits before this
        // looks for other references or waits until the bytes are gone and stores them again.
        if let Some(sha256) = &media.sha256 {
            db::media::lock_content(&mut *tx, sha256).await?;
        }
        let Some(deleted) = db::media::delete(&mut *tx, origin.as_str(), media_id).await? else { return Ok(false) };
        if let Some(sha256) = &deleted.sha256
            && !db::media::content_referenced(&mut *tx, sha256).await?
        {
            for thumbnail in db::media::delete_thumbnails(&mut *tx, sha256).await? {
                let key =
                    thumbnail_key(sha256, thumbnail.requested_width, thumbnail.requested_height, &thumbnail.method);
                self.storage.delete(&key).await?;
            }
            self.storage.delete(&content_key(sha256)).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Forgets ids from `create` that were never uploaded to in time; returns how many.
    pub async fn expire_pending(&self, pool: &Store) -> Result<u64> {
        Ok(db::media::delete_expired_pending(pool, now_ms()).await?)
    }
}
