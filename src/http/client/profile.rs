//! Profiles: the whole profile and single fields (`displayname`, `avatar_url`, extended ones).

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, Ruma, RumaResponse, RumaRouter};
use crate::server::AppState;
use crate::users::profile;
use axum::Router;
use axum::extract::State;
use ruma::api::client::profile::{delete_profile_field, get_profile, get_profile_field, set_profile_field};
use ruma::profile::ProfileFieldValue;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma_guest::<get_profile::v3::Request, _, _>(get_all)
        .ruma_guest::<get_profile_field::v3::Request, _, _>(get_field)
        .ruma_guest::<set_profile_field::v3::Request, _, _>(set_field)
        .ruma::<delete_profile_field::v3::Request, _, _>(delete_field)
}

async fn get_all(
    State(state): State<AppState>,
    request: Ruma<get_profile::v3::Request>,
) -> Result<RumaResponse<get_profile::v3::Response>> {
    let fields = profile::get(&state.pool, &request.body.user_id).await?;
    let mut response = get_profile::v3::Response::default();
    response.data = fields.into_iter().collect();
    Ok(response.into())
}

async fn get_field(
    State(state): State<AppState>,
    request: Ruma<get_profile_field::v3::Request>,
) -> Result<RumaResponse<get_profile_field::v3::Response>> {
    let field = request.body.field.as_str();
    let value = profile::get_field(&state.pool, &request.body.user_id, field).await?;
    let value = ProfileFieldValue::new(field, value)
        .map_err(|error| Error::internal(format!("stored profile field {field} is malformed: {error}")))?;
    Ok(get_profile_field::v3::Response::new(value).into())
}

async fn set_field(
    State(state): State<AppState>,
    request: Authed<set_profile_field::v3::Request>,
) -> Result<RumaResponse<set_profile_field::v3::Response>> {
    let value = &request.body.value;
    let field = value.field_name();
    profile::set_field(
        &state.pool,
        &request.session,
        &request.body.user_id,
        field.as_str(),
        Some(value.value().into_owned()),
    )
    .await?;
    Ok(set_profile_field::v3::Response::new().into())
}

async fn delete_field(
    State(state): State<AppState>,
    request: Authed<delete_profile_field::v3::Request>,
) -> Result<RumaResponse<delete_profile_field::v3::Response>> {
    let body = &request.body;
    profile::set_field(&state.pool, &request.session, &body.user_id, body.field.as_str(), None).await?;
    Ok(delete_profile_field::v3::Response::new().into())
}
