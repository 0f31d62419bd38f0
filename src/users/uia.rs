//! User-interactive authentication (spec: "User-Interactive Authentication API").
//!
//! A protected operation declares its flows. The first request without `auth` opens a session
//! and answers 401 with the flows; each later request completes one stage of it. Sessions are
//! rows in PostgreSQL, bound to one operation, to what its first request asked (the
//! [`Requirement::subject`]) and (when authenticated) to one user, so a session opened for
//! "change password" cannot authorise "deactivate", one opened to delete device A cannot
//! delete device B, and any Hearth process can carry on a session another one started.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::time::now_ms;
use crate::users::{localpart, password, tokens};
use ruma::api::client::uiaa::{AuthData, AuthFlow, AuthType, UiaaInfo, UserIdentifier};
use ruma::api::error::{ErrorKind, StandardErrorBody};
use ruma::{ServerName, UserId};
use sqlx::PgConnection;

/// Unfinished sessions are forgotten after this long.
const SESSION_LIFETIME_MS: i64 = 60 * 60 * 1000;

/// What a protected operation requires.
pub(crate) struct Requirement<'a> {
    /// Stable name of the operation the session is bound to: one per endpoint, as Synapse
    /// binds a session to the request's method and path.
    pub operation: &'static str,
    /// What the request asks for that the session's completion must not be able to change:
    /// the operation's target and options (never a secret). Every request of the session must
    /// ask the same (Synapse warns where the body changes; for the fields that decide what
    /// happens Hearth refuses, as the issue this answers showed a completed session deleting
    /// another device). `Null` where the operation has nothing to bind.
    pub subject: serde_json::Value,
    /// The authenticated user, for operations on an existing account.
    pub user: Option<&'a UserId>,
    pub flows: Vec<Vec<AuthType>>,
    /// Request parameters to keep with the session (see [`Completed::remembered`]).
    pub remember: Option<serde_json::Value>,
}

/// A finished authentication, with what its stages established.
#[derive(Debug, Default)]
pub(crate) struct Completed {
    /// The session, for [`record_outcome`] where it was kept.
    pub session_id: String,
    /// The registration token a `m.login.registration_token` stage accepted.
    pub registration_token: Option<String>,
    /// The parameters the latest request of the session that had any asked to remember.
    /// Clients may send the operation's parameters only with the first request and just
    /// `auth` afterwards; Synapse accepts that, so Hearth does too.
    pub remembered: Option<serde_json::Value>,
}

/// Authenticates a request; a finished session is deleted, so it authorises one request only.
pub(crate) async fn authenticate(
    pool: &Store,
    server_name: &ServerName,
    requirement: &Requirement<'_>,
    auth: Option<&AuthData>,
) -> Result<Completed> {
    let completed = authenticate_keeping_session(pool, server_name, requirement, auth).await?;
    db::uia::delete(pool, &completed.session_id).await?;
    Ok(completed)
}

/// As [`authenticate`], for an operation a client may retry after losing the answer: the
/// finished session is kept (until it expires) so the operation can [`record_outcome`] in it,
/// and a retry find it with [`recorded_outcome`].
pub(crate) async fn authenticate_keeping_session(
    pool: &Store,
    server_name: &ServerName,
    requirement: &Requirement<'_>,
    auth: Option<&AuthData>,
) -> Result<Completed> {
    let now = now_ms();
    let Some(auth) = auth else {
        let session_id = open_session(pool, requirement, now).await?;
        if let Some(params) = &requirement.remember {
            db::uia::set_params(pool, &session_id, params).await?;
        }
        return Err(challenge(requirement, session_id, Vec::new(), None));
    };

    let session = match auth.session() {
        Some(session_id) => {
            let session = db::uia::get(pool, session_id).await?.filter(|s| s.created_ts > now - SESSION_LIFETIME_MS);
            let Some(session) = session else {
                return Err(Error::unknown(format!("Unknown or expired authentication session {session_id:?}")));
            };
            if session.operation != requirement.operation {
                return Err(Error::forbidden("This authentication session was started for a different operation"));
            }
            if session.user_id.as_deref() != requirement.user.map(UserId::as_str) {
                return Err(Error::forbidden("This authentication session belongs to another user"));
            }
            if session.subject != requirement.subject {
                return Err(Error::forbidden("Requested operation has changed during the authentication session"));
            }
            session
        }
        None => {
            let session_id = open_session(pool, requirement, now).await?;
            db::uia::get(pool, &session_id)
                .await?
                .ok_or_else(|| Error::internal("a new authentication session vanished"))?
        }
    };

    let mut remembered = session.params.clone();
    if let Some(params) = &requirement.remember {
        let merged = merge_params(remembered.take(), params);
        db::uia::set_params(pool, &session.session_id, &merged).await?;
        remembered = Some(merged);
    }
    let mut completed = session.completed.clone();
    let mut registration_token = session.registration_token.clone();
    if let Some(stage) = auth.auth_type() {
        let offered = requirement.flows.iter().flatten().any(|s| *s == stage);
        if !offered {
            let error = stage_error(ErrorKind::Unrecognized, format!("{stage} is not offered for this operation"));
            return Err(challenge(requirement, session.session_id, completed, Some(error)));
        }
        match check_stage(pool, server_name, requirement, auth, now).await? {
            Ok(token) => {
                db::uia::complete_stage(pool, &session.session_id, stage.as_str(), token.as_deref()).await?;
                if token.is_some() {
                    registration_token = token;
                }
                if !completed.iter().any(|s| s == stage.as_str()) {
                    completed.push(stage.as_str().to_owned());
                }
            }
            Err(error) => return Err(challenge(requirement, session.session_id, completed, Some(error))),
        }
    }

    let finished =
        requirement.flows.iter().any(|flow| flow.iter().all(|stage| completed.iter().any(|c| c == stage.as_str())));
    if !finished {
        return Err(challenge(requirement, session.session_id, completed, None));
    }
    Ok(Completed { session_id: session.session_id, registration_token, remembered })
}

