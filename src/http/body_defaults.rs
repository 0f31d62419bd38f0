//! Request fields the spec makes optional but a ruma request type requires. The handler
//! completes the JSON body with the spec's (or Synapse's) default, then lets ruma parse it as
//! usual, so ruma's type stays the one description of the request and every other failure
//! (bad JSON, a wrong type, a bad token) is reported exactly as for any endpoint.

use crate::error::{Error, Result};
use crate::http::ruma::{AllPaths, AuthRequirement, Authed};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use ruma::api::IncomingRequest;
use serde_json::{Map, Value};

/// Parses `request` as `T` after `fill` has completed its JSON object body. A body that is not
/// a JSON object is passed on untouched, for ruma to refuse.
pub(crate) async fn parse_with_defaults<T>(
    request: Request,
    state: &AppState,
    fill: impl FnOnce(&mut Map<String, Value>),
) -> Result<Authed<T>>
where
    T: IncomingRequest + Send,
    T::Authentication: AuthRequirement,
    T::PathBuilder: AllPaths,
{
    let (mut parts, body) = request.into_parts();
    let limit = state.config.limits.max_request_size;
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| Error::too_large(format!("The request body exceeds {limit} bytes")))?;
    let bytes = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(mut object)) => {
            fill(&mut object);
            parts.headers.remove(http::header::CONTENT_LENGTH);
            serde_json::to_vec(&object).map_err(|error| Error::internal(error.to_string()))?.into()
        }
        _ => bytes,
    };
    Authed::<T>::from_request(Request::from_parts(parts, Body::from(bytes)), state).await
}
