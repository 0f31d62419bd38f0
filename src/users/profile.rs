//! Profiles: `displayname`, `avatar_url` and the extended fields of spec v1.16, kept as one
//! JSON object per user.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::users::Session;
use ruma::UserId;
use ruma::api::error::ErrorKind;
use serde_json::{Map, Value};
use sqlx::PgConnection;

/// The spec's limits: a whole profile at most 64 KiB, a field name at most 255 bytes.
const MAX_PROFILE_BYTES: usize = 65_536;
const MAX_FIELD_NAME_BYTES: usize = 255;
/// Synapse's limits for the two classic fields.
const MAX_DISPLAYNAME_CHARS: usize = 256;
const MAX_AVATAR_URL_BYTES: usize = 1000;

/// `true` on a creator's profile (see `creators::flag`). Only the operator sets it, so that
/// members can trust the badge: a user's own writes of it are refused.
pub(crate) const CREATOR_FIELD: &str = "io.hearth.creator";

/// Refuses `viewer` a look at `user`'s profile when `user` ignores them: to the blocked user
/// the blocker's profile is as absent as an unknown user's (blocking holds for profile
/// lookups, issue #21).
pub(crate) async fn ensure_visible_to(pool: &Store, user: &UserId, viewer: Option<&UserId>) -> Result<()> {
    if let Some(viewer) = viewer
        && crate::users::ignore::ignored_users(pool, user).await?.contains(viewer.as_str())
    {
        return Err(Error::not_found("Profile not found"));
    }
    Ok(())
}

pub(crate) async fn get(pool: &Store, user_id: &UserId) -> Result<Map<String, Value>> {
    db::users::profile(pool, user_id.as_str()).await?.ok_or_else(|| Error::not_found("Profile not found"))
}

pub(crate) async fn get_field(pool: &Store, user_id: &UserId, field: &str) -> Result<Value> {
    let profile = get(pool, user_id).await?;
    profile.get(field).cloned().ok_or_else(|| Error::not_found(format!("The profile has no {field:?} field")))
}

/// Sets (or, with `None` or an empty display name, removes) one field of the caller's profile.
pub(crate) async fn set_field(
    pool: &Store,
    session: &Session,
    user_id: &UserId,
    field: &str,
    value: Option<Value>,
) -> Result<()> {
    if session.user_id != user_id {
        return Err(Error::forbidden("You can only change your own profile"));
    }
    if field == CREATOR_FIELD {
        return Err(Error::forbidden(format!("{CREATOR_FIELD} is set by the server's operator")));
    }
    let mut tx = pool.begin().await?;
    write_field(&mut tx, user_id, field, value).await?;
    tx.commit().await?;
    Ok(())
}

/// Sets (or removes) one field of `user_id`'s profile inside the caller's transaction, with
/// the same checks for every writer (the user, or an operator through the admin API).
pub(crate) async fn write_field(
    tx: &mut PgConnection,
    user_id: &UserId,
    field: &str,
    value: Option<Value>,
) -> Result<()> {
    if field.len() > MAX_FIELD_NAME_BYTES {
        return Err(Error::new(ErrorKind::KeyTooLarge, "The field name is longer than 255 bytes"));
    }
    let value = value.map(|value| validate(field, value)).transpose()?.flatten();
    let mut profile = db::users::profile_for_update(&mut *tx, user_id.as_str())
        .await?
        .ok_or_else(|| Error::not_found("Profile not found"))?;
    match value {
        Some(value) => profile.insert(field.to_owned(), value),
        None => profile.remove(field),
    };
    let size = serde_json::to_vec(&profile).map(|bytes| bytes.len()).unwrap_or(usize::MAX);
    if size > MAX_PROFILE_BYTES {
        return Err(Error::new(ErrorKind::ProfileTooLarge, "The profile would exceed 64 KiB"));
    }
    db::users::set_profile(&mut *tx, user_id.as_str(), profile).await?;
    Ok(())
}

/// `Ok(None)` means "remove the field".
fn validate(field: &str, value: Value) -> Result<Option<Value>> {
    match field {
        "displayname" => match value {
            Value::Null => Ok(None),
            Value::String(name) if name.is_empty() => Ok(None),
            Value::String(name) if name.chars().count() > MAX_DISPLAYNAME_CHARS => {
                Err(Error::invalid_param(format!("A display name may be at most {MAX_DISPLAYNAME_CHARS} characters")))
            }
            Value::String(name) => Ok(Some(Value::String(name))),
            _ => Err(Error::bad_json("displayname must be a string")),
        },
        "avatar_url" => match value {
            Value::Null => Ok(None),
            Value::String(url) if url.is_empty() => Ok(None),
            Value::String(url) if url.len() > MAX_AVATAR_URL_BYTES => {
                Err(Error::invalid_param(format!("avatar_url may be at most {MAX_AVATAR_URL_BYTES} bytes")))
            }
            Value::String(url) => Ok(Some(Value::String(url))),
            _ => Err(Error::bad_json("avatar_url must be a string")),
        },
        _ => Ok(Some(value)),
    }
}
