//! What every admin handler takes: the authenticated admin (checked before anything else of
//! the request is read), its path arguments, query and JSON body, each refused with the spec's
//! error JSON. Synapse's admin API has no ruma types, so the bodies are parsed with serde here.

use crate::error::{Error, Result};
use crate::http::ruma::{authenticate, check_json_body, check_path_args, client_info, empty_as_object, read_body};
use crate::state::AppState;
use crate::users::Session;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use http::request::Parts;
use ruma::OwnedUserId;
use serde::de::DeserializeOwned;

/// An access token of a server admin. Extracted first in every admin handler: a request
/// without one is refused (`M_MISSING_TOKEN`, `M_UNKNOWN_TOKEN`, or `M_FORBIDDEN` for a
/// non-admin) before its path, query or body is looked at.
pub struct Admin {
    pub session: Session,
    pub request_id: String,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let client = client_info(parts);
        let session = authenticate(parts, state, &client, true).await?.ok_or_else(Error::missing_token)?;
        tracing::Span::current().record("user", session.user_id.as_str());
        if !session.is_admin {
            return Err(Error::forbidden("You are not a server admin"));
        }
        let request_id =
            parts.headers.get("x-request-id").and_then(|value| value.to_str().ok()).unwrap_or("-").to_owned();
        Ok(Admin { session, request_id })
    }
}

impl Admin {
    /// Records the action in the audit log (see [`crate::admin::audit`]).
    pub fn audit(&self, action: &str, target: &str) {
        crate::admin::audit(self.session.user_id.as_str(), action, target, &self.request_id);
    }

    pub fn user_id(&self) -> &ruma::UserId {
        &self.session.user_id
    }
}

/// The path's arguments in order, checked as every endpoint's are (UTF-8, no U+0000, at most
/// 255 bytes).
pub struct Args(Vec<String>);

impl FromRequestParts<AppState> for Args {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let args: Vec<String> = match RawPathParams::from_request_parts(parts, state).await {
            Ok(params) => params.iter().map(|(_, value)| value.to_owned()).collect(),
            Err(_) => return Err(Error::invalid_param("A path parameter is not valid UTF-8")),
        };
        check_path_args(parts, &args)?;
        Ok(Args(args))
    }
}

impl Args {
    /// The `index`th argument (routes are fixed, so a missing one is a programming error,
    /// answered as an internal error rather than a panic).
    pub fn get(&self, index: usize) -> Result<&str> {
        self.0.get(index).map(String::as_str).ok_or_else(|| Error::internal(format!("no path argument {index}")))
    }

    /// The `index`th argument as a user id of this server.
    pub fn local_user(&self, index: usize, state: &AppState) -> Result<OwnedUserId> {
        crate::admin::local_user(&state.server_name, self.get(index)?)
    }
}

/// The query string, parsed into `T` (`?from=0&limit=10&guests=false`).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self> {
        let query = parts.uri.query().unwrap_or_default();
        serde_html_form::from_str(query)
            .map(Query)
            .map_err(|error| Error::invalid_param(format!("Invalid query parameters: {error}")))
    }
}

/// A JSON body parsed into `T`: empty means `{}`; text that is not JSON is `M_NOT_JSON`, JSON
/// of the wrong shape `M_BAD_JSON`, a missing required field `M_MISSING_PARAM`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &AppState) -> Result<Self> {
        let (parts, body) = request.into_parts();
        let bytes = empty_as_object(read_body(&parts.headers, body, &state.config.limits).await?);
        check_json_body(&parts.method, &bytes)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|error| Error::not_json(format!("The body is not valid JSON: {error}")))?;
        if !value.is_object() {
            return Err(Error::bad_json("Content must be a JSON object."));
        }
        serde_json::from_value(value).map(Json).map_err(|error| {
            let message = error.to_string();
            if message.starts_with("missing field") {
                Error::missing_param(message)
            } else {
                Error::bad_json(format!("The JSON body does not fit this endpoint: {message}"))
            }
        })
    }
}
