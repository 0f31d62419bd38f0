//! Third-party identifiers and third-party networks, for a server that has neither.
//!
//! Hearth validates no e-mail addresses or phone numbers (`m.3pid_changes` is off in
//! `/capabilities`) and bridges no networks, but clients ask anyway: Element's settings tabs
//! list an account's 3pids and the protocols a server bridges, and fail when these paths are
//! unknown. So they answer what is true — nothing here — in the spec's shapes, and the ways to
//! add an identifier are refused with the errcode the spec has for it.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, Ruma, RumaResponse, RumaRouter};
use crate::state::AppState;
use axum::{Json, Router};
use ruma::api::client::account::{
    ThirdPartyIdRemovalStatus, add_3pid, bind_3pid, delete_3pid, get_3pids, request_3pid_management_token_via_email,
    request_3pid_management_token_via_msisdn, request_password_change_token_via_email,
    request_password_change_token_via_msisdn, request_registration_token_via_email,
    request_registration_token_via_msisdn, unbind_3pid,
};
use ruma::api::client::thirdparty::{
    get_location_for_protocol, get_location_for_room_alias, get_protocol, get_protocols, get_user_for_protocol,
    get_user_for_user_id,
};
use ruma::api::error::ErrorKind;
use serde_json::{Value, json};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<get_3pids::v3::Request, _, _>(list_3pids)
        .ruma::<request_3pid_management_token_via_email::v3::Request, _, _>(
            refuse_token::<request_3pid_management_token_via_email::v3::Request>,
        )
        .ruma::<request_3pid_management_token_via_msisdn::v3::Request, _, _>(
            refuse_token::<request_3pid_management_token_via_msisdn::v3::Request>,
        )
        .ruma::<request_registration_token_via_email::v3::Request, _, _>(
            refuse_token::<request_registration_token_via_email::v3::Request>,
        )
        .ruma::<request_registration_token_via_msisdn::v3::Request, _, _>(
            refuse_token::<request_registration_token_via_msisdn::v3::Request>,
        )
        .ruma::<request_password_change_token_via_email::v3::Request, _, _>(
            refuse_token::<request_password_change_token_via_email::v3::Request>,
        )
        .ruma::<request_password_change_token_via_msisdn::v3::Request, _, _>(
            refuse_token::<request_password_change_token_via_msisdn::v3::Request>,
        )
        .ruma::<add_3pid::v3::Request, _, _>(refuse_session::<add_3pid::v3::Request>)
        .ruma::<bind_3pid::v3::Request, _, _>(refuse_session::<bind_3pid::v3::Request>)
        .ruma::<delete_3pid::v3::Request, _, _>(delete)
        .ruma::<unbind_3pid::v3::Request, _, _>(unbind)
        .ruma::<get_protocols::v3::Request, _, _>(protocols)
        .ruma::<get_protocol::v3::Request, _, _>(not_bridged::<get_protocol::v3::Request>)
        .ruma::<get_location_for_protocol::v3::Request, _, _>(not_bridged::<get_location_for_protocol::v3::Request>)
        .ruma::<get_location_for_room_alias::v3::Request, _, _>(not_bridged::<get_location_for_room_alias::v3::Request>)
        .ruma::<get_user_for_protocol::v3::Request, _, _>(not_bridged::<get_user_for_protocol::v3::Request>)
        .ruma::<get_user_for_user_id::v3::Request, _, _>(not_bridged::<get_user_for_user_id::v3::Request>)
}

/// `GET /_matrix/client/*/account/3pid`: the account's third-party identifiers — none.
/// Written by hand: ruma leaves an empty list out, and Element's settings read `threepids` as a
/// list without checking that it is there (Synapse always sends it).
async fn list_3pids(_request: Authed<get_3pids::v3::Request>) -> Result<Json<Value>> {
    Ok(Json(json!({ "threepids": [] })))
}

/// `POST /_matrix/client/*/{account/3pid,register,account/password}/{email,msisdn}/requestToken`:
/// no validation mail or text is ever sent, so no session can start.
async fn refuse_token<T>(_request: Ruma<T>) -> Result<Json<Value>> {
    Err(Error::new(
        ErrorKind::ThreepidMediumNotSupported,
        "This server does not validate e-mail addresses or phone numbers",
    ))
}

/// `POST /_matrix/client/*/account/3pid/{add,bind}`: the validation session named cannot exist.
async fn refuse_session<T>(_request: Authed<T>) -> Result<Json<Value>> {
    Err(Error::new(
        ErrorKind::ThreepidAuthFailed,
        "No such validation session: this server does not validate third-party identifiers",
    ))
}

/// `POST /_matrix/client/*/account/3pid/delete`: nothing to delete, and no identity server was
/// told anything (`no-support`), as Synapse answers for an identifier it does not hold.
async fn delete(_request: Authed<delete_3pid::v3::Request>) -> Result<RumaResponse<delete_3pid::v3::Response>> {
    Ok(delete_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport).into())
}

/// `POST /_matrix/client/*/account/3pid/unbind`: as for `delete`.
async fn unbind(_request: Authed<unbind_3pid::v3::Request>) -> Result<RumaResponse<unbind_3pid::v3::Response>> {
    Ok(unbind_3pid::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport).into())
}

/// `GET /_matrix/client/*/thirdparty/protocols`: the networks bridged here — none.
async fn protocols(_request: Authed<get_protocols::v3::Request>) -> Result<RumaResponse<get_protocols::v3::Response>> {
    Ok(get_protocols::v3::Response::new(Default::default()).into())
}

/// `GET /_matrix/client/*/thirdparty/{protocol,location,user}[/{protocol}]`: the spec's 404 for
/// an unknown protocol or no portal room or user found — every protocol is unknown here.
async fn not_bridged<T>(_request: Authed<T>) -> Result<Json<Value>> {
    Err(Error::not_found("This server bridges no third-party networks"))
}
