//! `GET /_matrix/federation/v1/media/download/{mediaId}` and `/thumbnail/{mediaId}` (spec
//! v1.11): this server's media for other servers, as `multipart/mixed` — a JSON metadata part,
//! then the file with its own `Content-Type` and `Content-Disposition`.
//!
//! ruma's response type holds the file in memory; these answers are streamed instead (the
//! parts' heads, the stored bytes as they are read, the closing delimiter), so serving a
//! large file to another server costs no more memory than serving it to a client.

use crate::error::Result;
use crate::http::federation::auth::Federated;
use crate::http::media::download::thumbnail_size;
use crate::http::media::respond::{disposition, safe_content_type};
use crate::http::ruma::RumaRouter;
use crate::media::download::{Access, Lookup};
use crate::media::storage::ByteStream;
use crate::state::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, header};
use ruma::api::federation::authenticated_media::{get_content, get_content_thumbnail};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma::<get_content::v1::Request, _, _>(download).ruma::<get_content_thumbnail::v1::Request, _, _>(thumbnail)
}

/// `GET /_matrix/federation/v1/media/download/{mediaId}`: only this server's own media (a
/// server asks each media's origin itself).
async fn download(State(state): State<AppState>, request: Federated<get_content::v1::Request>) -> Result<Response> {
    let body = &request.body;
    let lookup = Lookup::new(&state.server_name, &body.media_id, Access::Authenticated, body.timeout_ms);
    let found = state.media.find(&state.pool, &state.server_name, lookup).await?;
    let bytes = state.media.read(&found, None).await?;
    Ok(multipart(found.content_type.as_deref(), found.filename.as_deref(), found.size, bytes))
}

/// `GET /_matrix/federation/v1/media/thumbnail/{mediaId}`
async fn thumbnail(
    State(state): State<AppState>,
    request: Federated<get_content_thumbnail::v1::Request>,
) -> Result<Response> {
    let body = &request.body;
    let size = thumbnail_size(body.method.as_ref(), body.width, body.height, body.animated)?;
    let lookup = Lookup::new(&state.server_name, &body.media_id, Access::Authenticated, body.timeout_ms);
    let (thumbnail, bytes) = state.media.thumbnail(&state.pool, &state.server_name, lookup, size).await?;
    let length = u64::try_from(thumbnail.size).unwrap_or_default();
    Ok(multipart(Some(&thumbnail.content_type), None, length, bytes))
}

/// The spec's two-part answer around a stream of `length` bytes.
fn multipart(content_type: Option<&str>, filename: Option<&str>, length: u64, file: ByteStream) -> Response {
    let boundary = uuid::Uuid::new_v4().simple().to_string();
    let content_type = safe_content_type(content_type);
    let disposition = disposition(content_type, filename);
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n\
         Content-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let total = head.len() as u64 + length + tail.len() as u64;
    let pieces = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(file)
        .chain(futures_util::stream::once(async move { Ok(Bytes::from(tail)) }));
    let mut response = Response::new(Body::from_stream(pieces));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}")) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    response
}
