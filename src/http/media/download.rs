//! Download, thumbnail, config and preview handlers, authenticated and legacy.

use super::range::{self, Ranged};
use super::respond::{Served, media_response};
use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaResponse};
use crate::media::download::Access;
use crate::media::thumbnail::{Fit, Size};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use ruma::api::client::authenticated_media;
use ruma::media::Method;
use ruma::{ServerName, UInt};
use std::time::Duration;

/// One download, whichever endpoint it came through.
pub(super) struct Download<'a> {
    pub(super) server_name: &'a ServerName,
    pub(super) media_id: &'a str,
    /// The file name the path asks the answer to carry, over the uploaded one.
    pub(super) filename: Option<&'a str>,
    pub(super) access: Access,
    pub(super) timeout: Duration,
}

pub(super) async fn serve(state: &AppState, headers: &HeaderMap, download: Download<'_>) -> Result<Response> {
    let found = state
        .media
        .find(
            &state.pool,
            &state.server_name,
            download.server_name,
            download.media_id,
            download.access,
            download.timeout,
        )
        .await?;
    let filename = download.filename.or(found.filename.as_deref());
    let requested = headers.get(http::header::RANGE).and_then(|value| value.to_str().ok());
    let mut served = Served {
        status: StatusCode::OK,
        content_type: found.content_type.as_deref(),
        filename,
        length: found.size,
        content_range: None,
    };
    match range::parse(requested, found.size) {
        Ranged::Whole => {
            let body = state.media.read(&found, None).await?;
            Ok(media_response(served, Some(body)))
        }
        Ranged::Part(part) => {
            served.status = StatusCode::PARTIAL_CONTENT;
            served.length = part.end - part.start;
            served.content_range = Some(format!("bytes {}-{}/{}", part.start, part.end.saturating_sub(1), found.size));
            let body = state.media.read(&found, Some(part)).await?;
            Ok(media_response(served, Some(body)))
        }
        Ranged::Unsatisfiable => {
            served.status = StatusCode::RANGE_NOT_SATISFIABLE;
            served.length = 0;
            served.content_range = Some(format!("bytes */{}", found.size));
            Ok(media_response(served, None))
        }
    }
}

/// One thumbnail request, whichever endpoint it came through.
pub(super) struct ThumbnailRequest<'a> {
    pub(super) server_name: &'a ServerName,
    pub(super) media_id: &'a str,
    pub(super) method: Option<&'a Method>,
    pub(super) width: UInt,
    pub(super) height: UInt,
    pub(super) access: Access,
    pub(super) timeout: Duration,
}

pub(super) async fn serve_thumbnail(state: &AppState, request: ThumbnailRequest<'_>) -> Result<Response> {
    let fit = match request.method {
        // The spec's default is `scale`.
        None | Some(Method::Scale) => Fit::Scale,
        Some(Method::Crop) => Fit::Crop,
        Some(other) => return Err(Error::invalid_param(format!("Unknown thumbnail method {:?}", other.as_str()))),
    };
    let side = |value: UInt| u32::try_from(u64::from(value)).unwrap_or(u32::MAX);
    let size = Size { width: side(request.width), height: side(request.height), fit };
    let (thumbnail, body) = state
        .media
        .thumbnail(
            &state.pool,
            &state.server_name,
            request.server_name,
            request.media_id,
            request.access,
            size,
            request.timeout,
        )
        .await?;
    let served = Served {
        status: StatusCode::OK,
        content_type: Some(&thumbnail.content_type),
        filename: None,
        length: u64::try_from(thumbnail.size).unwrap_or_default(),
        content_range: None,
    };
    Ok(media_response(served, Some(body)))
}

pub async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Authed<authenticated_media::get_content::v1::Request>,
) -> Result<Response> {
    let body = &request.body;
    let download = Download {
        server_name: &body.server_name,
        media_id: &body.media_id,
        filename: None,
        access: Access::Authenticated,
        timeout: body.timeout_ms,
    };
    serve(&state, &headers, download).await
}

pub async fn download_as(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Authed<authenticated_media::get_content_as_filename::v1::Request>,
) -> Result<Response> {
    let body = &request.body;
    let download = Download {
        server_name: &body.server_name,
        media_id: &body.media_id,
        filename: Some(&body.filename),
        access: Access::Authenticated,
        timeout: body.timeout_ms,
    };
    serve(&state, &headers, download).await
}

pub async fn thumbnail(
    State(state): State<AppState>,
    request: Authed<authenticated_media::get_content_thumbnail::v1::Request>,
) -> Result<Response> {
    let body = &request.body;
    let thumbnail = ThumbnailRequest {
        server_name: &body.server_name,
        media_id: &body.media_id,
        method: body.method.as_ref(),
        width: body.width,
        height: body.height,
        access: Access::Authenticated,
        timeout: body.timeout_ms,
    };
    serve_thumbnail(&state, thumbnail).await
}

pub(super) fn upload_size(state: &AppState) -> UInt {
    UInt::new(state.media.max_upload_size()).unwrap_or(UInt::MAX)
}

pub async fn config(
    State(state): State<AppState>,
    _request: Authed<authenticated_media::get_media_config::v1::Request>,
) -> RumaResponse<authenticated_media::get_media_config::v1::Response> {
    RumaResponse(authenticated_media::get_media_config::v1::Response::new(upload_size(&state)))
}

/// URL previews are off unless `media.url_previews` is set (as in Synapse); fetching them is
/// not built yet, so the answer is the same either way.
pub(super) fn previews_unavailable(state: &AppState) -> Error {
    if state.media.url_previews_enabled() {
        Error::unknown("URL previews are not available on this server yet")
    } else {
        Error::forbidden("URL previews are disabled on this server")
    }
}

pub async fn preview(
    State(state): State<AppState>,
    _request: Authed<authenticated_media::get_media_preview::v1::Request>,
) -> Result<RumaResponse<authenticated_media::get_media_preview::v1::Response>> {
    Err(previews_unavailable(&state))
}
