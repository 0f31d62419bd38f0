//! End-to-end encryption keys: `/keys/upload`, `/keys/query`, `/keys/claim`,
//! `/keys/changes`, `/keys/device_signing/upload`, `/keys/signatures/upload`.

use crate::e2ee::{cross_signing, device_keys, device_lists, one_time_keys};
use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::state::AppState;
use crate::streams::token;
use axum::Router;
use axum::extract::State;
use ruma::api::client::keys::{
    claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys,
};

/// Guests may upload, query and claim keys (spec: "Guest access"), so they can take part in
/// encrypted rooms they are allowed into; cross-signing is for full accounts.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma_guest::<upload_keys::v3::Request, _, _>(upload)
        .ruma_guest::<get_keys::v3::Request, _, _>(query)
        .ruma_guest::<claim_keys::v3::Request, _, _>(claim)
        .ruma::<get_key_changes::v3::Request, _, _>(changes)
        .ruma::<upload_signing_keys::v3::Request, _, _>(upload_signing)
        .ruma::<upload_signatures::v3::Request, _, _>(upload_signatures)
}

async fn upload(
    State(state): State<AppState>,
    request: Authed<upload_keys::v3::Request>,
) -> Result<RumaResponse<upload_keys::v3::Response>> {
    let counts = device_keys::upload(&state.pool, &state.streams, &request.session, &request.body).await?;
    Ok(upload_keys::v3::Response::new(counts).into())
}

async fn query(
    State(state): State<AppState>,
    request: Authed<get_keys::v3::Request>,
) -> Result<RumaResponse<get_keys::v3::Response>> {
    let response =
        device_keys::query(&state.pool, &state.server_name, &request.session.user_id, &request.body.device_keys)
            .await?;
    Ok(response.into())
}

async fn claim(
    State(state): State<AppState>,
    request: Authed<claim_keys::v3::Request>,
) -> Result<RumaResponse<claim_keys::v3::Response>> {
    Ok(one_time_keys::claim(&state.pool, &state.server_name, &request.body.one_time_keys).await?.into())
}

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

async fn upload_signing(
    State(state): State<AppState>,
    request: Authed<upload_signing_keys::v3::Request>,
) -> Result<RumaResponse<upload_signing_keys::v3::Response>> {
    cross_signing::upload_keys(&state.pool, &state.streams, &state.server_name, &request.session, &request.body)
        .await?;
    Ok(upload_signing_keys::v3::Response::new().into())
}

async fn upload_signatures(
    State(state): State<AppState>,
    request: Authed<upload_signatures::v3::Request>,
) -> Result<RumaResponse<upload_signatures::v3::Response>> {
    let failures =
        cross_signing::upload_signatures(&state.pool, &state.streams, &request.session, &request.body).await?;
    let mut response = upload_signatures::v3::Response::new();
    response.failures = failures;
    Ok(response.into())
}
