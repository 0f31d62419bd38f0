//! `/query/directory` and `/query/profile`, served. Thin: the domain is `federation::query`.

use crate::error::Result;
use crate::federation::query;
use crate::http::federation::auth::Federated;
use crate::http::ruma::{RumaResponse, RumaRouter};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::federation::query::{get_profile_information, get_room_information};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<get_room_information::v1::Request, _, _>(directory)
        .ruma::<get_profile_information::v1::Request, _, _>(profile)
}

/// `GET /_matrix/federation/v1/query/directory?room_alias=`
async fn directory(
    State(state): State<AppState>,
    request: Federated<get_room_information::v1::Request>,
) -> Result<RumaResponse<get_room_information::v1::Response>> {
    let (room_id, servers) = query::local_alias(&state.pool, &state.server_name, &request.body.room_alias).await?;
    Ok(get_room_information::v1::Response::new(room_id, servers).into())
}

/// `GET /_matrix/federation/v1/query/profile?user_id=&field=`
async fn profile(
    State(state): State<AppState>,
    request: Federated<get_profile_information::v1::Request>,
) -> Result<RumaResponse<get_profile_information::v1::Response>> {
    let body = &request.body;
    let field = body.field.as_ref().map(|field| field.as_str());
    let fields = query::local_profile(&state.pool, &state.server_name, &body.user_id, field).await?;
    let mut response = get_profile_information::v1::Response::new();
    for (key, value) in fields {
        response.set(key, value);
    }
    Ok(response.into())
}
