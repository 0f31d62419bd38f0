//! CORS as the spec's "Web Browser Clients" section asks: every response allows any origin,
//! and every path answers `OPTIONS` (browsers' preflight) without authentication.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

/// Whether the request is a browser's preflight (`OPTIONS`).
pub(crate) fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
}

/// The answer to a preflight, on every path and without authentication.
pub(crate) fn preflight() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

/// Allows any origin on `response`.
pub(crate) fn allow(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-Requested-With, Content-Type, Authorization"),
    );
}
