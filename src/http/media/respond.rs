//! Media responses: streamed bodies with headers that make hostile uploads harmless in a
//! browser (spec "Content repository" security considerations; Synapse's choices where the
//! spec leaves them open).

use crate::media::storage::ByteStream;
use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use ruma::http_headers::{ContentDisposition, ContentDispositionType};

/// Types a browser may show in place: they cannot run script. Everything else is an
/// attachment (Synapse's `INLINE_CONTENT_TYPES`).
const INLINE_CONTENT_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// Even a type served inline cannot run anything or load anything from elsewhere.
const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
                                       style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

pub(crate) fn is_inline(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    INLINE_CONTENT_TYPES.contains(&essence.as_str())
}

/// The content type to answer with: the uploaded one if it can be a header.
pub(crate) fn safe_content_type(content_type: Option<&str>) -> &str {
    content_type.filter(|value| HeaderValue::from_str(value).is_ok()).unwrap_or("application/octet-stream")
}

/// The `Content-Disposition` of media of `content_type`: inline only for the safe types.
pub(crate) fn disposition(content_type: &str, filename: Option<&str>) -> ContentDisposition {
    let kind =
        if is_inline(content_type) { ContentDispositionType::Inline } else { ContentDispositionType::Attachment };
    ContentDisposition::new(kind).with_filename(filename.map(str::to_owned))
}

/// What a media response says about its bytes.
pub(crate) struct Served<'a> {
    pub status: StatusCode,
    pub content_type: Option<&'a str>,
    pub filename: Option<&'a str>,
    pub length: u64,
    /// `Content-Range` of a partial answer.
    pub content_range: Option<String>,
}

pub(crate) fn media_response(served: Served<'_>, body: Option<ByteStream>) -> Response {
    let content_type = safe_content_type(served.content_type);
    let disposition = disposition(content_type, served.filename);
    let mut response = Response::new(body.map_or_else(Body::empty, Body::from_stream));
    *response.status_mut() = served.status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&disposition.to_string()) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(served.length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(value) = served.content_range.and_then(|range| HeaderValue::from_str(&range).ok()) {
        headers.insert(header::CONTENT_RANGE, value);
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Clients on other origins (Element Web on its own domain) embed media.
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    response
}
