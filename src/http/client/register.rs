//! Registration: `/register`, `/register/available`, registration-token validity.

use crate::error::{Error, Result};
use crate::http::ruma::{Ruma, RumaResponse, RumaRouter};
use crate::ratelimit::Action;
use crate::state::AppState;
use crate::users::accounts::{self, Registration};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use ruma::api::client::account::register::RegistrationKind;
use ruma::api::client::account::{check_registration_token_validity, get_username_availability, register};
use serde_json::json;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<register::v3::Request, _, _>(register)
        .ruma::<get_username_availability::v3::Request, _, _>(username_available)
        .ruma::<check_registration_token_validity::v1::Request, _, _>(token_validity)
}

/// `POST /_matrix/client/*/register`: register an account on this homeserver.
async fn register(State(state): State<AppState>, request: Ruma<register::v3::Request>) -> Result<Response> {
    state.rate_limits.check(Action::Register, &request.client)?;
    let body = &request.body;
    if body.login_type.is_some() {
        return Err(Error::forbidden("Application service registration is not supported yet"));
    }
    let registered = accounts::register(
        &state.pool,
        &state.server_name,
        &state.config.registration,
        Registration {
            username: body.username.as_deref(),
            password: body.password.as_deref(),
            device_id: body.device_id.as_deref().map(|id| id.as_str()),
            initial_device_display_name: body.initial_device_display_name.as_deref(),
            inhibit_login: body.inhibit_login,
            guest: body.kind == RegistrationKind::Guest,
            auth: body.auth.as_ref(),
        },
        &request.client,
    )
    .await?;
    let Some(session) = registered.session else {
        // With `inhibit_login` there is no device. ruma would serialise `"device_id": null`,
        // which the spec's schema (a string) does not allow; Synapse omits the field.
        return Ok(Json(json!({ "user_id": registered.user_id })).into_response());
    };
    let mut response = register::v3::Response::new(registered.user_id);
    response.access_token = Some(session.access_token);
    response.device_id = Some(session.device_id);
    Ok(RumaResponse(response).into_response())
}

/// `GET /_matrix/client/*/register/available`: checks to see if a username is available, and valid, for the server.
async fn username_available(
    State(state): State<AppState>,
    request: Ruma<get_username_availability::v3::Request>,
) -> Result<RumaResponse<get_username_availability::v3::Response>> {
    state.rate_limits.check(Action::Register, &request.client)?;
    // Like Synapse: with registration closed, the answer would only help enumerate accounts.
    if !state.config.registration.enabled {
        return Err(Error::forbidden("Registration is disabled on this server"));
    }
    accounts::check_username_available(&state.pool, &state.server_name, &request.body.username).await?;
    Ok(get_username_availability::v3::Response::new(true).into())
}

/// `GET /_matrix/client/*/register/m.login.registration_token/validity`:
/// checks to see if the given registration token is valid.
async fn token_validity(
    State(state): State<AppState>,
    request: Ruma<check_registration_token_validity::v1::Request>,
) -> Result<RumaResponse<check_registration_token_validity::v1::Response>> {
    state.rate_limits.check(Action::Register, &request.client)?;
    let registration = &state.config.registration;
    if !(registration.enabled && registration.token_required) {
        return Err(Error::forbidden("This server does not use registration tokens"));
    }
    let valid = crate::users::accounts::registration_token_is_valid(&state.pool, &request.body.token).await?;
    Ok(check_registration_token_validity::v1::Response::new(valid).into())
}
