//! URL previews (`preview_url`): the page is fetched through the guarded outbound client
//! (`crate::net`: private and loopback addresses refused unless the operator allows them), within
//! a size and a time limit, its OpenGraph properties read ([`html`]), its image stored as media of
//! the user who asked, and the answer kept for an hour.

mod html;

use super::MediaRepo;
use super::upload::{Body, UploadMeta};
use crate::error::{Error, Result};
use crate::net::{OutboundClient, OutboundError};
use crate::store::Store;
use bytes::Bytes;
use futures_util::Stream;
use reqwest::{Method, Response, Url};
use ruma::{ServerName, UserId};
use serde_json::{Map, Value};
use std::time::{Duration, Instant};

/// The most of a page that is read; OpenGraph tags sit in its head.
const MAX_PAGE_BYTES: usize = 1024 * 1024;
/// The whole preview (page, redirects, image) must be done within this.
const PREVIEW_TIME: Duration = Duration::from_secs(15);
/// How many redirects are followed, each checked like the first request.
const MAX_REDIRECTS: usize = 3;
/// How long an answer is reused.
pub(crate) const PREVIEW_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Answers kept by the media repository (one per running server, so per database):
/// URL -> (when, answer).
pub(crate) type PreviewCache = quick_cache::sync::Cache<String, (Instant, Value)>;

fn fetch_error(error: OutboundError) -> Error {
    match error {
        // Synapse's answer to a blocked destination.
        OutboundError::Refused(what) => Error::forbidden(format!("Previews of this address are not allowed: {what}")),
        OutboundError::InvalidUrl(what) => Error::invalid_param(format!("Cannot preview this URL: {what}")),
        OutboundError::Transport(error) => Error::unknown(format!("Could not fetch the page: {error}")),
    }
}

/// GETs `url`, following at most [`MAX_REDIRECTS`] redirects through the same guard.
async fn get(outbound: &OutboundClient, url: &str) -> Result<(Url, Response)> {
    let mut url = Url::parse(url).map_err(|error| Error::invalid_param(format!("Cannot preview this URL: {error}")))?;
    for _ in 0..=MAX_REDIRECTS {
        let request = outbound.request(Method::GET, url.as_str()).map_err(fetch_error)?;
        let response = outbound.send(request).await.map_err(fetch_error)?;
        if !response.status().is_redirection() {
            if !response.status().is_success() {
                return Err(Error::unknown(format!("The page answered {}", response.status())));
            }
            return Ok((url, response));
        }
        let location = response.headers().get(reqwest::header::LOCATION).and_then(|value| value.to_str().ok());
        let location = location.ok_or_else(|| Error::unknown("The page redirects without a location"))?;
        url = url.join(location).map_err(|error| Error::unknown(format!("The page redirects badly: {error}")))?;
    }
    Err(Error::unknown("The page redirects too often"))
}

/// At most `limit` bytes of a response body.
async fn read_limited(mut response: Response, limit: usize) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Some(piece) =
        response.chunk().await.map_err(|error| Error::unknown(format!("Could not read the page: {error}")))?
    {
        let room = limit.saturating_sub(bytes.len());
        bytes.extend_from_slice(&piece[..piece.len().min(room)]);
        if bytes.len() >= limit {
            break;
        }
    }
    Ok(bytes)
}

/// A response body as the stream an upload reads.
fn body_stream(response: Response) -> impl Stream<Item = Result<Bytes, reqwest::Error>> + Unpin {
    Box::pin(futures_util::stream::try_unfold(response, |mut response| async move {
        Ok(response.chunk().await?.map(|piece| (piece, response)))
    }))
}

fn content_type_of(response: &Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Who asks for a preview, and the handles fetching it needs.
#[derive(Clone, Copy)]
pub struct Asker<'a> {
    pub pool: &'a Store,
    pub own_server: &'a ServerName,
    pub outbound: &'a OutboundClient,
    /// Owns the preview's image, as its uploader.
    pub user: &'a UserId,
}

impl MediaRepo {
    /// The preview of `url`: OpenGraph properties, with `og:image` as an mxc URI.
    pub async fn preview(&self, asker: Asker<'_>, url: &str) -> Result<Value> {
        if !self.config.url_previews {
            return Err(Error::forbidden("URL previews are disabled on this server"));
        }
        let key = url.to_owned();
        if let Some((made, answer)) = self.previews.get(&key)
            && made.elapsed() < PREVIEW_LIFETIME
        {
            return Ok(answer);
        }
        let answer = tokio::time::timeout(PREVIEW_TIME, self.make_preview(asker, url))
            .await
            .map_err(|_| Error::unknown("The page took too long to preview"))??;
        self.previews.insert(key, (Instant::now(), answer.clone()));
        Ok(answer)
    }

    async fn make_preview(&self, asker: Asker<'_>, url: &str) -> Result<Value> {
        let Asker { pool, own_server, outbound, user } = asker;
        let (page_url, response) = get(outbound, url).await?;
        let content_type = content_type_of(&response);
        let mut properties = Map::new();
        let image_url = if content_type.starts_with("image/") {
            // A link to an image previews as the image itself.
            Some((page_url.clone(), Some(response)))
        } else if content_type.starts_with("text/html") || content_type.starts_with("application/xhtml") {
            let page = read_limited(response, MAX_PAGE_BYTES).await?;
            properties = html::og_properties(&String::from_utf8_lossy(&page));
            let image = properties.get("og:image").and_then(Value::as_str).and_then(|image| page_url.join(image).ok());
            image.map(|image| (image, None))
        } else {
            return Err(Error::unknown(format!("Cannot preview content of type {content_type:?}")));
        };
        properties.remove("og:image");
        if let Some((image_url, fetched)) = image_url {
            let response = match fetched {
                Some(response) => Some(response),
                // A page whose image cannot be fetched still has a preview, without image.
                None => get(outbound, image_url.as_str()).await.ok().map(|(_, response)| response),
            };
            if let Some(response) = response {
                let meta = UploadMeta { content_type: Some(content_type_of(&response)), filename: None };
                let length = response.content_length().unwrap_or_default();
                let body = Body { stream: body_stream(response), pause: Duration::from_secs(10) };
                if let Ok(uri) = self.upload(pool, own_server, user, meta, body).await {
                    properties.insert("og:image".to_owned(), Value::String(uri.to_string()));
                    if length > 0 {
                        properties.insert("matrix:image:size".to_owned(), Value::from(length));
                    }
                }
            }
        }
        Ok(Value::Object(properties))
    }
}
