//! Other servers' media: `mxc://other.server/{id}` is fetched from `other.server` when first
//! asked for ([`fetch`]), streamed into storage like an upload (hashed, within
//! `max_upload_size`, stored once per content) and recorded under the origin's name, so every
//! later request, thumbnails included, is served from here. Concurrent first requests for the
//! same media in this process wait for one fetch ([`InFlight`]); across processes a second
//! fetch is harmless (the bytes land under the same hash, the row is inserted once).

mod fetch;
pub(crate) mod multipart;

pub(crate) use fetch::{Fetched, Remote};

use super::MediaRepo;
use super::download::{Access, Found, Lookup, servable};
use super::upload::{Body, UploadMeta, check_meta};
use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::time::now_ms;
use ruma::api::error::ErrorKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest pause allowed between two pieces of a remote file.
const REMOTE_PAUSE: Duration = Duration::from_secs(30);

/// A remote media: its origin and media id.
type RemoteKey = (String, String);

/// The lock that requests for one remote media queue on while it is fetched.
type Gate = Arc<tokio::sync::Mutex<()>>;

/// The remote media being fetched now, each with its gate.
#[derive(Default)]
pub(crate) struct InFlight(Mutex<HashMap<RemoteKey, Gate>>);

impl InFlight {
    fn gate(&self, key: &RemoteKey) -> Gate {
        self.map().entry(key.clone()).or_default().clone()
    }

    /// Forgets a finished fetch; whoever still waits on its gate finds the media recorded.
    fn release(&self, key: &RemoteKey) {
        self.map().remove(key);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<RemoteKey, Gate>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Removes a gate from [`InFlight`] when dropped.
struct Release<'a> {
    in_flight: &'a InFlight,
    key: RemoteKey,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.in_flight.release(&self.key);
    }
}

impl MediaRepo {
    /// Another server's media: from here if it was fetched before, else fetched now.
    pub(super) async fn find_remote(&self, pool: &Store, lookup: Lookup<'_>) -> Result<Found> {
        if let Some(found) = cached(pool, lookup).await? {
            return Ok(found);
        }
        let Some(remote) = &self.remote else {
            return Err(Error::not_found("Media of other servers is not available here (federation is off)"));
        };
        // Under the spec's freeze, media cached from now on is for the authenticated
        // endpoints only; fetching it for a legacy request would serve nothing.
        if lookup.access == Access::Legacy && !self.config.legacy_unauthenticated {
            return Err(Error::not_found("No such media"));
        }
        let key = (lookup.server_name.to_string(), lookup.media_id.to_owned());
        let gate = self.fetching.gate(&key);
        // Forgets the gate however this ends, a client hanging up mid-fetch included.
        let _release = Release { in_flight: &self.fetching, key };
        let _turn = gate.lock().await;
        // Whoever held the gate before may have fetched it.
        if let Some(found) = cached(pool, lookup).await? {
            return Ok(found);
        }
        self.fetch_and_keep(pool, remote, lookup).await
    }

    async fn fetch_and_keep(&self, pool: &Store, remote: &Remote, lookup: Lookup<'_>) -> Result<Found> {
        let Fetched { content_type, filename, body } =
            remote.fetch(lookup.server_name, lookup.media_id, lookup.wait).await?;
        // What the other server says about its file is kept only if it is sane.
        let meta = UploadMeta { content_type, filename };
        let meta = if check_meta(&meta).is_ok() { meta } else { UploadMeta::default() };
        let staged = self.stage(Body { stream: body, pause: REMOTE_PAUSE }).await.map_err(transfer_failure)?;
        let content = staged.content(&meta);
        let origin = lookup.server_name.as_str();
        let mut tx = pool.begin().await?;
        self.store(&mut tx, &staged).await?;
        db::media::insert_remote(
            &mut *tx,
            origin,
            lookup.media_id,
            &content,
            !self.config.legacy_unauthenticated,
            now_ms(),
        )
        .await?;
        tx.commit().await?;
        tracing::debug!(%origin, media_id = lookup.media_id, size = staged.size(), "remote media cached");
        self.after_upload(pool, &staged, meta.content_type.as_deref());
        cached(pool, lookup).await?.ok_or_else(|| Error::not_found("No such media"))
    }
}

/// A remote file that broke off or stalled is media that could not be had (not found, as in
/// [`fetch`]); one over the size limit stays `M_TOO_LARGE`, and this server's own failures
/// (its disk) stay its own.
fn transfer_failure(error: Error) -> Error {
    match error {
        Error::Matrix { kind: ErrorKind::Unknown, message } => {
            Error::not_found(format!("The media could not be fetched from its server: {message}"))
        }
        other => other,
    }
}

/// The remote media as recorded here, if it was fetched before.
async fn cached(pool: &Store, lookup: Lookup<'_>) -> Result<Option<Found>> {
    match db::media::get(pool, lookup.server_name.as_str(), lookup.media_id).await? {
        Some(media) => servable(media, lookup.access),
        None => Ok(None),
    }
}
