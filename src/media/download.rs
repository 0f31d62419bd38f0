//! Finding media to serve: through the authenticated endpoints, or through the deprecated
//! unauthenticated ones under the spec's freeze (v1.11: media uploaded after the freeze is not
//! served there; `media.legacy_unauthenticated` decides what "after" means, as Synapse's
//! `enable_authenticated_media` does).

use super::storage::{ByteStream, content_key};
use super::{MediaRepo, Origin};
use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::time::now_ms;
use ruma::ServerName;
use ruma::api::error::ErrorKind;
use std::ops::Range;
use std::time::Duration;

/// The longest a download waits for a pending id's upload, whatever the client asks.
pub(crate) const MAX_UPLOAD_WAIT: Duration = Duration::from_secs(120);

/// Which door a request came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `/_matrix/client/v1/media/...` with an access token.
    Authenticated,
    /// `/_matrix/media/v3/download|thumbnail/...`, without one.
    Legacy,
}

/// Which media a request names, through which door, and how long it will wait for a pending
/// id's upload.
#[derive(Clone, Copy, Debug)]
pub struct Lookup<'a> {
    pub server_name: &'a ServerName,
    pub media_id: &'a str,
    pub access: Access,
    pub wait: Duration,
}

impl<'a> Lookup<'a> {
    pub fn new(server_name: &'a ServerName, media_id: &'a str, access: Access, wait: Duration) -> Self {
        Lookup { server_name, media_id, access, wait }
    }
}

/// Uploaded media, ready to be served.
#[derive(Clone, Debug)]
pub struct Found {
    pub media_id: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: u64,
    pub sha256: String,
}

/// The media a row names, if it has its bytes and may be served through `access`; a
/// quarantined one, or one the spec's freeze keeps from the legacy endpoints, is not found.
pub(super) fn servable(media: db::media::Media, access: Access) -> Result<Option<Found>> {
    if media.quarantined || (access == Access::Legacy && media.authenticated_only) {
        return Err(Error::not_found("No such media"));
    }
    Ok(match (media.sha256, media.size) {
        (Some(sha256), Some(size)) => Some(Found {
            media_id: media.media_id,
            content_type: media.content_type,
            filename: media.filename,
            size: u64::try_from(size).unwrap_or_default(),
            sha256,
        }),
        _ => None,
    })
}

impl MediaRepo {
    /// The media `mxc://{server_name}/{media_id}`, waiting up to `wait` for a pending id's
    /// bytes (spec: 504 `M_NOT_YET_UPLOADED` when they do not come in time).
    pub async fn find(&self, pool: &Store, own_server: &ServerName, lookup: Lookup<'_>) -> Result<Found> {
        if !super::is_valid_media_id(lookup.media_id) {
            return Err(Error::not_found("No such media"));
        }
        match self.locate(own_server, lookup.server_name) {
            Origin::Local => self.find_local(pool, own_server, lookup).await,
            Origin::Remote => self.find_remote(pool, lookup).await,
        }
    }

    /// This server's media, waiting for a pending id's bytes.
    async fn find_local(&self, pool: &Store, own_server: &ServerName, lookup: Lookup<'_>) -> Result<Found> {
        let Lookup { media_id, access, wait, .. } = lookup;
        let missing = || Error::not_found("No such media");
        let deadline = tokio::time::Instant::now() + wait.min(MAX_UPLOAD_WAIT);
        loop {
            // Registered before the check, so an upload finishing in between still wakes it.
            let uploaded = self.uploaded.notified();
            tokio::pin!(uploaded);
            uploaded.as_mut().enable();

            let media = db::media::get(pool, own_server.as_str(), media_id).await?.ok_or_else(missing)?;
            let unused_expires_at = media.unused_expires_at;
            if let Some(found) = servable(media, access)? {
                return Ok(found);
            }
            if unused_expires_at.is_none_or(|expires| expires <= now_ms()) {
                return Err(missing());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(ErrorKind::NotYetUploaded, "The media has not been uploaded yet"));
            }
            // Another process may finish the upload; look again now and then as well.
            let recheck = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
            tokio::select! {
                () = uploaded => {}
                () = tokio::time::sleep_until(recheck) => {}
            }
        }
    }

    /// Reads the bytes of `found` (or the bytes `range` of them).
    pub async fn read(&self, found: &Found, range: Option<Range<u64>>) -> Result<ByteStream> {
        self.storage
            .get(&content_key(&found.sha256), range)
            .await?
            .ok_or_else(|| Error::internal(format!("the bytes of media {} are missing from storage", found.media_id)))
    }
}
