//! `m.invite_permission_config` (spec v1.18, from MSC4380, which replaced MSC4155's allow and
//! block lists): with `{"default_action": "block"}` in their global account data a user
//! receives no invites at all. A missing, invalid or unknown `default_action` allows invites,
//! as the spec says, so a client writing a future value never locks its user out by accident.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use ruma::api::error::ErrorKind;
use ruma::{OwnedUserId, UserId};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// The stable account data type.
pub(crate) const INVITE_PERMISSION_CONFIG: &str = "m.invite_permission_config";

/// Refuses an invite to `invitee` with 403 `M_INVITE_BLOCKED` when they block invites, or
/// ignore `inviter` (blocking holds for invites: an ignored user cannot pull the blocker into
/// a room or a DM). Called before anything is written, so a blocked invite leaves no trace in
/// the room.
pub(crate) async fn ensure_invites_allowed(pool: &Store, invitee: &UserId, inviter: &UserId) -> Result<()> {
    let ignored = crate::users::ignore::ignored_users(pool, invitee).await?;
    let config = db::account_data::get(pool, invitee.as_str(), "", INVITE_PERMISSION_CONFIG).await?;
    invites_allowed(invitee, inviter, &ignored, config.as_ref())
}

/// [`ensure_invites_allowed`] for several invitees at once (two reads whatever their number):
/// the refusal of each invitee who refuses.
pub(crate) async fn invites_refused(
    pool: &Store,
    invitees: &[&UserId],
    inviter: &UserId,
) -> Result<HashMap<OwnedUserId, Error>> {
    let users: Vec<&str> = invitees.iter().map(|user| user.as_str()).collect();
    let types = [crate::users::ignore::IGNORED_USER_LIST, INVITE_PERMISSION_CONFIG];
    let data = db::account_data::global_of_users(pool, &users, &types).await?;
    let mut refused = HashMap::new();
    for invitee in invitees {
        let of = |kind: &str| {
            data.iter().find(|(user, data_type, _)| user == invitee.as_str() && data_type == kind).map(|(_, _, c)| c)
        };
        let ignored = crate::users::ignore::ignored_in(of(crate::users::ignore::IGNORED_USER_LIST));
        if let Err(error) = invites_allowed(invitee, inviter, &ignored, of(INVITE_PERMISSION_CONFIG)) {
            refused.insert((*invitee).to_owned(), error);
        }
    }
    Ok(refused)
}

/// The rule itself, given the invitee's ignore list and invite permission config.
fn invites_allowed(
    invitee: &UserId,
    inviter: &UserId,
    ignored: &HashSet<String>,
    config: Option<&Value>,
) -> Result<()> {
    if ignored.contains(inviter.as_str()) {
        return Err(Error::new(ErrorKind::InviteBlocked, format!("{invitee} does not accept invites from you")));
    }
    if config.is_some_and(|content| content["default_action"] == "block") {
        return Err(Error::new(ErrorKind::InviteBlocked, format!("{invitee} does not accept invites")));
    }
    Ok(())
}
