//! The one error type every layer returns.
//!
//! A failure the caller caused names its kind (the spec's `errcode`) and says what went wrong;
//! the edges decide what that means on their wire (`http::error` maps kinds to HTTP statuses;
//! XMPP will map them to stanza errors). User-interactive authentication carries its flows;
//! anything else is internal: logged with the request's id, and told to the caller as nothing
//! more than an unknown error.

use ruma::api::client::uiaa::UiaaInfo;
use ruma::api::error::{
    ErrorKind, LimitExceededErrorData, RetryAfter, UnknownTokenErrorData, WrongRoomKeysVersionErrorData,
};
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A failure the caller caused or must react to.
    #[error("{kind:?}: {message}")]
    Matrix { kind: ErrorKind, message: String },

    /// What the caller asked to create exists already (an alias, say).
    #[error("conflict: {0}")]
    Conflict(String),

    /// The caller asked to change what only the server may change (server-managed account data).
    #[error("server-controlled: {0}")]
    ServerControlled(String),

    /// User-interactive authentication is (still) required: 401 with flows and progress.
    #[error("user-interactive authentication required")]
    Uia(Box<UiaaInfo>),

    /// A bug or an infrastructure failure; the client learns nothing more than `M_UNKNOWN`.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Matrix { kind, message: message.into() }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadJson, message)
    }

    pub fn not_json(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotJson, message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParam, message)
    }

    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::MissingParam, message)
    }

    pub fn threepid_not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ThreepidNotFound, message)
    }

    /// The state change asked for cannot be made from the current state (an unban of a user
    /// who is not banned, say).
    pub fn bad_state(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadState, message)
    }

    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unknown, message)
    }

    pub fn unknown_token(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UnknownToken(UnknownTokenErrorData::new()), message)
    }

    /// A server-server request without a valid `X-Matrix` signature (401).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unauthorized, message)
    }

    pub fn missing_token() -> Self {
        Self::new(ErrorKind::MissingToken, "Missing access token")
    }

    pub fn unrecognized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unrecognized, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, message)
    }

    pub fn limit_exceeded(retry_after: Duration) -> Self {
        let mut data = LimitExceededErrorData::new();
        data.retry_after = Some(RetryAfter::Delay(retry_after));
        Self::new(ErrorKind::LimitExceeded(data), "Too many requests")
    }

    pub fn user_in_use() -> Self {
        Self::new(ErrorKind::UserInUse, "User ID already taken")
    }

    pub fn invalid_username(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidUsername, message)
    }

    pub fn guest_access_forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::GuestAccessForbidden, message)
    }

    pub fn user_deactivated() -> Self {
        Self::new(ErrorKind::UserDeactivated, "This account has been deactivated")
    }

    /// A key backup write named a version other than the current one, which the client is told.
    pub fn wrong_room_keys_version(current_version: String) -> Self {
        Self::new(
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
            Error::Conflict(_) => "M_UNKNOWN".to_owned(),
            Error::ServerControlled(_) => "M_BAD_JSON".to_owned(),
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
