//! The account itself: `whoami`, password changes, deactivation.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, Ruma, RumaResponse, RumaRouter};
use crate::state::AppState;
use crate::users::accounts;
use axum::Router;
use axum::extract::State;
use ruma::api::client::account::{ThirdPartyIdRemovalStatus, change_password, deactivate, whoami};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma_guest::<whoami::v3::Request, _, _>(whoami)
        .ruma::<change_password::v3::Request, _, _>(change_password)
        .ruma::<deactivate::v3::Request, _, _>(deactivate)
}

/// `GET /_matrix/client/*/account/whoami`: get information about the owner of a given access token.
async fn whoami(request: Authed<whoami::v3::Request>) -> Result<RumaResponse<whoami::v3::Response>> {
    let session = request.session;
    let mut response = whoami::v3::Response::new(session.user_id, session.is_guest);
    response.device_id = Some(session.device_id);
    Ok(response.into())
}

/// `POST /_matrix/client/*/account/password`: change the password of the current user's account.
async fn change_password(
    State(state): State<AppState>,
    request: Ruma<change_password::v3::Request>,
) -> Result<RumaResponse<change_password::v3::Response>> {
    // The endpoint is "optionally authenticated" in ruma's metadata because of a password-reset
    // flow by e-mail, which Hearth does not offer: a session is required.
    let session = request.session.ok_or_else(Error::missing_token)?;
    let body = &request.body;
    accounts::change_password(
        &state.pool,
        &state.streams,
        &state.server_name,
        &session,
        &body.new_password,
        body.logout_devices,
        body.auth.as_ref(),
    )
    .await?;
    Ok(change_password::v3::Response::new().into())
}

/// `POST /_matrix/client/*/account/deactivate`: deactivate the current user's account.
async fn deactivate(
    State(state): State<AppState>,
    request: Ruma<deactivate::v3::Request>,
) -> Result<RumaResponse<deactivate::v3::Response>> {
    let session = request.session.ok_or_else(Error::missing_token)?;
    let body = &request.body;
    accounts::deactivate(&state.pool, &state.server_name, &session, body.erase, body.auth.as_ref()).await?;
    crate::rooms::membership::leave_all(state.rooms(), &session.user_id).await?;
    Ok(deactivate::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport).into())
}
