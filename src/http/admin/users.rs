//! Accounts: `/_synapse/admin/v2/users…`, `/v1/users/{userId}/{admin,shadow_ban,
//! override_ratelimit,sent_invite_count,cumulative_joined_room_count}`, `/v1/experimental_features`,
//! `/v1/deactivate`, `/v1/reset_password`, `/v1/username_available`, in
//! Synapse's shapes.

use super::extract::{Admin, Args, Json, Query};
use super::paging::{Paged, add_next_token};
use super::route;
use crate::admin::devices;
use crate::admin::users::{self, AccountFilter, AccountOrder, AccountSummary, UserChanges};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::users::accounts;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = route(router, "/_synapse/admin/v2/users", &[Method::GET], get(list_v2));
    let router = route(router, "/_synapse/admin/v3/users", &[Method::GET], get(list_v3));
    let router = route(router, "/_synapse/admin/v2/users/{user_id}", &[Method::GET, Method::PUT], get(show).put(put));
    let router = route(
        router,
        "/_synapse/admin/v1/users/{user_id}/admin",
        &[Method::GET, Method::PUT],
        get(admin_flag).put(set_admin_flag),
    );
    let router = route(
        router,
        "/_synapse/admin/v1/users/{user_id}/shadow_ban",
        &[Method::POST, Method::DELETE],
        post(shadow_ban).delete(lift_shadow_ban),
    );
    let router = route(
        router,
        "/_synapse/admin/v1/users/{user_id}/override_ratelimit",
        &[Method::GET, Method::POST, Method::DELETE],
        get(ratelimit).post(set_ratelimit).delete(delete_ratelimit),
    );
    let router = route(
        router,
        "/_synapse/admin/v1/users/{user_id}/sent_invite_count",
        &[Method::GET],
        get(activity_count::<true>),
    );
    let router = route(
        router,
        "/_synapse/admin/v1/users/{user_id}/cumulative_joined_room_count",
        &[Method::GET],
        get(activity_count::<false>),
    );
    let router =
        route(router, "/_synapse/admin/v1/experimental_features/{user_id}", &[Method::GET], get(experimental_features));
    let router = route(router, "/_synapse/admin/v1/username_available", &[Method::GET], get(username_available));
    let router = route(router, "/_synapse/admin/v1/deactivate/{user_id}", &[Method::POST], post(deactivate));
    route(router, "/_synapse/admin/v1/reset_password/{user_id}", &[Method::POST], post(reset_password))
}

/// The fields Synapse shows for an account in listings and lookups.
fn account_json(account: &AccountSummary) -> Value {
    json!({
        "name": account.user_id,
        "is_guest": account.is_guest,
        "admin": account.is_admin,
        "user_type": account.user_type,
        "deactivated": account.deactivated,
        "erased": account.erased,
        "shadow_banned": account.shadow_banned,
        "locked": account.locked,
        "displayname": account.displayname,
        "avatar_url": account.avatar_url,
        "creation_ts": account.created_ts,
        "last_seen_ts": account.last_seen_ts,
        "approved": true,
    })
}

/// One account in `GET/PUT /v2/users/{userId}`'s shape: Synapse gives `creation_ts` in seconds
/// there (and in milliseconds in listings), and lists third-party and external ids.
fn account_details_json(account: &AccountSummary) -> Value {
    let mut details = account_json(account);
    details["creation_ts"] = json!(account.created_ts / 1000);
    details["threepids"] = json!([]);
    details["external_ids"] = json!([]);
    details["appservice_id"] = Value::Null;
    details["consent_server_notice_sent"] = Value::Null;
    details["consent_version"] = Value::Null;
    details["consent_ts"] = Value::Null;
    details["suspended"] = json!(false);
    details
}

#[derive(Deserialize)]
struct ListQuery {
    user_id: Option<String>,
    name: Option<String>,
    guests: Option<bool>,
    deactivated: Option<bool>,
    locked: Option<bool>,
    admins: Option<bool>,
    order_by: Option<String>,
}

