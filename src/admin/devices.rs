//! A user's sessions and data as an admin sees and ends them: devices, where the user was
//! seen, their rooms and account data, password resets and deactivation.

use crate::admin::users;
use crate::db;
use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::store::Store;
use crate::streams::Streams;
use crate::time::now_ms;
use crate::users::actor::Actor;
use crate::users::{accounts, devices, tokens};
use ruma::UserId;
use serde_json::{Map, Value};

pub(crate) use crate::db::admin_users::DeviceRecord;

/// `POST /v1/users/{userId}/login`: an access token to act as the user (valid until
/// `valid_until_ms` if given), on a device hidden from the user's device listings so that the
/// admin's visit does not show up there, as with Synapse's deviceless token. Admins cannot
/// use it on themselves.
pub(crate) async fn login_as(
    pool: &Store,
    admin: &UserId,
    user_id: &UserId,
    valid_until_ms: Option<i64>,
) -> Result<String> {
    if admin == user_id {
        return Err(Error::unknown("Cannot use admin API to login as self"));
    }
    let account = users::get(pool, user_id).await?;
    if account.deactivated {
        return Err(Error::unknown("Cannot log in as a deactivated user"));
    }
    let now = now_ms();
    if valid_until_ms.is_some_and(|until| until <= now) {
        return Err(Error::invalid_param("valid_until_ms is in the past"));
    }
    let access_token = tokens::new_access_token();
    let mut tx = pool.begin().await?;
    let (device_id, hash) = (tokens::new_device_id(), tokens::hash_token(&access_token));
    db::devices::insert_hidden_session(&mut tx, user_id.as_str(), &device_id, &hash, valid_until_ms, now).await?;
    tx.commit().await?;
    Ok(access_token)
}

/// `GET /v2/users/{userId}/devices` (also what `whois` shows).
pub(crate) async fn list(pool: &Store, user_id: &UserId) -> Result<Vec<DeviceRecord>> {
    users::get(pool, user_id).await?;
    Ok(db::admin_users::devices(pool, user_id.as_str()).await?)
}

/// `GET /v2/users/{userId}/devices/{deviceId}`.
pub(crate) async fn get(pool: &Store, user_id: &UserId, device_id: &str) -> Result<DeviceRecord> {
    list(pool, user_id)
        .await?
        .into_iter()
        .find(|device| device.device_id == device_id)
        .ok_or_else(|| Error::not_found("Device not found"))
}

/// `PUT /v2/users/{userId}/devices/{deviceId}`.
pub(crate) async fn rename(pool: &Store, user_id: &UserId, device_id: &str, display_name: Option<&str>) -> Result<()> {
    users::get(pool, user_id).await?;
    devices::rename(pool, user_id, device_id, display_name).await
}

/// `DELETE /v2/users/{userId}/devices/{deviceId}` and `POST .../delete_devices`: the devices
/// and their tokens go; ids that do not exist are ignored, as Synapse does.
pub(crate) async fn delete(pool: &Store, streams: &Streams, user_id: &UserId, device_ids: &[String]) -> Result<()> {
    users::get(pool, user_id).await?;
    devices::delete_now(pool, streams, user_id, device_ids).await?;
    Ok(())
}

/// `GET /v1/users/{userId}/joined_rooms`.
pub(crate) async fn joined_rooms(pool: &Store, user_id: &UserId) -> Result<Vec<String>> {
    users::get(pool, user_id).await?;
    Ok(db::rooms::joined_rooms(pool, user_id.as_str()).await?)
}

/// `GET /v1/users/{userId}/memberships`: every room where this server knows a membership of
/// the user (local or not), with it.
pub(crate) async fn memberships(pool: &Store, user_id: &UserId) -> Result<Vec<(String, String)>> {
    Ok(db::rooms::memberships_of_user(pool, user_id.as_str()).await?)
}

/// A user's account data: global (by type) and per room (by room, then type).
pub(crate) struct AccountData {
    pub global: Map<String, Value>,
    pub rooms: Map<String, Value>,
}

/// `GET /v1/users/{userId}/accountdata`. Entries that cannot be read are left out.
pub(crate) async fn account_data(pool: &Store, user_id: &UserId) -> Result<AccountData> {
    users::get(pool, user_id).await?;
    let mut data = AccountData { global: Map::new(), rooms: Map::new() };
    for (room_id, data_type, content) in db::admin_users::account_data(pool, user_id.as_str()).await? {
        let Some(content) = content.into_value() else { continue };
        if room_id.is_empty() {
            data.global.insert(data_type, content);
        } else if let Value::Object(room) = data.rooms.entry(room_id).or_insert_with(|| Value::Object(Map::new())) {
            room.insert(data_type, content);
        }
    }
    Ok(data)
}

/// `POST /v1/deactivate/{userId}`: the account is closed for good and leaves its rooms; with
/// `erase`, its messages are served redacted to whoever was not in the room when they were
/// sent.
pub(crate) async fn deactivate(ctx: RoomCtx<'_>, user_id: &UserId, erase: bool) -> Result<()> {
    users::get(ctx.pool, user_id).await?;
    accounts::deactivate_now(ctx.pool, user_id, erase).await?;
    crate::rooms::membership::leave_all(ctx, user_id).await?;
    Ok(())
}

/// `POST /v1/reset_password/{userId}`: a new password; the user's sessions end unless
/// `logout_devices` is false.
pub(crate) async fn reset_password(
    ctx: RoomCtx<'_>,
    actor: Actor<'_>,
    user_id: &UserId,
    new_password: String,
    logout_devices: bool,
) -> Result<()> {
    let changes =
        users::UserChanges { password: Some(new_password), logout_devices: Some(logout_devices), ..Default::default() };
    let account = users::get(ctx.pool, user_id).await?;
    if account.deactivated {
        return Err(Error::user_deactivated());
    }
    users::create_or_modify(ctx, user_id, changes, actor).await?;
    Ok(())
}
