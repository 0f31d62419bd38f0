//! `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync` (MSC4186): answered
//! by `sync::sliding::serve`.

use crate::error::Result;
use crate::http::ruma::{AuthedWithBody, RumaRouter};
use crate::state::AppState;
use crate::sync::sliding::serve::serve;
use crate::sync::sliding::unparsed::Unparsed;
use axum::extract::State;
use axum::{Json, Router};
use ruma::api::client::sync::sync_events::v5;
use serde_json::Value;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma_guest::<v5::Request, _, _>(sliding_sync)
}

/// The lists, subscriptions and extensions the request names, from its connection's `pos`,
/// waiting up to `timeout` when nothing is new.
/// The raw body is read too, for the fields ruma's request type drops.
async fn sliding_sync(State(state): State<AppState>, request: AuthedWithBody<v5::Request>) -> Result<Json<Value>> {
    let AuthedWithBody { request, json } = request;
    let more = Unparsed::from_body(&json)?;
    let body = serve(&state.pool, &state.streams, &request.session, &request.body, &more);
    Ok(Json(body.await?))
}
