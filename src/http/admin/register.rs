//! `GET/POST /_synapse/admin/v1/register`.

use crate::error::{Error, Result};
use crate::http::ruma::{BodyFormat, check_json_body, empty_as_object, read_body, record_route};
use crate::state::AppState;
use crate::users::ClientInfo;
use crate::users::shared_secret::{self, SharedSecretRegistration};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::routing::get;
use axum::{Json, Router};
use http::{HeaderMap, Method};
use serde_json::{Value, json};
use std::net::SocketAddr;

const PATH: &str = "/_synapse/admin/v1/register";

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    record_route(Method::GET, PATH, BodyFormat::Json);
    record_route(Method::POST, PATH, BodyFormat::Json);
    router.route(PATH, get(nonce).post(register))
}

/// `GET /_synapse/admin/v1/register`: a single-use nonce for shared-secret registration.
async fn nonce(State(state): State<AppState>) -> Result<Json<Value>> {
    if state.config.registration.shared_secret.is_none() {
        return Err(Error::unknown("Shared secret registration is not enabled"));
    }
    let nonce = shared_secret::new_nonce(&state.pool).await?;
    Ok(Json(json!({ "nonce": nonce })))
}

/// `POST /_synapse/admin/v1/register`: create an account with the shared secret's HMAC over the
/// nonce, user, password and admin flag, in Synapse's shape.
async fn register(
    State(state): State<AppState>,
    ConnectInfo(address): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    let body = empty_as_object(read_body(&headers, body, &state.config.limits).await?);
    // The same rules as every ruma endpoint's body (no U+0000, numbers Hearth can serve back).
    check_json_body(&Method::POST, &body)?;
    let json: Value = serde_json::from_slice(&body)
        .map_err(|error| Error::not_json(format!("The body is not valid JSON: {error}")))?;
    let request = SharedSecretRegistration::from_json(&json)?;
    let client = ClientInfo { ip: Some(address.ip().to_string()), user_agent: None };
    let registered = shared_secret::register(
        &state.pool,
        &state.server_name,
        state.config.registration.shared_secret.as_deref(),
        request,
        &client,
    )
    .await?;
    let mut response = json!({
        "user_id": registered.user_id,
        "home_server": state.server_name,
    });
    if let Some(session) = registered.session {
        response["access_token"] = json!(session.access_token);
        response["device_id"] = json!(session.device_id);
    }
    Ok(Json(response))
}
