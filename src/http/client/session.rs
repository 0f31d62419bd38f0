//! Logging in and out.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, Ruma, RumaResponse, RumaRouter};
use crate::ratelimit::Action;
use crate::state::AppState;
use crate::users::sessions::{self, PasswordLogin};
use axum::Router;
use axum::extract::State;
use ruma::api::client::session::{get_login_types, login, logout, logout_all};
use ruma::api::client::uiaa::UserIdentifier;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<get_login_types::v3::Request, _, _>(login_types)
        .ruma::<login::v3::Request, _, _>(login)
        .ruma_guest::<logout::v3::Request, _, _>(logout)
        .ruma::<logout_all::v3::Request, _, _>(logout_all)
}

/// `GET /_matrix/client/*/login`:
/// the login types Hearth supports (password).
async fn login_types(
    _request: Ruma<get_login_types::v3::Request>,
) -> Result<RumaResponse<get_login_types::v3::Response>> {
    let password = get_login_types::v3::LoginType::Password(get_login_types::v3::PasswordLoginType::new());
    Ok(get_login_types::v3::Response::new(vec![password]).into())
}

#[allow(deprecated)] // the legacy `user` field is still sent by older clients
/// `POST /_matrix/client/*/login`: login to the homeserver.
async fn login(
    State(state): State<AppState>,
    request: Ruma<login::v3::Request>,
) -> Result<RumaResponse<login::v3::Response>> {
    state.rate_limits.check(Action::Login, &request.client)?;
    let body = &request.body;
    let login::v3::LoginInfo::Password(password) = &body.login_info else {
        return Err(Error::unknown(format!("Unsupported login type {}", body.login_info.login_type())));
    };
    let user = match (&password.identifier, &password.user) {
        (Some(UserIdentifier::Matrix(id)), _) => id.user.as_str(),
        (Some(_), _) => return Err(Error::forbidden("Only m.id.user identifiers are supported")),
        (None, Some(user)) => user.as_str(),
        (None, None) => return Err(Error::missing_param("Missing identifier")),
    };
    let session = sessions::login_with_password(
        &state.pool,
        &state.server_name,
        PasswordLogin {
            user,
            password: &password.password,
            device_id: body.device_id.as_deref().map(|id| id.as_str()),
            initial_device_display_name: body.initial_device_display_name.as_deref(),
        },
        &request.client,
    )
    .await?;
    let mut response = login::v3::Response::new(session.user_id, session.access_token, session.device_id);
    response.home_server = Some(state.server_name.clone());
    Ok(response.into())
}

/// `POST /_matrix/client/*/logout`: log out of the homeserver.
async fn logout(
    State(state): State<AppState>,
    request: Authed<logout::v3::Request>,
) -> Result<RumaResponse<logout::v3::Response>> {
    sessions::logout(&state.pool, &state.streams, &request.session).await?;
    Ok(logout::v3::Response::new().into())
}

/// `POST /_matrix/client/*/logout/all`:
/// invalidates all access tokens for a user, so that they can no longer be used for authorization.
async fn logout_all(
    State(state): State<AppState>,
    request: Authed<logout_all::v3::Request>,
) -> Result<RumaResponse<logout_all::v3::Response>> {
    sessions::logout_all(&state.pool, &state.streams, &request.session.user_id).await?;
    Ok(logout_all::v3::Response::new().into())
}