fn order_of(name: Option<&str>) -> Result<AccountOrder> {
    Ok(match name.unwrap_or("name") {
        "name" => AccountOrder::Name,
        "is_guest" => AccountOrder::IsGuest,
        "admin" => AccountOrder::Admin,
        "user_type" => AccountOrder::UserType,
        "deactivated" => AccountOrder::Deactivated,
        "shadow_banned" => AccountOrder::ShadowBanned,
        "displayname" => AccountOrder::Displayname,
        "avatar_url" => AccountOrder::AvatarUrl,
        "creation_ts" => AccountOrder::CreationTs,
        "last_seen_ts" => AccountOrder::LastSeenTs,
        other => return Err(Error::invalid_param(format!("Unknown value for order_by: {other}"))),
    })
}

/// `GET /_synapse/admin/v2/users`: `deactivated=true` adds deactivated accounts to the active
/// ones, which are all that is listed otherwise.
async fn list_v2(
    State(state): State<AppState>,
    _admin: Admin,
    paged: Paged,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Value>> {
    let deactivated = if query.deactivated == Some(true) { None } else { Some(false) };
    list(&state, paged, &query, deactivated).await
}

/// `GET /_synapse/admin/v3/users` (what synapse-admin lists with): as v2, but `deactivated`
/// filters both ways (`true` only deactivated accounts, `false` only active ones) and its absence
/// lists both.
async fn list_v3(
    State(state): State<AppState>,
    _admin: Admin,
    paged: Paged,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Value>> {
    list(&state, paged, &query, query.deactivated).await
}

/// What `GET /_synapse/admin/v2/users` and `/v3/users` share: the accounts, filtered and paged.
async fn list(
    state: &AppState,
    paged: Paged,
    query: &ListQuery,
    deactivated: Option<bool>,
) -> Result<axum::Json<Value>> {
    let filter = AccountFilter {
        // As Synapse: `user_id` is ignored when `name` is given.
        user_id: query.user_id.as_deref().filter(|_| query.name.is_none()),
        name: query.name.as_deref(),
        include_guests: query.guests.unwrap_or(true),
        deactivated,
        include_locked: query.locked.unwrap_or(false),
        admins: query.admins,
    };
    let order = order_of(query.order_by.as_deref())?;
    let page = users::list(&state.pool, &filter, order, paged.descending(), paged.paging).await?;
    let mut answer = json!({
        "users": page.items.iter().map(account_json).collect::<Vec<_>>(),
        "total": page.total,
    });
    add_next_token(&mut answer, page.next);
    Ok(axum::Json(answer))
}

/// `GET /_synapse/admin/v2/users/{userId}`.
async fn show(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    Ok(axum::Json(account_details_json(&users::get(&state.pool, &user_id).await?)))
}

/// `PUT /_synapse/admin/v2/users/{userId}`: 201 when the account was created, 200 when changed.
async fn put(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Json(changes): Json<UserChanges>,
) -> Result<(StatusCode, axum::Json<Value>)> {
    let user_id = args.local_user(0, &state)?;
    let (created, account) = users::create_or_modify(state.rooms(), &user_id, changes, admin.actor()).await?;
    admin.audit(if created { "create user" } else { "modify user" }, user_id.as_str());
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(account_details_json(&account))))
}

/// `GET /_synapse/admin/v1/users/{userId}/admin`.
async fn admin_flag(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    Ok(axum::Json(json!({ "admin": users::is_admin(&state.pool, &user_id).await? })))
}

#[derive(Deserialize)]
struct AdminFlag {
    admin: bool,
}

/// `PUT /_synapse/admin/v1/users/{userId}/admin`.
async fn set_admin_flag(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Json(body): Json<AdminFlag>,
) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    users::set_admin(&state.pool, admin.actor(), &user_id, body.admin).await?;
    admin.audit(if body.admin { "make admin" } else { "revoke admin" }, user_id.as_str());
    Ok(axum::Json(json!({})))
}

/// `POST /_synapse/admin/v1/users/{userId}/shadow_ban`.
async fn shadow_ban(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    users::set_shadow_banned(&state.pool, &user_id, true).await?;
    admin.audit("shadow-ban", user_id.as_str());
    Ok(axum::Json(json!({})))
}

/// `DELETE /_synapse/admin/v1/users/{userId}/shadow_ban`.
async fn lift_shadow_ban(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    users::set_shadow_banned(&state.pool, &user_id, false).await?;
    admin.audit("lift shadow-ban", user_id.as_str());
    Ok(axum::Json(json!({})))
}

