//! `GET /voip/turnServer`: the TURN server clients use for calls (see `users::turn`).

use crate::error::Result;
use crate::http::ruma::{Authed, RumaRouter};
use crate::state::AppState;
use axum::extract::State;
use axum::{Json, Router};
use ruma::api::client::voip::get_turn_server_info;
use serde_json::{Value, json};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma::<get_turn_server_info::v3::Request, _, _>(turn_server)
}

/// `GET /_matrix/client/*/voip/turnServer`: credentials for the configured TURN server. Without
/// one the answer is `{}`, as Synapse's: the spec has no "none" answer, and clients (matrix-js-sdk
/// among them) read an empty object as "no TURN server" and stop asking, where an error would
/// make them retry.
async fn turn_server(
    State(state): State<AppState>,
    request: Authed<get_turn_server_info::v3::Request>,
) -> Result<Json<Value>> {
    let now_secs = u64::try_from(crate::time::now_ms() / 1000).unwrap_or(0);
    let Some(credentials) = crate::users::turn::credentials(&state.config.voip, &request.session.user_id, now_secs)
    else {
        return Ok(Json(json!({})));
    };
    Ok(Json(json!({
        "username": credentials.username,
        "password": credentials.password,
        "uris": credentials.uris,
        "ttl": credentials.ttl.as_secs(),
    })))
}
