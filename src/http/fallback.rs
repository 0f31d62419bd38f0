//! Answers for requests no endpoint takes: 404 for unknown paths, 405 for known paths with
//! the wrong method, both `M_UNRECOGNIZED` as the spec requires.

use crate::error::Error;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

pub async fn not_found() -> Response {
    Error::unrecognized(StatusCode::NOT_FOUND, "Unrecognized request").into_response()
}

pub async fn method_not_allowed() -> Response {
    Error::unrecognized(StatusCode::METHOD_NOT_ALLOWED, "This endpoint does not support this method").into_response()
}
