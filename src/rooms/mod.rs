//! Rooms as federation-ready event DAGs: building, authorising and storing events, room
//! creation, membership, and reading history and state.

pub mod append;
pub mod build;
pub mod create;
pub mod locks;
pub mod membership;
pub mod pdu;
pub mod read;

use crate::error::{Error, Result};
use crate::federation::keys::SigningKey;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{RoomVersionId, ServerName};
use sqlx::PgPool;

/// What room operations need from the server.
#[derive(Clone, Copy)]
pub struct RoomCtx<'a> {
    pub pool: &'a PgPool,
    pub server_name: &'a ServerName,
    pub key: &'a SigningKey,
    pub locks: &'a locks::RoomLocks,
}

/// Room versions Hearth creates and serves: those whose state resolution (v2) ruma implements.
pub const SUPPORTED_VERSIONS: &[RoomVersionId] = &[
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
            http::StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::UnsupportedRoomVersion,
            format!("Room version {version} is not supported"),
        ));
    }
    version.rules().ok_or_else(|| Error::internal(format!("no rules for room version {version}")))
}
