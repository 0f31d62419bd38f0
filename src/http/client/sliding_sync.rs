//! `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync` (MSC4186): answered
//! by `sync::sliding::serve`.

use crate::error::Result;
use crate::http::ruma::{Authed, RumaRouter};
use crate::state::AppState;
use axum::extract::State;
use axum::{Json, Router};
use ruma::api::client::sync::sync_events::v5;
use serde_json::Value;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma_guest::<v5::Request, _, _>(sliding_sync)
}

/// The lists, subscriptions and extensions the request names, from its connection's `pos`,
/// waiting up to `timeout` when nothing is new.
async fn sliding_sync(State(state): State<AppState>, request: Authed<v5::Request>) -> Result<Json<Value>> {
    let body = crate::sync::sliding::serve::serve(&state.pool, &state.streams, &request.session, &request.body);
    Ok(Json(body.await?))
}
