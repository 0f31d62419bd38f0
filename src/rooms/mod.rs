//! Rooms as federation-ready event DAGs: building, authorising and storing events, room
//! creation, membership, and reading history and state.

pub(crate) mod aliases;
pub mod build;
pub(crate) mod context;
pub mod create;
pub(crate) mod current_state;
pub(crate) mod directory;
pub(crate) mod facts;
pub mod filter;
pub(crate) mod hierarchy;
pub(crate) mod hierarchy_served;
pub(crate) mod knock;
pub(crate) mod known_memberships;
pub(crate) mod members;
pub mod membership;
pub(crate) mod membership_action;
pub(crate) mod pagination;
pub(crate) mod parsed;
pub mod pdu;
pub(crate) mod power;
pub(crate) mod read;
pub(crate) mod receipts;
pub(crate) mod redact;
pub(crate) mod relations;
pub(crate) mod reports;
pub(crate) mod resolve;
pub(crate) mod resolve_v1;
pub(crate) mod restricted;
pub mod send;
pub(crate) mod served;
pub(crate) mod shadow_ban;
pub(crate) mod state_event;
pub(crate) mod summary;
pub(crate) mod transaction_ids;
pub(crate) mod typing;
pub(crate) mod unchanged;
pub(crate) mod upgrade;
pub mod verify;
pub(crate) mod visibility;

pub(crate) use state_event::send_state_event;

use crate::error::{Error, Result};
use crate::signing_key::SigningKey;
use crate::store::Store;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{RoomVersionId, ServerName};

/// What room operations need from the server.
#[derive(Clone, Copy)]
pub struct RoomCtx<'a> {
    pub pool: &'a Store,
    pub server_name: &'a ServerName,
    pub key: &'a SigningKey,
    pub locks: &'a send::RoomLocks,
    pub streams: &'a crate::streams::Streams,
}

/// Room versions Hearth creates and serves: all the stable ones. Versions 1 and 2 name events
/// `$id:server` and list `prev_events` as pairs (see `build`), and version 1 resolves state
/// with the original algorithm (`resolve_v1`).
pub(crate) const SUPPORTED_VERSIONS: &[RoomVersionId] = &[
    RoomVersionId::V1,
    RoomVersionId::V2,
    RoomVersionId::V3,
    RoomVersionId::V4,
    RoomVersionId::V5,
    RoomVersionId::V6,
    RoomVersionId::V7,
    RoomVersionId::V8,
    RoomVersionId::V9,
    RoomVersionId::V10,
    RoomVersionId::V11,
    RoomVersionId::V12,
];

pub fn rules_for(version: &RoomVersionId) -> Result<RoomVersionRules> {
    if !SUPPORTED_VERSIONS.contains(version) {
        return Err(Error::new(
            ruma::api::error::ErrorKind::UnsupportedRoomVersion,
            format!("Room version {version} is not supported"),
        ));
    }
    version.rules().ok_or_else(|| Error::internal(format!("no rules for room version {version}")))
}
