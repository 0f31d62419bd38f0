//! `GET /sync`: the filter, token, timeout and presence of the request, answered by
//! `sync::serve`.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaRouter};
use crate::state::AppState;
use crate::sync::response::SyncResponse;
use crate::sync::serve::{SyncFilter, SyncParams, serve};
use axum::extract::State;
use axum::{Json, Router};
use ruma::api::client::sync::sync_events::v3 as sync_events;
use std::time::Duration;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma_guest::<sync_events::Request, _, _>(sync_handler)
}

/// `GET /_matrix/client/*/sync`: changes since `since` for the requesting device, waiting up
/// to `timeout` when there are none (see `sync::serve`).
async fn sync_handler(
    State(state): State<AppState>,
    request: Authed<sync_events::Request>,
) -> Result<Json<SyncResponse>> {
    let body = &request.body;
    let filter = match &body.filter {
        None => SyncFilter::Default,
        Some(sync_events::Filter::FilterDefinition(definition)) => SyncFilter::Inline(definition),
        Some(sync_events::Filter::FilterId(id)) => SyncFilter::Stored(id),
        Some(_) => return Err(Error::invalid_param("Unsupported filter")),
    };
    let params = SyncParams {
        filter,
        since: body.since.as_deref(),
        timeout: body.timeout.unwrap_or(Duration::ZERO),
        full_state: body.full_state,
        set_presence: &body.set_presence,
    };
    // The domain's typed response is rendered to JSON here, as the body is written.
    Ok(Json(serve(&state.pool, &state.streams, &request.session, params).await?.response))
}
