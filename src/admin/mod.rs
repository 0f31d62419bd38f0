//! Operating the server: every admin operation as a domain function that the admin API
//! (`http/admin/`) and the `hearth` CLI both call. Paths and answers follow Synapse's admin
//! API at the edge; here are the rules: who may be changed how, and what a change takes with
//! it.
//!
//! Every operation that changes something is recorded by [`audit`]: who did it, to what, and
//! under which request id.

pub(crate) mod devices;
pub(crate) mod history_purge;
pub(crate) mod room_admin;
pub(crate) mod room_deletion;
pub(crate) mod rooms;
pub(crate) mod server;
pub(crate) mod users;

use crate::error::{Error, Result};
use crate::users::actor::Actor;
use ruma::{OwnedUserId, ServerName, UserId};

/// Writes the audit log line of an admin action: who (an admin's device, or the operator at
/// the CLI), what, to what; `request_id` ties the line to the request's other logs.
pub(crate) fn audit(actor: Actor<'_>, action: &str, target: &str, request_id: &str) {
    let actor = actor.describe();
    tracing::info!(target: "hearth::admin::audit", actor, action, target, request_id, "admin action");
}

/// `user_id` as a user id of this server: admin operations act on local accounts only.
pub(crate) fn local_user(server_name: &ServerName, user_id: &str) -> Result<OwnedUserId> {
    let user_id = UserId::parse(user_id).map_err(|error| Error::invalid_param(format!("Invalid user id: {error}")))?;
    if user_id.server_name() != server_name {
        return Err(Error::invalid_param("This endpoint can only be used with local users"));
    }
    Ok(user_id)
}
