//! The deprecated media endpoints (`/_matrix/media/v3/...`), still served: older clients and
//! bridges use them. Downloads and thumbnails here follow the spec's freeze (see
//! [`crate::media::download`]).
#![allow(deprecated)] // ruma marks these endpoints deprecated, as the spec does

use super::download::{preview_of, serve, serve_thumbnail, thumbnail_size, upload_size};
use crate::error::Result;
use crate::http::ruma::{Authed, Ruma, RumaResponse};
use crate::media::download::{Access, Lookup};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use ruma::api::client::media;

/// `GET /_matrix/media/v3/download/{serverName}/{mediaId}` (deprecated, unauthenticated).
pub(super) async fn legacy_download(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Ruma<media::get_content::v3::Request>,
) -> Result<Response> {
    let body = &request.body;
    let lookup = Lookup::new(&body.server_name, &body.media_id, Access::Legacy, body.timeout_ms);
    serve(&state, &headers, lookup, None).await
}

/// `GET /_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}` (deprecated).
pub(super) async fn legacy_download_as(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Ruma<media::get_content_as_filename::v3::Request>,
) -> Result<Response> {
    let body = &request.body;
    let lookup = Lookup::new(&body.server_name, &body.media_id, Access::Legacy, body.timeout_ms);
    serve(&state, &headers, lookup, Some(&body.filename)).await
}

/// `GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}` (deprecated, unauthenticated).
pub(super) async fn legacy_thumbnail(
    State(state): State<AppState>,
    request: Ruma<media::get_content_thumbnail::v3::Request>,
) -> Result<Response> {
    let body = &request.body;
    let lookup = Lookup::new(&body.server_name, &body.media_id, Access::Legacy, body.timeout_ms);
    let size = thumbnail_size(body.method.as_ref(), body.width, body.height, body.animated)?;
    serve_thumbnail(&state, lookup, size).await
}

/// `GET /_matrix/media/v3/config` (deprecated).
pub(super) async fn legacy_config(
    State(state): State<AppState>,
    _request: Authed<media::get_media_config::v3::Request>,
) -> RumaResponse<media::get_media_config::v3::Response> {
    RumaResponse(media::get_media_config::v3::Response::new(upload_size(&state)))
}

/// `GET /_matrix/media/v3/preview_url` (deprecated).
pub(super) async fn legacy_preview(
    State(state): State<AppState>,
    request: Authed<media::get_media_preview::v3::Request>,
) -> Result<RumaResponse<media::get_media_preview::v3::Response>> {
    let preview = preview_of(&state, &request.session.user_id, &request.body.url).await?;
    let response = media::get_media_preview::v3::Response::from_serialize(&preview)
        .map_err(|error| crate::error::Error::internal(format!("preview JSON: {error}")))?;
    Ok(RumaResponse(response))
}
