//! Profiles: the whole profile and single fields (`displayname`, `avatar_url`, extended ones).

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, Ruma, RumaResponse, RumaRouter, read_body};
use crate::state::AppState;
use crate::users::profile;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request, State};
use ruma::api::client::profile::{delete_profile_field, get_profile, get_profile_field, set_profile_field};
use ruma::profile::ProfileFieldValue;
use serde_json::{Map, Value};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma_guest::<get_profile::v3::Request, _, _>(get_all)
        .ruma_guest::<get_profile_field::v3::Request, _, _>(get_field)
        .ruma_guest::<set_profile_field::v3::Request, _, _>(set_field)
        .ruma::<delete_profile_field::v3::Request, _, _>(delete_field)
}

/// `GET /_matrix/client/*/profile/{userId}`: get all profile information of a user.
async fn get_all(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    request: Ruma<get_profile::v3::Request>,
) -> Result<RumaResponse<get_profile::v3::Response>> {
    profile::ensure_visible_to(&state.pool, &request.body.user_id, viewer.as_deref()).await?;
    // A user of another server: that server's answer (`/query/profile`).
    let fields = crate::federation::query::profile(state.fed(), &request.body.user_id).await?;
    let mut response = get_profile::v3::Response::default();
    response.data = fields.into_iter().collect();
    Ok(response.into())
}

/// `GET /_matrix/client/*/profile/{userId}/{key_name}`: get a field in the profile of the user.
async fn get_field(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    request: Ruma<get_profile_field::v3::Request>,
) -> Result<RumaResponse<get_profile_field::v3::Response>> {
    let field = request.body.field.as_str();
    let user = &request.body.user_id;
    profile::ensure_visible_to(&state.pool, user, viewer.as_deref()).await?;
    let value = if user.server_name() == state.server_name {
        profile::get_field(&state.pool, user, field).await?
    } else {
        let fields = crate::federation::query::profile(state.fed(), user).await?;
        fields.get(field).cloned().ok_or_else(|| Error::not_found(format!("The profile has no {field:?} field")))?
    };
    let value = ProfileFieldValue::new(field, value)
        .map_err(|error| Error::internal(format!("stored profile field {field} is malformed: {error}")))?;
    Ok(get_profile_field::v3::Response::new(value).into())
}

/// A `set_profile_field` request whose body is first reduced to the one key the path names.
/// ruma's parser for this body looks for that key but does not skip the values of the keys
/// before it, so a valid body such as `{"avatar_url": "…", "displayname": "…"}` sent to
/// `…/displayname` fails as if it were not JSON at all.
struct SetField(Authed<set_profile_field::v3::Request>);

impl FromRequest<AppState> for SetField {
    type Rejection = Error;

    async fn from_request(request: Request, state: &AppState) -> Result<Self> {
        let (mut parts, body) = request.into_parts();
        let field = RawPathParams::from_request_parts(&mut parts, state)
            .await
            .ok()
            .and_then(|params| params.iter().last().map(|(_, field)| field.to_owned()));
        let bytes = read_body(&parts.headers, body, &state.config.limits).await?;
        // Anything but a JSON object is left for ruma to refuse with the right error.
        let body = match (field, serde_json::from_slice::<Map<String, Value>>(&bytes)) {
            (Some(field), Ok(mut object)) => {
                let only: Map<String, Value> = object.remove(&field).map(|value| (field, value)).into_iter().collect();
                serde_json::to_vec(&only).map_err(|error| Error::internal(error.to_string()))?.into()
            }
            _ => bytes,
        };
        parts.headers.insert(http::header::CONTENT_LENGTH, body.len().into());
        let request = Request::from_parts(parts, Body::from(body));
        Ok(SetField(Authed::from_request(request, state).await?))
    }
}

/// Profile fields that rooms show in member events.
const MEMBER_EVENT_FIELDS: &[&str] = &["displayname", "avatar_url"];

/// `PUT /_matrix/client/*/profile/{userId}/{field}`: set one profile field; a display name or
/// avatar change also updates the user's member event in every joined room.
async fn set_field(
    State(state): State<AppState>,
    SetField(request): SetField,
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
    if MEMBER_EVENT_FIELDS.contains(&field.as_str()) {
        crate::rooms::membership::refresh_profile_in_rooms(state.rooms(), &request.session.user_id).await?;
    }
    Ok(set_profile_field::v3::Response::new().into())
}

/// `DELETE /_matrix/client/*/profile/{userId}/{key_name}`: delete a field on the profile of the user.
async fn delete_field(
    State(state): State<AppState>,
    request: Authed<delete_profile_field::v3::Request>,
) -> Result<RumaResponse<delete_profile_field::v3::Response>> {
    let body = &request.body;
    profile::set_field(&state.pool, &request.session, &body.user_id, body.field.as_str(), None).await?;
    if MEMBER_EVENT_FIELDS.contains(&body.field.as_str()) {
        crate::rooms::membership::refresh_profile_in_rooms(state.rooms(), &request.session.user_id).await?;
    }
    Ok(delete_profile_field::v3::Response::new().into())
}

/// Who asks, if they gave a valid access token: ruma's profile endpoints take none, but a
/// user a profile's owner blocks must not read it with one (issue #21). A missing or invalid
/// token is an anonymous reader, as the endpoint allows.
struct Viewer(Option<ruma::OwnedUserId>);

impl axum::extract::FromRequestParts<AppState> for Viewer {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut http::request::Parts, state: &AppState) -> Result<Self> {
        let client = crate::http::ruma::client_info(parts);
        let session = crate::http::ruma::authenticate(parts, state, &client, false).await.ok().flatten();
        Ok(Viewer(session.map(|session| session.user_id)))
    }
}
