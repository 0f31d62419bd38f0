//! Asking a media's origin server for its bytes: the authenticated federation endpoint
//! (`GET /_matrix/federation/v1/media/download/{mediaId}`, signed), following a `Location`
//! answer through the guarded client; and, for servers that predate that endpoint, the
//! unauthenticated `GET /_matrix/media/v3/download/{origin}/{mediaId}?allow_remote=false`, as
//! Synapse falls back to. Nothing here buffers the file: the bytes come back as a stream.

use super::multipart::{self, Reader};
use crate::error::{Error, Result};
use crate::federation::client::{FederationClient, FederationError};
use crate::net::OutboundClient;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use ruma::ServerName;
use ruma::api::federation::authenticated_media::get_content;
use ruma::http_headers::ContentDisposition;
use std::str::FromStr;
use std::time::Duration;

/// What remote media fetching needs: the federation client, and the guarded client for
/// `Location` answers (which may point anywhere, so they get the SSRF guard).
#[derive(Clone)]
pub struct Remote {
    pub federation: FederationClient,
    pub outbound: OutboundClient,
}

/// A remote file on its way: what its server says about it, and its bytes.
pub struct Fetched {
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub body: BoxStream<'static, std::result::Result<Bytes, String>>,
}

impl Remote {
    /// Starts fetching `mxc://{origin}/{media_id}`; `wait` is how long the origin may wait for
    /// a pending upload before it answers.
    pub async fn fetch(&self, origin: &ServerName, media_id: &str, wait: Duration) -> Result<Fetched> {
        let mut request = get_content::v1::Request::new(media_id.to_owned());
        request.timeout_ms = wait;
        match self.federation.open(origin, request).await {
            Ok(response) => self.read_multipart(response).await,
            Err(error) if lacks_endpoint(&error) => self.fetch_legacy(origin, media_id, wait).await,
            Err(error) => Err(failure(error)),
        }
    }

    async fn read_multipart(&self, response: reqwest::Response) -> Result<Fetched> {
        let content_type = header(&response, http::header::CONTENT_TYPE).unwrap_or_default();
        let boundary = multipart::boundary(&content_type)
            .ok_or_else(|| invalid(format!("the answer is {content_type:?}, not multipart/mixed")))?;
        let mut reader = Reader::new(response.bytes_stream().boxed(), &boundary);
        let headers = reader.file_headers().await.map_err(invalid)?;
        if let Some(location) = headers.location {
            return self.fetch_location(&location).await;
        }
        Ok(Fetched {
            content_type: headers.content_type,
            filename: headers.content_disposition.as_deref().and_then(filename_of),
            body: reader.into_file(),
        })
    }

    /// The file is elsewhere (a CDN, typically): an unauthenticated GET through the guard.
    async fn fetch_location(&self, location: &str) -> Result<Fetched> {
        let request =
            self.outbound.request(reqwest::Method::GET, location).map_err(|error| invalid(error.to_string()))?;
        let response = self.outbound.send(request).await.map_err(|error| invalid(error.to_string()))?;
        if !response.status().is_success() {
            return Err(invalid(format!("{location} answered {}", response.status())));
        }
        Ok(plain(response))
    }

    async fn fetch_legacy(&self, origin: &ServerName, media_id: &str, wait: Duration) -> Result<Fetched> {
        let path = format!(
            "/_matrix/media/v3/download/{origin}/{media_id}?allow_remote=false&timeout_ms={}",
            wait.as_millis()
        );
        let response = self.federation.open_unsigned_get(origin, &path).await.map_err(failure)?;
        Ok(plain(response))
    }
}

/// A plain answer whose body is the file and whose headers describe it.
fn plain(response: reqwest::Response) -> Fetched {
    Fetched {
        content_type: header(&response, http::header::CONTENT_TYPE),
        filename: header(&response, http::header::CONTENT_DISPOSITION).as_deref().and_then(filename_of),
        body: response.bytes_stream().map_err(|error| error.to_string()).boxed(),
    }
}

fn header(response: &reqwest::Response, name: http::header::HeaderName) -> Option<String> {
    response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned)
}

fn filename_of(disposition: &str) -> Option<String> {
    ContentDisposition::from_str(disposition).ok().and_then(|disposition| disposition.filename)
}

/// Whether the origin does not know the authenticated federation endpoint (a server from
/// before spec v1.11): it answers `M_UNRECOGNIZED`, or a bare 404/405 that is not Matrix's.
fn lacks_endpoint(error: &FederationError) -> bool {
    match error {
        FederationError::Remote { status, errcode, .. } => {
            errcode == "M_UNRECOGNIZED" || (matches!(status.as_u16(), 404 | 405 | 501) && errcode == "M_UNKNOWN")
        }
        _ => false,
    }
}

/// What the client learns when the origin cannot give the media: media its server does not
/// have is not found (as for a missing local id); an upload the origin still waits for keeps
/// its own answer; a server that cannot be reached or fails is a bad gateway (502, as Synapse
/// answers). Never the client's mistake (no other 4xx), never a 500 of this server's.
fn failure(error: FederationError) -> Error {
    match &error {
        FederationError::Remote { errcode, .. } if errcode == "M_NOT_YET_UPLOADED" => {
            Error::new(ruma::api::error::ErrorKind::NotYetUploaded, "The media has not been uploaded to its server yet")
        }
        FederationError::Remote { errcode, status, .. } if errcode == "M_NOT_FOUND" || status.as_u16() == 404 => {
            Error::not_found("The media's server does not have it")
        }
        _ => Error::bad_gateway(format!("The media could not be fetched from its server: {error}")),
    }
}

fn invalid(message: impl std::fmt::Display) -> Error {
    Error::bad_gateway(format!("The media's server gave an unusable answer: {message}"))
}
