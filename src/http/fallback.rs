//! Answers for requests no endpoint takes: 404 for unknown paths, 405 for known paths with
//! the wrong method, both `M_UNRECOGNIZED` as the spec requires.

use crate::error::Error;
use axum::response::{IntoResponse, Response};

/// Any path no route knows: 404 `M_UNRECOGNIZED`, as the spec asks.
pub(crate) async fn not_found() -> Response {
    Error::unrecognized("Unrecognized request").into_response()
}

/// A known path with a method it does not serve: 405 `M_UNRECOGNIZED`.
pub(crate) async fn method_not_allowed() -> Response {
    crate::http::error::method_not_allowed("This endpoint does not support this method")
}
