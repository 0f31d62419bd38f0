//! `/user/keys/query`, `/user/keys/claim` and `/user/devices/{userId}`, served. Thin: the
//! domain is `federation::user_keys::serve`.

use crate::error::Result;
use crate::federation::user_keys::serve;
use crate::http::federation::auth::Federated;
use crate::http::ruma::{RumaResponse, RumaRouter};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::federation::device::get_devices;
use ruma::api::federation::keys::{claim_keys, get_keys};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<get_keys::v1::Request, _, _>(query)
        .ruma::<claim_keys::v1::Request, _, _>(claim)
        .ruma::<get_devices::v1::Request, _, _>(devices)
}

/// `POST /_matrix/federation/v1/user/keys/query`
async fn query(
    State(state): State<AppState>,
    request: Federated<get_keys::v1::Request>,
) -> Result<RumaResponse<get_keys::v1::Response>> {
    let found = serve::query(&state.pool, &state.server_name, &request.body.device_keys).await?;
    let mut response = get_keys::v1::Response::new(found.device_keys);
    response.master_keys = found.master_keys;
    response.self_signing_keys = found.self_signing_keys;
    Ok(response.into())
}

/// `POST /_matrix/federation/v1/user/keys/claim`
async fn claim(
    State(state): State<AppState>,
    request: Federated<claim_keys::v1::Request>,
) -> Result<RumaResponse<claim_keys::v1::Response>> {
    let claimed = serve::claim(&state.pool, &state.server_name, &request.body.one_time_keys).await?;
    Ok(claim_keys::v1::Response::new(claimed.one_time_keys).into())
}

/// `GET /_matrix/federation/v1/user/devices/{userId}`
async fn devices(
    State(state): State<AppState>,
    request: Federated<get_devices::v1::Request>,
) -> Result<RumaResponse<get_devices::v1::Response>> {
    Ok(serve::devices(&state.pool, &state.server_name, &request.body.user_id).await?.into())
}