/// `GET /_synapse/admin/v1/users/{userId}/override_ratelimit`: `{}` without an override.
async fn ratelimit(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    Ok(axum::Json(match users::ratelimit_override(&state.pool, &user_id).await? {
        Some(limit) => json!({ "messages_per_second": limit.messages_per_second, "burst_count": limit.burst_count }),
        None => json!({}),
    }))
}

#[derive(Deserialize)]
struct RateLimitBody {
    messages_per_second: Option<i64>,
    burst_count: Option<i64>,
}

/// `POST /_synapse/admin/v1/users/{userId}/override_ratelimit`.
async fn set_ratelimit(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Json(body): Json<RateLimitBody>,
) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let limit =
        users::set_ratelimit_override(&state.pool, &user_id, body.messages_per_second, body.burst_count).await?;
    admin.audit("override rate limit", user_id.as_str());
    Ok(axum::Json(json!({ "messages_per_second": limit.messages_per_second, "burst_count": limit.burst_count })))
}

/// `DELETE /_synapse/admin/v1/users/{userId}/override_ratelimit`.
async fn delete_ratelimit(State(state): State<AppState>, admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    users::delete_ratelimit_override(&state.pool, &user_id).await?;
    admin.audit("remove rate limit override", user_id.as_str());
    Ok(axum::Json(json!({})))
}

#[derive(Deserialize)]
struct UsernameQuery {
    username: Option<String>,
}

/// `GET /_synapse/admin/v1/username_available?username=…`: `{"available": true}`, or
/// `M_USER_IN_USE` / `M_INVALID_USERNAME`.
async fn username_available(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<UsernameQuery>,
) -> Result<axum::Json<Value>> {
    let username = query.username.ok_or_else(|| Error::missing_param("Missing string query argument username"))?;
    accounts::check_username_available(&state.pool, &state.server_name, &username).await?;
    Ok(axum::Json(json!({ "available": true })))
}

#[derive(Deserialize)]
struct DeactivateBody {
    #[serde(default)]
    erase: bool,
}

/// `POST /_synapse/admin/v1/deactivate/{userId}`.
async fn deactivate(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Json(body): Json<DeactivateBody>,
) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    devices::deactivate(state.rooms(), &user_id, body.erase).await?;
    admin.audit(if body.erase { "deactivate and erase" } else { "deactivate" }, user_id.as_str());
    Ok(axum::Json(json!({ "id_server_unbind_result": "success" })))
}

#[derive(Deserialize)]
struct ResetPasswordBody {
    new_password: String,
    logout_devices: Option<bool>,
}

/// `POST /_synapse/admin/v1/reset_password/{userId}`.
async fn reset_password(
    State(state): State<AppState>,
    admin: Admin,
    args: Args,
    Json(body): Json<ResetPasswordBody>,
) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let logout = body.logout_devices.unwrap_or(true);
    devices::reset_password(state.rooms(), admin.actor(), &user_id, body.new_password, logout).await?;
    admin.audit("reset password", user_id.as_str());
    Ok(axum::Json(json!({})))
}

#[derive(Deserialize)]
struct SinceQuery {
    from_ts: Option<i64>,
}

/// `GET /_synapse/admin/v1/users/{userId}/sent_invite_count?from_ts=…` (`INVITES`) and
/// `/cumulative_joined_room_count?from_ts=…`: the user's membership activity since `from_ts`
/// (required, as in Synapse).
async fn activity_count<const INVITES: bool>(
    State(state): State<AppState>,
    _admin: Admin,
    args: Args,
    Query(query): Query<SinceQuery>,
) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    let from_ts = query.from_ts.ok_or_else(|| Error::missing_param("Missing integer query parameter from_ts"))?;
    users::get(&state.pool, &user_id).await?;
    let activity = users::membership_activity_since(&state.pool, &user_id, from_ts).await?;
    Ok(axum::Json(if INVITES {
        json!({ "invite_count": activity.invites_sent })
    } else {
        json!({ "cumulative_joined_room_count": activity.rooms_joined })
    }))
}

/// `GET /_synapse/admin/v1/experimental_features/{userId}`: Hearth has no experimental
/// features to turn on per user, so the list is empty (synapse-admin shows it on a user's page).
async fn experimental_features(State(state): State<AppState>, _admin: Admin, args: Args) -> Result<axum::Json<Value>> {
    let user_id = args.local_user(0, &state)?;
    users::get(&state.pool, &user_id).await?;
    Ok(axum::Json(json!({ "features": {} })))
}
