//! The one error type every layer returns.
//!
//! A client-caused failure carries the spec's `errcode` and HTTP status; user-interactive
//! authentication answers 401 with its flow description; anything else is internal, is logged
//! (inside the request's span, so with its request id) and answers `M_UNKNOWN` with status 500.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ruma::api::{
    OutgoingResponseExt,
    client::uiaa::{UiaaInfo, UiaaResponse},
    error::{
        Error as RumaError, ErrorBody, ErrorKind, LimitExceededErrorData, RetryAfter, StandardErrorBody,
        UnknownTokenErrorData, WrongRoomKeysVersionErrorData,
    },
};
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A failure the client caused or must react to.
    #[error("{kind:?} ({status}): {message}")]
    Matrix { status: StatusCode, kind: ErrorKind, message: String },

    /// User-interactive authentication is (still) required: 401 with flows and progress.
    #[error("user-interactive authentication required")]
    Uia(Box<UiaaInfo>),

    /// A bug or an infrastructure failure; the client learns nothing more than `M_UNKNOWN`.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Matrix { status, kind, message: message.into() }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorKind::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, message)
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::BadJson, message)
    }

    pub fn not_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::NotJson, message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, message)
    }

    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::MissingParam, message)
    }

    pub fn threepid_not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::ThreepidNotFound, message)
    }

    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::Unknown, message)
    }

    pub fn unknown_token(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorKind::UnknownToken(UnknownTokenErrorData::new()), message)
    }

    pub fn missing_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorKind::MissingToken, "Missing access token")
    }

    pub fn unrecognized(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, ErrorKind::Unrecognized, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge, message)
    }

    pub fn limit_exceeded(retry_after: Duration) -> Self {
        let mut data = LimitExceededErrorData::new();
        data.retry_after = Some(RetryAfter::Delay(retry_after));
        Self::new(StatusCode::TOO_MANY_REQUESTS, ErrorKind::LimitExceeded(data), "Too many requests")
    }

    pub fn user_in_use() -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::UserInUse, "User ID already taken")
    }

    pub fn invalid_username(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidUsername, message)
    }

    pub fn guest_access_forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorKind::GuestAccessForbidden, message)
    }

    pub fn user_deactivated() -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorKind::UserDeactivated, "This account has been deactivated")
    }

    /// A key backup write named a version other than the current one, which the client is told.
    pub fn wrong_room_keys_version(current_version: String) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorKind::WrongRoomKeysVersion(WrongRoomKeysVersionErrorData::new(current_version)),
            "Wrong backup version",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(anyhow::anyhow!(message.into()))
    }

    /// The Matrix error code, for logs and tests.
    pub fn errcode(&self) -> String {
        match self {
            Error::Matrix { kind, .. } => kind.errcode().to_string(),
            Error::Uia(_) => "UIA".to_owned(),
            Error::Internal(_) => "M_UNKNOWN".to_owned(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Error::Internal(anyhow::Error::new(error).context("database"))
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Error::Internal(anyhow::Error::new(error).context("database migration"))
    }
}

fn ruma_error(status: StatusCode, kind: ErrorKind, message: String) -> RumaError {
    RumaError::new(status, ErrorBody::Standard(StandardErrorBody::new(kind, message)))
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
            Error::Matrix { status, kind, message } => {
                if status.is_server_error() {
                    tracing::error!(%message, "request failed");
                }
                serialize(ruma_error(status, kind, message))
            }
            Error::Uia(info) => serialize(UiaaResponse::AuthResponse(*info)),
            Error::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                serialize(ruma_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorKind::Unknown,
                    "Internal server error".to_owned(),
                ))
            }
        }
    }
}
