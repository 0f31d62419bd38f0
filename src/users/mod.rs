//! Accounts, sessions and per-user data: everything a user can do to their own account,
//! as plain async functions that the HTTP edge, the CLI and (later) the admin API all call.

pub(crate) mod account_data;
pub mod accounts;
pub(crate) mod actor;
pub(crate) mod devices;
pub(crate) mod directory;
pub(crate) mod filters;
pub(crate) mod ignore;
pub(crate) mod invite_permission;
pub(crate) mod localpart;
pub(crate) mod password;
pub(crate) mod presence;
pub(crate) mod profile;
pub(crate) mod room_tags;
pub(crate) mod scram;
pub(crate) mod sessions;
pub(crate) mod shared_secret;
pub(crate) mod to_device;
pub(crate) mod token_cache;
pub(crate) mod tokens;
pub(crate) mod turn;
pub(crate) mod uia;

pub(crate) use actor::Actor;

use crate::db::admin_users::RateLimitOverride;
use ruma::{OwnedDeviceId, OwnedUserId};

/// An authenticated requester: the owner of a valid access token.
#[derive(Clone, Debug)]
pub struct Session {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub is_admin: bool,
    pub is_guest: bool,
    /// Read with the token (one round trip for both), so what a request sends needs no
    /// query of its own to learn whether it goes anywhere (`rooms::shadow_ban`)...
    pub shadow_banned: bool,
    /// ...or what budget it is counted against (`ratelimit`): the admin's override, if any.
    pub message_limit: Option<RateLimitOverride>,
}

/// Where a request came from, recorded as a device's last sighting.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}
