//! The creator flag: set by the operator (`hearth user creator NAME [--off]`), shown to
//! everyone as the profile field `io.hearth.creator`. Only creators receive tips.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::users::profile::{CREATOR_FIELD, write_field};
use ruma::UserId;
use serde_json::Value;

/// Whether `user` is a creator of this server (false for unknown and remote users).
pub async fn is_creator(pool: &Store, user: &UserId) -> Result<bool> {
    let profile = db::users::profile(pool, user.as_str()).await?;
    Ok(profile.is_some_and(|profile| profile.get(CREATOR_FIELD) == Some(&Value::Bool(true))))
}

/// Makes `user` a creator, or (with `on` false) no longer one.
pub async fn set_creator(pool: &Store, user: &UserId, on: bool) -> Result<()> {
    if !db::users::exists(pool, user.as_str()).await? {
        return Err(Error::not_found(format!("{user} has no account here")));
    }
    let mut tx = pool.begin().await?;
    write_field(&mut tx, user, CREATOR_FIELD, on.then_some(Value::Bool(true))).await?;
    tx.commit().await?;
    Ok(())
}
