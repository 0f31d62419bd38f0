//! The deprecated media endpoints (`/_matrix/media/v3/...`), still served: older clients and
//! bridges use them. Downloads and thumbnails here follow the spec's freeze (see
//! [`crate::media::download`]).
#![allow(deprecated)] // ruma marks these endpoints deprecated, as the spec does

use super::download::{Download, ThumbnailRequest, previews_unavailable, serve, serve_thumbnail, upload_size};
use crate::error::Result;
use crate::http::ruma::{Authed, Ruma, RumaResponse};
use crate::media::download::Access;
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use ruma::api::client::media;

pub async fn legacy_download(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Ruma<media::get_content::v3::Request>,
) -> Result<Response> {
    let body = &request.body;
    let download = Download {
        server_name: &body.server_name,
        media_id: &body.media_id,
        filename: None,
        access: Access::Legacy,
        timeout: body.timeout_ms,
    };
    serve(&state, &headers, download).await
}

pub async fn legacy_download_as(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Ruma<media::get_content_as_filename::v3::Request>,
) -> Result<Response> {
    let body = &request.body;
    let download = Download {
        server_name: &body.server_name,
        media_id: &body.media_id,
        filename: Some(&body.filename),
        access: Access::Legacy,
        timeout: body.timeout_ms,
    };
    serve(&state, &headers, download).await
}

pub async fn legacy_thumbnail(
    State(state): State<AppState>,
    request: Ruma<media::get_content_thumbnail::v3::Request>,
) -> Result<Response> {
    let body = &request.body;
    let thumbnail = ThumbnailRequest {
        server_name: &body.server_name,
        media_id: &body.media_id,
        method: body.method.as_ref(),
        width: body.width,
        height: body.height,
        access: Access::Legacy,
        timeout: body.timeout_ms,
    };
    serve_thumbnail(&state, thumbnail).await
}

pub async fn legacy_config(
    State(state): State<AppState>,
    _request: Authed<media::get_media_config::v3::Request>,
) -> RumaResponse<media::get_media_config::v3::Response> {
    RumaResponse(media::get_media_config::v3::Response::new(upload_size(&state)))
}

pub async fn legacy_preview(
    State(state): State<AppState>,
    _request: Authed<media::get_media_preview::v3::Request>,
) -> Result<RumaResponse<media::get_media_preview::v3::Response>> {
    Err(previews_unavailable(&state))
}