/// What a kept session achieved, recorded in the transaction that achieved it. `false`: another
/// request of the session achieved it first, and this one must roll back.
pub(crate) async fn record_outcome(conn: &mut PgConnection, session_id: &str, outcome: &str) -> Result<bool> {
    Ok(db::uia::record_outcome(conn, session_id, outcome).await?)
}

/// A retried request's session, if it is an unexpired session of `operation` that already
/// achieved something: that outcome, with the parameters the session remembered.
pub(crate) async fn recorded_outcome(
    pool: &Store,
    operation: &str,
    auth: Option<&AuthData>,
) -> Result<Option<(String, Option<serde_json::Value>)>> {
    let Some(session_id) = auth.and_then(AuthData::session) else { return Ok(None) };
    let session = db::uia::get(pool, session_id).await?;
    Ok(session
        .filter(|session| session.operation == operation && session.created_ts > now_ms() - SESSION_LIFETIME_MS)
        .and_then(|session| Some((session.outcome?, session.params))))
}

async fn open_session(pool: &Store, requirement: &Requirement<'_>, now: i64) -> Result<String> {
    db::uia::delete_older_than(pool, now - SESSION_LIFETIME_MS).await?;
    let session_id = tokens::random_alphanumeric(24);
    let user = requirement.user.map(UserId::as_str);
    db::uia::create(pool, &session_id, requirement.operation, user, &requirement.subject, now).await?;
    Ok(session_id)
}

/// Checks one stage. The outer `Result` is for infrastructure failures; the inner one says
/// whether the stage passed (with the registration token it accepted, if any).
async fn check_stage(
    pool: &Store,
    server_name: &ServerName,
    requirement: &Requirement<'_>,
    auth: &AuthData,
    now: i64,
) -> Result<Result<Option<String>, StandardErrorBody>> {
    match auth {
        AuthData::Dummy(_) => Ok(Ok(None)),
        AuthData::Password(stage) => {
            let named = match &stage.identifier {
                UserIdentifier::Matrix(id) => localpart::login_user_id(&id.user, server_name),
                _ => None,
            };
            let Some(expected) = requirement.user else {
                return Ok(Err(stage_error(ErrorKind::Forbidden, "Password authentication needs an account".into())));
            };
            if named.as_deref() != Some(expected) {
                return Ok(Err(stage_error(
                    ErrorKind::Forbidden,
                    "The identifier does not name the logged-in user".into(),
                )));
            }
            let account = db::users::get(pool, expected.as_str()).await?;
            let hash = account.filter(|a| !a.deactivated).and_then(|a| a.password_hash);
            let valid = match hash {
                Some(hash) => password::verify(&hash, &stage.password).await?,
                None => false,
            };
            Ok(if valid { Ok(None) } else { Err(stage_error(ErrorKind::Forbidden, "Invalid password".into())) })
        }
        AuthData::RegistrationToken(stage) => {
            if stage.token.len() > 64 || !db::registration::token_is_valid(pool, &stage.token, now).await? {
                return Ok(Err(stage_error(ErrorKind::Forbidden, "Invalid registration token".into())));
            }
            Ok(Ok(Some(stage.token.clone())))
        }
        _ => Ok(Err(stage_error(ErrorKind::Unrecognized, "This authentication type is not supported".into()))),
    }
}

/// Newer values win key by key; keys a request leaves out keep their earlier values.
fn merge_params(earlier: Option<serde_json::Value>, newer: &serde_json::Value) -> serde_json::Value {
    match (earlier, newer) {
        (Some(serde_json::Value::Object(mut earlier)), serde_json::Value::Object(newer)) => {
            for (key, value) in newer {
                earlier.insert(key.clone(), value.clone());
            }
            serde_json::Value::Object(earlier)
        }
        _ => newer.clone(),
    }
}

fn stage_error(kind: ErrorKind, message: String) -> StandardErrorBody {
    StandardErrorBody::new(kind, message)
}

fn challenge(
    requirement: &Requirement<'_>,
    session_id: String,
    completed: Vec<String>,
    error: Option<StandardErrorBody>,
) -> Error {
    let mut info = UiaaInfo::new(requirement.flows.iter().map(|stages| AuthFlow::new(stages.clone())).collect());
    info.session = Some(session_id);
    // No stage Hearth offers takes parameters, but clients expect the object (Synapse
    // always sends it).
    info.params = serde_json::value::to_raw_value(&serde_json::json!({})).ok();
    info.completed = completed.iter().map(|stage| AuthType::from(stage.as_str())).collect();
    info.auth_error = error.map(Box::new);
    Error::Uia(Box::new(info))
}
