//! Inbound request authentication (spec: server-server API, "Request Authentication").
//!
//! A federation request carries `Authorization: X-Matrix origin=…,destination=…,key=…,sig=…`:
//! the origin's ed25519 signature over `{method, uri, origin, destination, content}`. It is
//! accepted when the destination (if given; older servers leave it out) is us and the
//! signature verifies with the origin's key, fetched through the key ring if need be.
//! Anything else — no header, a malformed one, another destination, an unknown key, a bad
//! signature — is `401 M_UNAUTHORIZED`, never a 5xx.
//!
//! The signature covers the body exactly as sent, so it is checked on the raw bytes, before
//! an empty body is read as `{}`.

use crate::error::{Error, Result};
use crate::http::ruma::{AllPaths, as_endpoint_body, parse_request, read_body, read_path_args};
use crate::state::AppState;
use crate::time::now_ms;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http::request::Parts;
use ruma::api::IncomingRequest;
use ruma::api::federation::authentication::{ServerSignatures, XMatrix, XMatrixVerificationError};
use ruma::{OwnedServerName, ServerName};
use std::collections::{BTreeMap, BTreeSet};

/// A federation request whose `X-Matrix` signature verified, from `origin`.
pub(crate) struct Federated<T> {
    pub origin: OwnedServerName,
    pub body: T,
}

impl<T> FromRequest<AppState> for Federated<T>
where
    T: IncomingRequest<Authentication = ServerSignatures> + Send,
    T::PathBuilder: AllPaths,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &AppState) -> Result<Self> {
        let (mut parts, body) = request.into_parts();
        let path_args = read_path_args::<T>(&mut parts, state).await?;
        let (origin, bytes) = authenticate(&parts, body, state).await?;
        let bytes = as_endpoint_body(&parts, bytes)?;
        let body = parse_request::<T>(parts, &path_args, &bytes)?;
        Ok(Federated { origin, body })
    }
}

/// Reads the body and verifies the request's `X-Matrix` signature over it: the origin and
/// the body, for routes that are not ruma endpoints (media).
pub(crate) async fn authenticate(parts: &Parts, body: Body, state: &AppState) -> Result<(OwnedServerName, Bytes)> {
    let x_matrix = XMatrix::extract_from_http_headers(&parts.headers)
        .map_err(|error| Error::unauthorized(format!("Missing or malformed X-Matrix authorization: {error}")))?;
    // Cheap refusals first: no body is read and no key fetched for a request meant elsewhere.
    if x_matrix.destination.as_deref().is_some_and(|destination| destination != state.server_name) {
        return Err(Error::unauthorized("The request is meant for another server (X-Matrix destination)"));
    }
    let bytes = read_body(&parts.headers, body, &state.config.limits).await?;
    if !bytes.is_empty() && serde_json::from_slice::<serde_json::Value>(&bytes).is_err() {
        return Err(Error::not_json("The body is not JSON"));
    }
    verify(&x_matrix, parts, &bytes, state).await?;
    tracing::Span::current().record("user", x_matrix.origin.as_str());
    Ok((x_matrix.origin, bytes))
}

async fn verify(x_matrix: &XMatrix, parts: &Parts, bytes: &Bytes, state: &AppState) -> Result<()> {
    let wanted = BTreeMap::from([(x_matrix.origin.clone(), BTreeSet::from([x_matrix.key.to_string()]))]);
    let keys = state.key_ring.public_keys_valid_at(&wanted, now_ms()).await;
    if keys.is_empty() {
        return Err(Error::unauthorized(format!(
            "No valid key {} of {} is known or could be fetched",
            x_matrix.key, x_matrix.origin
        )));
    }
    let mut signed = http::Request::builder().method(parts.method.clone()).uri(parts.uri.clone());
    if let Some(headers) = signed.headers_mut() {
        headers.clone_from(&parts.headers);
    }
    let signed = signed.body(bytes.as_ref()).map_err(|error| Error::internal(error.to_string()))?;
    let destination: &ServerName = &state.server_name;
    x_matrix.verify_http_request(&signed, destination, &keys).map_err(|error| match error {
        XMatrixVerificationError::DestinationMismatch => {
            Error::unauthorized("The request is meant for another server (X-Matrix destination)")
        }
        other => Error::unauthorized(format!("The X-Matrix signature does not verify: {other}")),
    })
}
