//! Uploads: in one request (`POST /upload`), or in two (`POST /create` hands out an id, a later
//! `PUT /upload/{server}/{id}` fills it). The body is streamed to a staging file while it is
//! hashed and counted, then stored under its hash: never whole in memory, stored once however
//! often it is uploaded.

use super::storage::content_key;
use super::{MediaRepo, UNUSED_ID_LIFETIME, new_media_id, thumbnail};
use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::time::now_ms;
use anyhow::Context;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use ruma::api::error::ErrorKind;
use ruma::{OwnedMxcUri, ServerName, UserId};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// What the uploader said about the bytes.
#[derive(Clone, Debug, Default)]
pub struct UploadMeta {
    pub content_type: Option<String>,
    pub filename: Option<String>,
}

/// How a body arrives: pieces, and the longest pause allowed between two of them.
pub struct Body<S> {
    pub stream: S,
    pub pause: Duration,
}

/// A fully received upload in the staging directory; removed when dropped unless stored.
pub(super) struct Staged {
    path: PathBuf,
    sha256: String,
    size: u64,
}

impl Staged {
    pub(super) fn size(&self) -> u64 {
        self.size
    }

    pub(super) fn content<'a>(&'a self, meta: &'a UploadMeta) -> db::media::Content<'a> {
        db::media::Content {
            sha256: &self.sha256,
            size: i64::try_from(self.size).unwrap_or(i64::MAX),
            content_type: meta.content_type.as_deref(),
            filename: meta.filename.as_deref(),
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // After a successful store the file has been moved away and this finds nothing.
        let _ = std::fs::remove_file(&self.path);
    }
}

pub(super) fn check_meta(meta: &UploadMeta) -> Result<()> {
    for (name, value) in [("filename", &meta.filename), ("Content-Type", &meta.content_type)] {
        if let Some(value) = value {
            if value.contains('\0') {
                return Err(Error::invalid_param(format!("The {name} may not contain U+0000")));
            }
            if value.len() > 1024 {
                return Err(Error::invalid_param(format!("The {name} may be at most 1024 bytes")));
            }
        }
    }
    Ok(())
}

impl MediaRepo {
    /// `POST /_matrix/media/v3/upload`: stores the body as new media of `uploader`'s.
    pub async fn upload<S, E>(
        &self,
        pool: &Store,
        own_server: &ServerName,
        uploader: &UserId,
        meta: UploadMeta,
        body: Body<S>,
    ) -> Result<OwnedMxcUri>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        check_meta(&meta)?;
        let staged = self.stage(body).await?;
        let media_id = new_media_id();
        let content = staged.content(&meta);
        let mut tx = pool.begin().await?;
        self.store(&mut tx, &staged).await?;
        db::media::insert_uploaded(
            &mut *tx,
            own_server.as_str(),
            &media_id,
            uploader.as_str(),
            &content,
            !self.config.legacy_unauthenticated,
            now_ms(),
        )
        .await?;
        tx.commit().await?;
        self.after_upload(pool, &staged, meta.content_type.as_deref());
        Ok(OwnedMxcUri::from(format!("mxc://{own_server}/{media_id}")))
    }

    /// `POST /_matrix/media/v1/create`: a media id for a later upload, and when it expires.
    pub async fn create_pending(
        &self,
        pool: &Store,
        own_server: &ServerName,
        uploader: &UserId,
    ) -> Result<(OwnedMxcUri, i64)> {
        let now = now_ms();
        // Ids never uploaded to in time are forgotten here, where new ones are handed out.
        db::media::delete_expired_pending(pool, now).await?;
        let pending = db::media::count_pending(pool, uploader.as_str(), now).await?;
        if pending >= i64::from(self.config.max_pending_uploads) {
            // The spec's answer to too many pending ids: 429 M_LIMIT_EXCEEDED.
            return Err(Error::new(
                ErrorKind::LimitExceeded(Default::default()),
                "Too many media ids are waiting for their upload; upload to them first",
            ));
        }
        let media_id = new_media_id();
        let lifetime = i64::try_from(UNUSED_ID_LIFETIME.as_millis()).unwrap_or(i64::MAX);
        let expires_at = now.saturating_add(lifetime);
        db::media::insert_pending(
            pool,
            own_server.as_str(),
            &media_id,
            uploader.as_str(),
            now,
            expires_at,
            !self.config.legacy_unauthenticated,
        )
        .await?;
        Ok((OwnedMxcUri::from(format!("mxc://{own_server}/{media_id}")), expires_at))
    }

