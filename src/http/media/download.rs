//! Download, thumbnail, config and preview handlers, authenticated and legacy.

use super::range::{self, Ranged};
use super::respond::{Served, media_response};
use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaResponse};
use crate::media::download::{Access, Lookup};
use crate::media::preview::Asker;
use crate::media::thumbnail::{Fit, Size};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use ruma::UInt;
use ruma::api::client::authenticated_media;
use ruma::media::Method;

/// Serves a download; `filename` is the name the path asks the answer to carry, over the
/// uploaded one.
pub(super) async fn serve(
    state: &AppState,
    headers: &HeaderMap,
    lookup: Lookup<'_>,
    filename: Option<&str>,
) -> Result<Response> {
    let found = state.media.find(&state.pool, &state.server_name, lookup).await?;
    let filename = filename.or(found.filename.as_deref());
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

/// The thumbnail size a request asks for: `width` × `height` by `method` (the spec's default:
/// `scale`), animated only when asked (`animated=true`; absent means still, spec v1.11).
pub(crate) fn thumbnail_size(
    method: Option<&Method>,
    width: UInt,
    height: UInt,
    animated: Option<bool>,
) -> Result<Size> {
    let fit = match method {
        None | Some(Method::Scale) => Fit::Scale,
        Some(Method::Crop) => Fit::Crop,
        Some(other) => return Err(Error::invalid_param(format!("Unknown thumbnail method {:?}", other.as_str()))),
    };
    let side = |value: UInt| u32::try_from(u64::from(value)).unwrap_or(u32::MAX);
    Ok(Size { width: side(width), height: side(height), fit, animated: animated == Some(true) })
}

/// Serves a thumbnail of `size`.
pub(super) async fn serve_thumbnail(state: &AppState, lookup: Lookup<'_>, size: Size) -> Result<Response> {
    let (thumbnail, body) = state.media.thumbnail(&state.pool, &state.server_name, lookup, size).await?;
    let served = Served {
        status: StatusCode::OK,
        content_type: Some(&thumbnail.content_type),
        filename: None,
        length: u64::try_from(thumbnail.size).unwrap_or_default(),
        content_range: None,
    };
    Ok(media_response(served, Some(body)))
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}`: the bytes (ranges honoured).
pub(crate) async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Authed<authenticated_media::get_content::v1::Request>,
) -> Result<Response> {
    let body = &request.body;
    let lookup = Lookup::new(&body.server_name, &body.media_id, Access::Authenticated, body.timeout_ms);
    serve(&state, &headers, lookup, None).await
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}`: the same, named.
pub(crate) async fn download_as(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Authed<authenticated_media::get_content_as_filename::v1::Request>,
) -> Result<Response> {
    let body = &request.body;
    let lookup = Lookup::new(&body.server_name, &body.media_id, Access::Authenticated, body.timeout_ms);
    serve(&state, &headers, lookup, Some(&body.filename)).await
}

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`: a thumbnail of the size asked.
pub(crate) async fn thumbnail(
    State(state): State<AppState>,
    request: Authed<authenticated_media::get_content_thumbnail::v1::Request>,
) -> Result<Response> {
    let body = &request.body;
    let lookup = Lookup::new(&body.server_name, &body.media_id, Access::Authenticated, body.timeout_ms);
    let size = thumbnail_size(body.method.as_ref(), body.width, body.height, body.animated)?;
    serve_thumbnail(&state, lookup, size).await
}

pub(super) fn upload_size(state: &AppState) -> UInt {
    UInt::new(state.media.max_upload_size()).unwrap_or(UInt::MAX)
}

/// `GET /_matrix/client/v1/media/config`: the upload size limit.
pub(crate) async fn config(
    State(state): State<AppState>,
    _request: Authed<authenticated_media::get_media_config::v1::Request>,
) -> RumaResponse<authenticated_media::get_media_config::v1::Response> {
    RumaResponse(authenticated_media::get_media_config::v1::Response::new(upload_size(&state)))
}

/// The preview of `url` for the requesting user, as the spec's OpenGraph object.
pub(super) async fn preview_of(state: &AppState, user: &ruma::UserId, url: &str) -> Result<serde_json::Value> {
    let asker = Asker { pool: &state.pool, own_server: &state.server_name, outbound: &state.outbound, user };
    state.media.preview(asker, url).await
}

/// `GET /_matrix/client/v1/media/preview_url`: a URL's OpenGraph preview.
pub(crate) async fn preview(
    State(state): State<AppState>,
    request: Authed<authenticated_media::get_media_preview::v1::Request>,
) -> Result<RumaResponse<authenticated_media::get_media_preview::v1::Response>> {
    let preview = preview_of(&state, &request.session.user_id, &request.body.url).await?;
    let response = authenticated_media::get_media_preview::v1::Response::from_serialize(&preview)
        .map_err(|error| Error::internal(format!("preview JSON: {error}")))?;
    Ok(RumaResponse(response))
}
