//! `GET /pushers` and `POST /pushers/set`.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, AuthedChecked, BodyCheck, RumaResponse, RumaRouter};
use crate::push::pushers;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::client::push::{get_pushers, set_pusher};
use serde_json::Value;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma::<get_pushers::v3::Request, _, _>(list).ruma::<set_pusher::v3::Request, _, _>(set)
}

/// `GET /_matrix/client/v3/pushers`: the user's pushers.
async fn list(
    State(state): State<AppState>,
    request: Authed<get_pushers::v3::Request>,
) -> Result<RumaResponse<get_pushers::v3::Response>> {
    let pushers = pushers::list(&state.pool, &request.session.user_id).await?;
    Ok(get_pushers::v3::Response::new(pushers).into())
}

/// `POST /_matrix/client/v3/pushers/set`: adds, replaces or deletes a pusher.
async fn set(
    State(state): State<AppState>,
    AuthedChecked { request, .. }: AuthedChecked<set_pusher::v3::Request, RequiredPusherFields>,
) -> Result<RumaResponse<set_pusher::v3::Response>> {
    pushers::set(&state.pool, &state.streams, &request.session, request.body.action).await?;
    Ok(set_pusher::v3::Response::new().into())
}

/// Missing fields answer `M_MISSING_PARAM` naming them (the spec's example error, and
/// Synapse's answer), where ruma's parse failure would only say `M_BAD_JSON`.
struct RequiredPusherFields;

impl BodyCheck for RequiredPusherFields {
    fn check(body: &[u8]) -> Result<()> {
        // Anything but a JSON object is left to the parser's error.
        let Ok(Value::Object(content)) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
        let absent = |key: &str| content.get(key).is_none_or(Value::is_null);
        let deleting = content.get("kind").is_some_and(Value::is_null);
        let required: &[&str] = if deleting {
            &["app_id", "pushkey"]
        } else {
            &["kind", "app_id", "app_display_name", "device_display_name", "pushkey", "lang", "data"]
        };
        let missing: Vec<&str> = required.iter().copied().filter(|key| absent(key)).collect();
        if !missing.is_empty() {
            return Err(Error::missing_param(format!("Missing parameters: {}", missing.join(", "))));
        }
        let http = content.get("kind").and_then(Value::as_str) == Some("http");
        let data = content.get("data").and_then(Value::as_object);
        // (A `data` that is not an object is the parser's M_BAD_JSON.)
        if http && data.is_some_and(|data| data.get("url").is_none_or(Value::is_null)) {
            return Err(Error::missing_param("`data.url` is required for an http pusher"));
        }
        Ok(())
    }
}
