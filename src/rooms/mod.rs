//! Rooms as federation-ready event DAGs: building, authorising and storing events, room
//! creation, membership, and reading history and state.

pub mod aliases;
pub mod build;
pub mod context;
pub mod create;
pub mod current_state;
pub mod directory;
pub mod facts;
pub mod filter;
pub mod hierarchy;
pub mod hierarchy_served;
pub mod knock;
pub mod known_memberships;
pub mod members;
pub mod membership;
pub mod membership_action;
pub mod pagination;
pub mod pdu;
pub mod power;
pub mod read;
pub mod receipts;
pub mod redact;
pub mod relations;
pub mod reports;
pub mod resolve;
pub mod resolve_v1;
pub mod restricted;
pub mod send;
pub mod served;
pub mod shadow_ban;
pub mod state_event;
pub mod summary;
pub mod transaction_ids;
pub mod typing;
pub mod unchanged;
pub mod upgrade;
pub mod verify;
pub mod visibility;

pub use state_event::send_state_event;

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
pub const SUPPORTED_VERSIONS: &[RoomVersionId] = &[
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
