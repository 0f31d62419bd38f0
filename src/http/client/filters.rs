//! Stored sync filters.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::state::AppState;
use crate::users::filters;
use axum::Router;
use axum::extract::State;
use ruma::api::client::filter::{FilterDefinition, create_filter, get_filter};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma_guest::<create_filter::v3::Request, _, _>(create).ruma_guest::<get_filter::v3::Request, _, _>(get)
}

/// `POST /_matrix/client/*/user/{userId}/filter`: create a new filter for event retrieval.
async fn create(
    State(state): State<AppState>,
    request: Authed<create_filter::v3::Request>,
) -> Result<RumaResponse<create_filter::v3::Response>> {
    let filter_id = filters::create(&state.pool, &request.session, &request.body.user_id, &request.body.filter).await?;
    Ok(create_filter::v3::Response::new(filter_id).into())
}

/// `GET /_matrix/client/*/user/{userId}/filter/{filterId}`: retrieve a previously created filter.
async fn get(
    State(state): State<AppState>,
    request: Authed<get_filter::v3::Request>,
) -> Result<RumaResponse<get_filter::v3::Response>> {
    let definition =
        filters::get(&state.pool, &request.session, &request.body.user_id, &request.body.filter_id).await?;
    let filter: FilterDefinition = serde_json::from_value(definition)
        .map_err(|error| Error::internal(format!("stored filter is malformed: {error}")))?;
    Ok(get_filter::v3::Response::new(filter).into())
}
