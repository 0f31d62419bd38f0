//! Global and per-room account data.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::state::AppState;
use crate::users::account_data;
use axum::Router;
use axum::extract::State;
use ruma::api::client::config::{
    get_global_account_data, get_room_account_data, set_global_account_data, set_room_account_data,
};
use ruma::serde::Raw;
use serde_json::Value;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma_guest::<set_global_account_data::v3::Request, _, _>(set_global)
        .ruma_guest::<get_global_account_data::v3::Request, _, _>(get_global)
        .ruma_guest::<set_room_account_data::v3::Request, _, _>(set_room)
        .ruma_guest::<get_room_account_data::v3::Request, _, _>(get_room)
}

fn content<T>(raw: &Raw<T>) -> Result<Value> {
    serde_json::from_str(raw.json().get()).map_err(|error| Error::bad_json(format!("Invalid content: {error}")))
}

fn raw<T>(value: Value) -> Result<Raw<T>> {
    let json = serde_json::value::to_raw_value(&value).map_err(|error| Error::internal(error.to_string()))?;
    Ok(Raw::from_json(json))
}

async fn set_global(
    State(state): State<AppState>,
    request: Authed<set_global_account_data::v3::Request>,
) -> Result<RumaResponse<set_global_account_data::v3::Response>> {
    let body = &request.body;
    let data_type = body.event_type.to_string();
    account_data::set(
        &state.pool,
        &state.streams,
        &request.session,
        &body.user_id,
        None,
        &data_type,
        &content(&body.data)?,
    )
    .await?;
    Ok(set_global_account_data::v3::Response::new().into())
}

async fn get_global(
    State(state): State<AppState>,
    request: Authed<get_global_account_data::v3::Request>,
) -> Result<RumaResponse<get_global_account_data::v3::Response>> {
    let body = &request.body;
    let data_type = body.event_type.to_string();
    let value = account_data::get(&state.pool, &request.session, &body.user_id, None, &data_type).await?;
    Ok(get_global_account_data::v3::Response::new(raw(value)?).into())
}

async fn set_room(
    State(state): State<AppState>,
    request: Authed<set_room_account_data::v3::Request>,
) -> Result<RumaResponse<set_room_account_data::v3::Response>> {
    let body = &request.body;
    let data_type = body.event_type.to_string();
    account_data::set(
        &state.pool,
        &state.streams,
        &request.session,
        &body.user_id,
        Some(&body.room_id),
        &data_type,
        &content(&body.data)?,
    )
    .await?;
    Ok(set_room_account_data::v3::Response::new().into())
}

async fn get_room(
    State(state): State<AppState>,
    request: Authed<get_room_account_data::v3::Request>,
) -> Result<RumaResponse<get_room_account_data::v3::Response>> {
    let body = &request.body;
    let data_type = body.event_type.to_string();
    let value =
        account_data::get(&state.pool, &request.session, &body.user_id, Some(&body.room_id), &data_type).await?;
    Ok(get_room_account_data::v3::Response::new(raw(value)?).into())
}
