//! Global and per-room account data, and room tags (the room's `m.tag` account data).

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::state::AppState;
use crate::users::{Actor, account_data, room_tags};
use axum::Router;
use axum::extract::State;
use ruma::api::client::config::{
    get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
};
use ruma::api::client::tag::{create_tag, delete_tag, get_tags};
use ruma::serde::Raw;
use serde_json::Value;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma_guest::<set_global_account_data::v3::Request, _, _>(set_global)
        .ruma_guest::<get_global_account_data::v3::Request, _, _>(get_global)
        .ruma_guest::<set_room_account_data::v3::Request, _, _>(set_room)
        .ruma_guest::<get_room_account_data::v3::Request, _, _>(get_room)
        .ruma_guest::<get_tags::v3::Request, _, _>(get_room_tags)
        .ruma_guest::<create_tag::v3::Request, _, _>(put_room_tag)
        .ruma_guest::<delete_tag::v3::Request, _, _>(delete_room_tag)
}

fn content<T>(raw: &Raw<T>) -> Result<Value> {
    serde_json::from_str(raw.json().get()).map_err(|error| Error::bad_json(format!("Invalid content: {error}")))
}

fn raw<T>(value: Value) -> Result<Raw<T>> {
    let json = serde_json::value::to_raw_value(&value).map_err(|error| Error::internal(error.to_string()))?;
    Ok(Raw::from_json(json))
}

/// `PUT /_matrix/client/*/user/{userId}/account_data/{type}`: sets global account data.
async fn set_global(
    State(state): State<AppState>,
    request: Authed<set_global_account_data::v3::Request>,
) -> Result<RumaResponse<set_global_account_data::v3::Response>> {
    let body = &request.body;
    let data_type = body.event_type.to_string();
    account_data::set(
        &state.pool,
        &state.streams,
        Actor::Device(&request.session),
        &body.user_id,
        None,
        &data_type,
        &content(&body.data)?,
    )
    .await?;
    Ok(set_global_account_data::v3::Response::new().into())
}

/// `GET /_matrix/client/*/user/{userId}/account_data/{type}`: gets global account data for a user.
async fn get_global(
    State(state): State<AppState>,
    request: Authed<get_global_account_data::v3::Request>,
) -> Result<RumaResponse<get_global_account_data::v3::Response>> {
    let body = &request.body;
    let data_type = body.event_type.to_string();
    let value =
        account_data::get(&state.pool, Actor::Device(&request.session), &body.user_id, None, &data_type).await?;
    Ok(get_global_account_data::v3::Response::new(raw(value)?).into())
}

/// `PUT /_matrix/client/*/user/{userId}/rooms/{roomId}/account_data/{type}`: associate account data with a room.
async fn set_room(
    State(state): State<AppState>,
    request: Authed<set_room_account_data::v3::Request>,
) -> Result<RumaResponse<set_room_account_data::v3::Response>> {
    let body = &request.body;
    let data_type = body.event_type.to_string();
    account_data::set(
        &state.pool,
        &state.streams,
        Actor::Device(&request.session),
        &body.user_id,
        Some(&body.room_id),
        &data_type,
        &content(&body.data)?,
    )
    .await?;
    Ok(set_room_account_data::v3::Response::new().into())
}

/// `GET /_matrix/client/*/user/{userId}/rooms/{roomId}/account_data/{type}`:
/// gets account data room for a user for a given room
async fn get_room(
    State(state): State<AppState>,
    request: Authed<get_room_account_data::v3::Request>,
) -> Result<RumaResponse<get_room_account_data::v3::Response>> {
    let body = &request.body;
    let data_type = body.event_type.to_string();
    let value =
        account_data::get(&state.pool, Actor::Device(&request.session), &body.user_id, Some(&body.room_id), &data_type)
            .await?;
    Ok(get_room_account_data::v3::Response::new(raw(value)?).into())
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags`.
async fn get_room_tags(
    State(state): State<AppState>,
    request: Authed<get_tags::v3::Request>,
) -> Result<RumaResponse<get_tags::v3::Response>> {
    let body = &request.body;
    let tags = room_tags::tags(&state.pool, Actor::Device(&request.session), &body.user_id, &body.room_id).await?;
    Ok(get_tags::v3::Response::new(tags).into())
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`.
async fn put_room_tag(
    State(state): State<AppState>,
    request: Authed<create_tag::v3::Request>,
) -> Result<RumaResponse<create_tag::v3::Response>> {
    let body = &request.body;
    let actor = Actor::Device(&request.session);
    let place = (&*body.user_id, &*body.room_id);
    room_tags::set_tag(&state.pool, &state.streams, actor, place, &body.tag, &body.tag_info).await?;
    Ok(create_tag::v3::Response::new().into())
}

/// `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`.
async fn delete_room_tag(
    State(state): State<AppState>,
    request: Authed<delete_tag::v3::Request>,
) -> Result<RumaResponse<delete_tag::v3::Response>> {
    let body = &request.body;
    let place = (&*body.user_id, &*body.room_id);
    room_tags::remove_tag(&state.pool, &state.streams, Actor::Device(&request.session), place, &body.tag).await?;
    Ok(delete_tag::v3::Response::new().into())
}
