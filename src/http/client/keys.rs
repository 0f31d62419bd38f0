//! End-to-end encryption keys: `/keys/upload`, `/keys/query`, `/keys/claim`,
//! `/keys/changes`, `/keys/device_signing/upload`, `/keys/signatures/upload`.

use crate::e2ee::types::{KeysUpload, SignedKeys, SigningKeysUpload};
use crate::e2ee::{cross_signing, device_keys, device_lists};
use crate::error::{Error, Result};
use crate::federation::user_keys;
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::state::AppState;
use crate::streams::token;
use axum::Router;
use axum::extract::State;
use ruma::api::client::keys::{
    claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys,
};
use serde_json::json;
use std::time::Duration;

/// How long `/keys/query` and `/keys/claim` wait for other servers when the client names no
/// `timeout` (the spec's default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Guests may upload, query and claim keys (spec: "Guest access"), so they can take part in
/// encrypted rooms they are allowed into; cross-signing is for full accounts.
pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma_guest::<upload_keys::v3::Request, _, _>(upload)
        .ruma_guest::<get_keys::v3::Request, _, _>(query)
        .ruma_guest::<claim_keys::v3::Request, _, _>(claim)
        .ruma::<get_key_changes::v3::Request, _, _>(changes)
        .ruma::<upload_signing_keys::v3::Request, _, _>(upload_signing)
        .ruma::<upload_signatures::v3::Request, _, _>(upload_signatures)
}

/// `POST /_matrix/client/*/keys/upload`: publishes end-to-end encryption keys for the device.
async fn upload(
    State(state): State<AppState>,
    request: Authed<upload_keys::v3::Request>,
) -> Result<RumaResponse<upload_keys::v3::Response>> {
    let body = &request.body;
    let upload = KeysUpload {
        device_keys: body.device_keys.as_ref(),
        one_time_keys: &body.one_time_keys,
        fallback_keys: &body.fallback_keys,
    };
    let counts = device_keys::upload(&state.pool, &state.streams, &request.session, upload).await?;
    Ok(upload_keys::v3::Response::new(counts).into())
}

/// `POST /_matrix/client/*/keys/query`: returns the current devices and identity keys for the given users.
async fn query(
    State(state): State<AppState>,
    request: Authed<get_keys::v3::Request>,
) -> Result<RumaResponse<get_keys::v3::Response>> {
    let body = &request.body;
    let timeout = body.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let found = user_keys::query(state.fed(), &request.session.user_id, &body.device_keys, timeout).await?;
    let mut response = get_keys::v3::Response::new();
    response.device_keys = found.device_keys;
    response.master_keys = found.master_keys;
    response.self_signing_keys = found.self_signing_keys;
    response.user_signing_keys = found.user_signing_keys;
    response.failures = found.failures;
    Ok(response.into())
}

/// `POST /_matrix/client/*/keys/claim`: claims one-time keys for use in pre-key messages.
async fn claim(
    State(state): State<AppState>,
    request: Authed<claim_keys::v3::Request>,
) -> Result<RumaResponse<claim_keys::v3::Response>> {
    let body = &request.body;
    let timeout = body.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let claimed = user_keys::claim(state.fed(), &body.one_time_keys, timeout).await?;
    let mut response = claim_keys::v3::Response::new(claimed.one_time_keys);
    response.failures = claimed.failures;
    Ok(response.into())
}

/// `GET /_matrix/client/*/keys/changes`:
/// gets a list of users who have updated their device identity keys since a previous sync token.
async fn changes(
    State(state): State<AppState>,
    request: Authed<get_key_changes::v3::Request>,
) -> Result<RumaResponse<get_key_changes::v3::Response>> {
    let from = token::decode(&request.body.from)?;
    let to = token::decode(&request.body.to)?;
    let current = state.streams.current_position(&state.pool).await?;
    if to > current {
        return Err(Error::invalid_param("The `to` token was not issued by this server"));
    }
    let lists = device_lists::between(&state.pool, request.session.user_id.as_str(), from, to.max(from)).await?;
    Ok(get_key_changes::v3::Response::new(lists.changed, lists.left).into())
}

/// `POST /_matrix/client/*/keys/device_signing/upload`: publishes cross signing keys for the user.
async fn upload_signing(
    State(state): State<AppState>,
    request: Authed<upload_signing_keys::v3::Request>,
) -> Result<RumaResponse<upload_signing_keys::v3::Response>> {
    let body = &request.body;
    let upload = SigningKeysUpload {
        master_key: body.master_key.as_ref(),
        self_signing_key: body.self_signing_key.as_ref(),
        user_signing_key: body.user_signing_key.as_ref(),
    };
    let session = &request.session;
    cross_signing::upload_keys(&state.pool, &state.streams, &state.server_name, session, upload, body.auth.as_ref())
        .await?;
    Ok(upload_signing_keys::v3::Response::new().into())
}

/// `POST /_matrix/client/*/keys/signatures/upload`: publishes cross-signing signatures for the user.
async fn upload_signatures(
    State(state): State<AppState>,
    request: Authed<upload_signatures::v3::Request>,
) -> Result<RumaResponse<upload_signatures::v3::Response>> {
    let signed_keys: SignedKeys = request
        .body
        .signed_keys
        .iter()
        .map(|(user, keys)| (user.clone(), keys.iter().map(|(id, raw)| (id.to_owned(), raw.to_owned())).collect()))
        .collect();
    let failures =
        cross_signing::upload_signatures(&state.pool, &state.streams, &request.session, &signed_keys).await?;
    let mut response = upload_signatures::v3::Response::new();
    for (user, keys) in failures {
        for (key_id, message) in keys {
            // The spec's failure shape: an error response body per refused signature.
            let failure = serde_json::from_value(json!({ "errcode": "M_INVALID_SIGNATURE", "error": message }))
                .map_err(|error| Error::internal(format!("building a signature failure: {error}")))?;
            response.failures.entry(user.clone()).or_default().insert(key_id, failure);
        }
    }
    Ok(response.into())
}
