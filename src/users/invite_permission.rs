//! `m.invite_permission_config` (spec v1.18, from MSC4380, which replaced MSC4155's allow and
//! block lists): with `{"default_action": "block"}` in their global account data a user
//! receives no invites at all. A missing, invalid or unknown `default_action` allows invites,
//! as the spec says, so a client writing a future value never locks its user out by accident.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use ruma::UserId;
use ruma::api::error::ErrorKind;

/// The stable account data type.
pub const INVITE_PERMISSION_CONFIG: &str = "m.invite_permission_config";

/// Refuses an invite to `invitee` with 403 `M_INVITE_BLOCKED` when they block invites, or
/// ignore `inviter` (blocking holds for invites: an ignored user cannot pull the blocker into
/// a room or a DM). Called before anything is written, so a blocked invite leaves no trace in
/// the room.
pub async fn ensure_invites_allowed(pool: &Store, invitee: &UserId, inviter: &UserId) -> Result<()> {
    if crate::users::ignore::ignored_users(pool, invitee).await?.contains(inviter.as_str()) {
        return Err(Error::new(ErrorKind::InviteBlocked, format!("{invitee} does not accept invites from you")));
    }
    let content = db::account_data::get(pool, invitee.as_str(), "", INVITE_PERMISSION_CONFIG).await?;
    let blocked = content.as_ref().is_some_and(|content| content["default_action"] == "block");
    if blocked {
        return Err(Error::new(ErrorKind::InviteBlocked, format!("{invitee} does not accept invites")));
    }
    Ok(())
}