    /// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`: the bytes of an id from `create`.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_pending<S, E>(
        &self,
        pool: &Store,
        own_server: &ServerName,
        server_name: &ServerName,
        media_id: &str,
        uploader: &UserId,
        meta: UploadMeta,
        body: Body<S>,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        check_meta(&meta)?;
        let unknown = || Error::not_found("No such media id, or it has expired");
        if server_name != own_server || !super::is_valid_media_id(media_id) {
            return Err(unknown());
        }
        // Checked before the body is read, so a refused upload costs no transfer.
        let pending = db::media::get(pool, own_server.as_str(), media_id).await?.ok_or_else(unknown)?;
        check_pending_upload(&pending, uploader)?;

        let staged = self.stage(body).await?;
        let content = staged.content(&meta);
        let mut tx = pool.begin().await?;
        self.store(&mut tx, &staged).await?;
        if !db::media::fill_pending(&mut *tx, own_server.as_str(), media_id, &content, now_ms()).await? {
            // Uploaded (or expired) while this body arrived: say which.
            drop(tx);
            let now = db::media::get(pool, own_server.as_str(), media_id).await?.ok_or_else(unknown)?;
            check_pending_upload(&now, uploader)?;
            return Err(unknown());
        }
        tx.commit().await?;
        self.uploaded.notify_waiters();
        self.after_upload(pool, &staged, meta.content_type.as_deref());
        Ok(())
    }

    /// Puts staged bytes into storage under their hash, holding the content's lock for the rest
    /// of `tx` (so a deletion of the same content cannot remove them before `tx` names them).
    pub(super) async fn store(&self, tx: &mut sqlx::PgTransaction<'_>, staged: &Staged) -> Result<()> {
        db::media::lock_content(&mut **tx, &staged.sha256).await?;
        self.storage.put_file(&content_key(&staged.sha256), &staged.path).await
    }

    /// Thumbnails of the spec's recommended sizes, made in the background for images.
    pub(super) fn after_upload(&self, pool: &Store, staged: &Staged, content_type: Option<&str>) {
        if let Some(content_type) = content_type.filter(|content_type| thumbnail::can_thumbnail(content_type)) {
            thumbnail::spawn_pregeneration(
                self.storage.clone(),
                self.renders.clone(),
                pool.clone(),
                staged.sha256.clone(),
                content_type.to_owned(),
                staged.size,
            );
        }
    }

    /// Streams `body` into a staging file, hashing and counting it, within `max_upload_size`.
    pub(super) async fn stage<S, E>(&self, mut body: Body<S>) -> Result<Staged>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let limit = self.config.max_upload_size;
        let path = self.staging.join(uuid::Uuid::new_v4().simple().to_string());
        let mut staged = Staged { path, sha256: String::new(), size: 0 };
        let file = tokio::fs::File::create(&staged.path).await.context("create a staging file")?;
        let mut file = tokio::io::BufWriter::with_capacity(256 * 1024, file);
        let mut hasher = Sha256::new();
        loop {
            let piece = match tokio::time::timeout(body.pause, body.stream.next()).await {
                Err(_) => {
                    return Err(Error::unknown(format!("The request body paused for more than {:?}", body.pause)));
                }
                Ok(None) => break,
                Ok(Some(Err(error))) => {
                    return Err(Error::unknown(format!("Could not read the request body: {error}")));
                }
                Ok(Some(Ok(piece))) => piece,
            };
            staged.size += piece.len() as u64;
            if staged.size > limit {
                return Err(too_large(limit));
            }
            hasher.update(&piece);
            file.write_all(&piece).await.context("write a staging file")?;
        }
        file.flush().await.context("write a staging file")?;
        file.into_inner().sync_all().await.context("sync a staging file")?;
        staged.sha256 = hex::encode(hasher.finalize());
        Ok(staged)
    }
}

/// The answer to an upload over `media.max_upload_size`.
pub(crate) fn too_large(limit: u64) -> Error {
    Error::too_large(format!("Uploads may be at most {limit} bytes"))
}

/// Whether `uploader` may upload to this id now (spec: 403 for another user's id, 409 for an
/// id that has its bytes already, and an expired id is gone).
fn check_pending_upload(media: &db::media::Media, uploader: &UserId) -> Result<()> {
    if media.uploader != uploader.as_str() {
        return Err(Error::forbidden("This media id belongs to another user"));
    }
    if media.uploaded_at.is_some() {
        return Err(Error::new(ErrorKind::CannotOverwriteMedia, "This media id has its content already"));
    }
    if media.unused_expires_at.is_none_or(|expires| expires <= now_ms()) {
        return Err(Error::not_found("No such media id, or it has expired"));
    }
    Ok(())
}
