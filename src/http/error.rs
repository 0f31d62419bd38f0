//! Domain errors on the HTTP wire: the spec's error JSON with the status each kind of failure
//! answers with (spec: "Standard error response", and each endpoint's documented statuses;
//! Synapse where the spec names none).

use crate::error::Error;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ruma::api::OutgoingResponseExt;
use ruma::api::client::uiaa::UiaaResponse;
use ruma::api::error::{Error as RumaError, ErrorBody, ErrorKind, StandardErrorBody};

/// The HTTP status a kind of failure answers with.
pub(crate) fn status_for(kind: &ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Forbidden
        | ErrorKind::GuestAccessForbidden
        | ErrorKind::UserDeactivated
        | ErrorKind::WrongRoomKeysVersion(_)
        | ErrorKind::InviteBlocked
        | ErrorKind::ThreepidDenied
        | ErrorKind::ResourceLimitExceeded(_)
        | ErrorKind::CannotLeaveServerNoticeRoom
        | ErrorKind::UserSuspended
        // Synapse answers a membership change the current state rules out with 403.
        | ErrorKind::BadState => StatusCode::FORBIDDEN,
        ErrorKind::UnknownToken(_)
        | ErrorKind::MissingToken
        | ErrorKind::Unauthorized
        | ErrorKind::UserLocked
        | ErrorKind::CaptchaNeeded
        | ErrorKind::CaptchaInvalid => StatusCode::UNAUTHORIZED,
        ErrorKind::NotFound | ErrorKind::Unrecognized => StatusCode::NOT_FOUND,
        ErrorKind::LimitExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::CannotOverwriteMedia => StatusCode::CONFLICT,
        ErrorKind::NotYetUploaded => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::UnableToGrantJoin => StatusCode::BAD_GATEWAY,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// An error response in the spec's shape.
pub(crate) fn error_response(status: StatusCode, kind: ErrorKind, message: String) -> Response {
    // A refusal is the client's business, not the operator's, but when a client misbehaves the
    // reason is what one needs to see: logged at debug, inside the request's span (method, path,
    // request id).
    if status.is_client_error() {
        tracing::debug!(status = status.as_u16(), errcode = %kind.errcode(), reason = %message, "request refused");
    }
    serialize(RumaError::new(status, ErrorBody::Standard(StandardErrorBody::new(kind, message))))
}

/// `M_UNRECOGNIZED` for a method the path does not support (405, spec: "Unrecognized requests").
pub(crate) fn method_not_allowed(message: &str) -> Response {
    error_response(StatusCode::METHOD_NOT_ALLOWED, ErrorKind::Unrecognized, message.to_owned())
}

/// The answer to a request whose handler panicked: `M_UNKNOWN` with status 500, as for any
/// internal error (the panic itself was reported by the panic hook).
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a request handler panicked");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Unknown, "Internal server error".to_owned())
}

fn serialize<T: OutgoingResponseExt>(response: T) -> Response {
    match response.try_into_http_response::<Vec<u8>>() {
        Ok(response) => response.map(axum::body::Body::from).into_response(),
        Err(error) => {
            tracing::error!(%error, "could not serialize an error response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Matrix { kind, message } => error_response(status_for(&kind), kind, message),
            Error::Conflict(message) => error_response(StatusCode::CONFLICT, ErrorKind::Unknown, message),
            // The spec's answer to setting server-managed account data: 405 M_BAD_JSON.
            Error::ServerControlled(message) => {
                error_response(StatusCode::METHOD_NOT_ALLOWED, ErrorKind::BadJson, message)
            }
            Error::BadGateway(message) => error_response(StatusCode::BAD_GATEWAY, ErrorKind::Unknown, message),
            Error::Uia(info) => serialize(UiaaResponse::AuthResponse(*info)),
            Error::Unavailable(error) => {
                tracing::warn!(error = format!("{error:#}"), "database unavailable; answered 503");
                let mut response = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorKind::Unknown,
                    "The server's database is unavailable; try again shortly".to_owned(),
                );
                response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
                response
            }
            Error::Internal(error) => {
                // Inside the request's span, so logged with its request id.
                tracing::error!(error = format!("{error:#}"), "internal error");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorKind::Unknown,
                    "Internal server error".to_owned(),
                )
            }
        }
    }
}
