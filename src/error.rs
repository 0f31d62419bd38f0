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

    /// Another server this request needed could not be reached, or answered something unusable
    /// (not a refusal of its own): the client's request was fine, the way to the other server
    /// was not, so it is told so (502, `M_UNKNOWN`, as Synapse answers) rather than given a
    /// 4xx that blames it or a 500 that blames this server.
    #[error("bad gateway: {0}")]
    BadGateway(String),

    /// User-interactive authentication is (still) required: 401 with flows and progress.
    #[error("user-interactive authentication required")]
    Uia(Box<UiaaInfo>),

    /// The database cannot be reached or cannot write just now (a killed backend, a
    /// restarting PostgreSQL, a read-only server): nothing was changed, and the same request
    /// is likely to succeed shortly, so the caller is told to retry rather than given up on.
    #[error("unavailable: {0:#}")]
    Unavailable(anyhow::Error),

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

    /// See [`Error::BadGateway`].
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Error::BadGateway(message.into())
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

    /// An admin locked the account: its sessions stay, but every request is refused (401).
    pub fn user_locked() -> Self {
        Self::new(ErrorKind::UserLocked, "This account has been locked")
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

    /// The same failure again, for another caller that shared the failed work (a send in a
    /// batch whose transaction failed): the kind survives, so a 503 stays a 503 for each.
    pub fn replicate(&self) -> Error {
        match self {
            Error::Matrix { kind, message } => Error::Matrix { kind: kind.clone(), message: message.clone() },
            Error::Conflict(message) => Error::Conflict(message.clone()),
            Error::ServerControlled(message) => Error::ServerControlled(message.clone()),
            Error::BadGateway(message) => Error::BadGateway(message.clone()),
            Error::Uia(info) => Error::Uia(info.clone()),
            Error::Unavailable(error) => Error::Unavailable(anyhow::anyhow!("{error:#}")),
            Error::Internal(error) => Error::Internal(anyhow::anyhow!("{error:#}")),
        }
    }

    /// The Matrix error code, for logs and tests.
    pub fn errcode(&self) -> String {
        match self {
            Error::Matrix { kind, .. } => kind.errcode().to_string(),
            Error::Conflict(_) | Error::BadGateway(_) => "M_UNKNOWN".to_owned(),
            Error::ServerControlled(_) => "M_BAD_JSON".to_owned(),
            Error::Uia(_) => "UIA".to_owned(),
            Error::Unavailable(_) | Error::Internal(_) => "M_UNKNOWN".to_owned(),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        if database_unavailable(&error) {
            // The pool's other idle connections may be as dead as this one.
            crate::db::connection_health::connection_failed();
            return Error::Unavailable(anyhow::Error::new(error).context("database"));
        }
        Error::Internal(anyhow::Error::new(error).context("database"))
    }
}

/// Whether a database failure is the server's condition rather than the statement's: the
/// connection is gone or cannot be had, PostgreSQL is shutting down or restarting (SQLSTATE
/// class 57, "operator intervention"), the connection failed (class 08), or the server only
/// reads (25006). Such a failure changed nothing and passes once PostgreSQL is back.
pub fn database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => {
            database.code().is_some_and(|code| code.starts_with("57") || code.starts_with("08") || code == "25006")
        }
        _ => false,
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Error::Internal(anyhow::Error::new(error).context("database migration"))
    }
}
