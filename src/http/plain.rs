//! Routes and extractors for endpoints without ruma types (Synapse's admin API, Hearth's own
//! `/_hearth/...` API): path arguments, query and JSON body, each refused with the spec's
//! error JSON, and routes listed in the route table like ruma's.

use crate::error::{Error, Result};
use crate::http::ruma::{BodyFormat, check_json_body, check_path_args, empty_as_object, read_body, record_route};
use crate::state::AppState;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::routing::MethodRouter;
use http::Method;
use http::request::Parts;
use ruma::OwnedUserId;
use serde::de::DeserializeOwned;

/// Routes `path` to `handler`, listing each of its `methods` in the route table (which the
/// route audit walks).
pub(crate) fn route(
    router: Router<AppState>,
    path: &'static str,
    methods: &[Method],
    handler: MethodRouter<AppState>,
) -> Router<AppState> {
    for method in methods {
        record_route(method.clone(), path, BodyFormat::Json);
    }
    router.route(path, handler)
}

/// The path's arguments in order, checked as every endpoint's are (UTF-8, no U+0000, at most
/// 255 bytes).
pub(crate) struct Args(Vec<String>);

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
    pub(crate) fn get(&self, index: usize) -> Result<&str> {
        self.0.get(index).map(String::as_str).ok_or_else(|| Error::internal(format!("no path argument {index}")))
    }

    /// The `index`th argument as a user id of this server.
    pub(crate) fn local_user(&self, index: usize, state: &AppState) -> Result<OwnedUserId> {
        crate::admin::local_user(&state.server_name, self.get(index)?)
    }
}

/// The query string, parsed into `T` (`?from=0&limit=10&guests=false`).
pub(crate) struct Query<T>(pub T);

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
pub(crate) struct Json<T>(pub T);

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
