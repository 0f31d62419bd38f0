//! Push rules (spec: "Push Rules: API").

use crate::error::Result;
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::push::rules;
use crate::state::AppState;
use axum::extract::State;
use axum::{Json, Router};
use ruma::api::client::push::{
    PushRule, delete_pushrule, get_pushrule, get_pushrule_actions, get_pushrule_enabled, get_pushrules_all,
    get_pushrules_global_scope, set_pushrule, set_pushrule_actions, set_pushrule_enabled,
};
use serde_json::{Value, json};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<get_pushrules_all::v3::Request, _, _>(all)
        .ruma::<get_pushrules_global_scope::v3::Request, _, _>(global)
        .ruma::<get_pushrule::v3::Request, _, _>(get_rule)
        .ruma::<set_pushrule::v3::Request, _, _>(put_rule)
        .ruma::<delete_pushrule::v3::Request, _, _>(delete_rule)
        .ruma::<get_pushrule_enabled::v3::Request, _, _>(get_enabled)
        .ruma::<set_pushrule_enabled::v3::Request, _, _>(set_enabled)
        .ruma::<get_pushrule_actions::v3::Request, _, _>(get_actions)
        .ruma::<set_pushrule_actions::v3::Request, _, _>(set_actions)
}

// The two whole-set reads answer JSON of their own: every kind present, empty ones as `[]`,
// as Synapse serves them (ruma's `Ruleset` leaves empty kinds out).

/// `GET /_matrix/client/v3/pushrules/`: every rule set of the user.
async fn all(State(state): State<AppState>, request: Authed<get_pushrules_all::v3::Request>) -> Result<Json<Value>> {
    let global = rules::global(&state.pool, &request.session.user_id).await?;
    Ok(Json(json!({ "global": global })))
}

/// `GET /_matrix/client/v3/pushrules/global/`: the global rule set.
async fn global(
    State(state): State<AppState>,
    request: Authed<get_pushrules_global_scope::v3::Request>,
) -> Result<Json<Value>> {
    Ok(Json(rules::global(&state.pool, &request.session.user_id).await?))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`.
async fn get_rule(
    State(state): State<AppState>,
    request: Authed<get_pushrule::v3::Request>,
) -> Result<RumaResponse<get_pushrule::v3::Response>> {
    let body = request.body;
    let rule = rules::rule(&state.pool, &request.session.user_id, body.kind, &body.rule_id).await?;
    Ok(get_pushrule::v3::Response::new(PushRule::from(rule)).into())
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`: adds or replaces a user rule.
async fn put_rule(
    State(state): State<AppState>,
    request: Authed<set_pushrule::v3::Request>,
) -> Result<RumaResponse<set_pushrule::v3::Response>> {
    let body = request.body;
    let (before, after) = (body.before.as_deref(), body.after.as_deref());
    rules::put(&state.pool, &state.streams, &request.session.user_id, body.rule, before, after).await?;
    Ok(set_pushrule::v3::Response::new().into())
}

/// `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`: removes a user rule.
async fn delete_rule(
    State(state): State<AppState>,
    request: Authed<delete_pushrule::v3::Request>,
) -> Result<RumaResponse<delete_pushrule::v3::Response>> {
    let body = request.body;
    rules::delete(&state.pool, &state.streams, &request.session.user_id, body.kind, &body.rule_id).await?;
    Ok(delete_pushrule::v3::Response::new().into())
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`.
async fn get_enabled(
    State(state): State<AppState>,
    request: Authed<get_pushrule_enabled::v3::Request>,
) -> Result<RumaResponse<get_pushrule_enabled::v3::Response>> {
    let body = request.body;
    let enabled = rules::enabled(&state.pool, &request.session.user_id, body.kind, &body.rule_id).await?;
    Ok(get_pushrule_enabled::v3::Response::new(enabled).into())
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`.
async fn set_enabled(
    State(state): State<AppState>,
    request: Authed<set_pushrule_enabled::v3::Request>,
) -> Result<RumaResponse<set_pushrule_enabled::v3::Response>> {
    let body = request.body;
    let user_id = &request.session.user_id;
    rules::set_enabled(&state.pool, &state.streams, user_id, body.kind, &body.rule_id, body.enabled).await?;
    Ok(set_pushrule_enabled::v3::Response::new().into())
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`.
async fn get_actions(
    State(state): State<AppState>,
    request: Authed<get_pushrule_actions::v3::Request>,
) -> Result<RumaResponse<get_pushrule_actions::v3::Response>> {
    let body = request.body;
    let actions = rules::actions(&state.pool, &request.session.user_id, body.kind, &body.rule_id).await?;
    Ok(get_pushrule_actions::v3::Response::new(actions).into())
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`.
async fn set_actions(
    State(state): State<AppState>,
    request: Authed<set_pushrule_actions::v3::Request>,
) -> Result<RumaResponse<set_pushrule_actions::v3::Response>> {
    let body = request.body;
    let user_id = &request.session.user_id;
    rules::set_actions(&state.pool, &state.streams, user_id, body.kind, &body.rule_id, body.actions).await?;
    Ok(set_pushrule_actions::v3::Response::new().into())
}
