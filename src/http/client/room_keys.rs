//! Server-side key backups: `/room_keys/version[/{version}]` and `/room_keys/keys[/{roomId}[/{sessionId}]]`.

use crate::e2ee::backup::{self, BackupInfo, IncomingKey, KeysState, Scope, StoredKey};
use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::client::backup::{
    BackupAlgorithm, RoomKeyBackup, add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session,
    create_backup_version, delete_backup_keys, delete_backup_keys_for_room, delete_backup_keys_for_session,
    delete_backup_version, get_backup_info, get_backup_keys, get_backup_keys_for_room, get_backup_keys_for_session,
    get_latest_backup_info, update_backup_version,
};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, UInt};
use std::collections::BTreeMap;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<create_backup_version::v3::Request, _, _>(create_version)
        .ruma::<get_latest_backup_info::v3::Request, _, _>(get_latest_version)
        .ruma::<get_backup_info::v3::Request, _, _>(get_version)
        .ruma::<update_backup_version::v3::Request, _, _>(update_version)
        .ruma::<delete_backup_version::v3::Request, _, _>(delete_version)
        .ruma::<add_backup_keys::v3::Request, _, _>(put_keys)
        .ruma::<add_backup_keys_for_room::v3::Request, _, _>(put_room_keys)
        .ruma::<add_backup_keys_for_session::v3::Request, _, _>(put_session_key)
        .ruma::<get_backup_keys::v3::Request, _, _>(get_keys)
        .ruma::<get_backup_keys_for_room::v3::Request, _, _>(get_room_keys)
        .ruma::<get_backup_keys_for_session::v3::Request, _, _>(get_session_key)
        .ruma::<delete_backup_keys::v3::Request, _, _>(delete_keys)
        .ruma::<delete_backup_keys_for_room::v3::Request, _, _>(delete_room_keys)
        .ruma::<delete_backup_keys_for_session::v3::Request, _, _>(delete_session_key)
}

fn uint(value: u64) -> Result<UInt> {
    UInt::try_from(value).map_err(|error| Error::internal(format!("key count out of range: {error}")))
}

/// `algorithm` and `auth_data` as ruma's (flattened) `BackupAlgorithm`.
fn algorithm(info: &BackupInfo) -> Result<Raw<BackupAlgorithm>> {
    let json = serde_json::json!({"algorithm": info.algorithm, "auth_data": info.auth_data});
    let raw = serde_json::value::to_raw_value(&json).map_err(|error| Error::internal(error.to_string()))?;
    Ok(Raw::from_json(raw))
}

fn changed<T>(state: KeysState, new: impl FnOnce(String, UInt) -> T) -> Result<RumaResponse<T>> {
    Ok(new(state.etag, uint(state.count)?).into())
}

fn room_id(key: &StoredKey) -> Result<OwnedRoomId> {
    OwnedRoomId::try_from(key.room_id.as_str())
        .map_err(|error| Error::internal(format!("stored backup room id {} is invalid: {error}", key.room_id)))
}

/// `POST /_matrix/client/*/room_keys/version`: create a new backup version.
async fn create_version(
    State(state): State<AppState>,
    request: Authed<create_backup_version::v3::Request>,
) -> Result<RumaResponse<create_backup_version::v3::Response>> {
    let version =
        backup::create_version(&state.pool, &request.session.user_id, request.body.algorithm.json().get()).await?;
    Ok(create_backup_version::v3::Response::new(version).into())
}

/// `GET /_matrix/client/*/room_keys/version`: get information about the latest backup.
async fn get_latest_version(
    State(state): State<AppState>,
    request: Authed<get_latest_backup_info::v3::Request>,
) -> Result<RumaResponse<get_latest_backup_info::v3::Response>> {
    let info = backup::latest_version(&state.pool, &request.session.user_id).await?;
    let algorithm = algorithm(&info)?;
    Ok(get_latest_backup_info::v3::Response::new(algorithm, uint(info.count)?, info.etag, info.version).into())
}

/// `GET /_matrix/client/*/room_keys/version/{version}`: get information about a specific backup.
async fn get_version(
    State(state): State<AppState>,
    request: Authed<get_backup_info::v3::Request>,
) -> Result<RumaResponse<get_backup_info::v3::Response>> {
    let info = backup::get_version(&state.pool, &request.session.user_id, &request.body.version).await?;
    let algorithm = algorithm(&info)?;
    Ok(get_backup_info::v3::Response::new(algorithm, uint(info.count)?, info.etag, info.version).into())
}

/// `PUT /_matrix/client/*/room_keys/version/{version}`: update information about an existing backup.
async fn update_version(
    State(state): State<AppState>,
    request: Authed<update_backup_version::v3::Request>,
) -> Result<RumaResponse<update_backup_version::v3::Response>> {
    let body = &request.body;
    backup::update_version(&state.pool, &request.session.user_id, &body.version, body.algorithm.json().get()).await?;
    Ok(update_backup_version::v3::Response::new().into())
}

/// `DELETE /_matrix/client/*/room_keys/version/{version}`: delete a backup version.
async fn delete_version(
    State(state): State<AppState>,
    request: Authed<delete_backup_version::v3::Request>,
) -> Result<RumaResponse<delete_backup_version::v3::Response>> {
    backup::delete_version(&state.pool, &request.session.user_id, &request.body.version).await?;
    Ok(delete_backup_version::v3::Response::new().into())
}

/// `PUT /_matrix/client/*/room_keys/keys`: store keys in the backup.
async fn put_keys(
    State(state): State<AppState>,
    request: Authed<add_backup_keys::v3::Request>,
) -> Result<RumaResponse<add_backup_keys::v3::Response>> {
    let body = &request.body;
    let mut keys = Vec::new();
    for (room_id, room) in &body.rooms {
        for (session_id, data) in &room.sessions {
            keys.push(IncomingKey::parse(room_id, session_id, data)?);
        }
    }
    let result = backup::put_keys(&state.pool, &request.session.user_id, &body.version, &keys).await?;
    changed(result, add_backup_keys::v3::Response::new)
}

/// `PUT /_matrix/client/*/room_keys/keys/{roomId}`: store keys in the backup for a room.
async fn put_room_keys(
    State(state): State<AppState>,
    request: Authed<add_backup_keys_for_room::v3::Request>,
) -> Result<RumaResponse<add_backup_keys_for_room::v3::Response>> {
    let body = &request.body;
    let keys = body
        .sessions
        .iter()
        .map(|(session_id, data)| IncomingKey::parse(&body.room_id, session_id, data))
        .collect::<Result<Vec<_>>>()?;
    let result = backup::put_keys(&state.pool, &request.session.user_id, &body.version, &keys).await?;
    changed(result, add_backup_keys_for_room::v3::Response::new)
}

/// `PUT /_matrix/client/*/room_keys/keys/{roomId}/{sessionId}`: store keys in the backup for a session.
async fn put_session_key(
    State(state): State<AppState>,
    request: Authed<add_backup_keys_for_session::v3::Request>,
) -> Result<RumaResponse<add_backup_keys_for_session::v3::Response>> {
    let body = &request.body;
    let key = IncomingKey::parse(&body.room_id, &body.session_id, &body.session_data)?;
    let result = backup::put_keys(&state.pool, &request.session.user_id, &body.version, &[key]).await?;
    changed(result, add_backup_keys_for_session::v3::Response::new)
}

/// `GET /_matrix/client/*/room_keys/keys`: retrieve all keys from a backup version.
async fn get_keys(
    State(state): State<AppState>,
    request: Authed<get_backup_keys::v3::Request>,
) -> Result<RumaResponse<get_backup_keys::v3::Response>> {
    let keys = backup::get_keys(&state.pool, &request.session.user_id, &request.body.version, Scope::All).await?;
    let mut rooms: BTreeMap<OwnedRoomId, BTreeMap<String, _>> = BTreeMap::new();
    for key in keys {
        rooms.entry(room_id(&key)?).or_default().insert(key.session_id, key.data);
    }
    let rooms = rooms.into_iter().map(|(room_id, sessions)| (room_id, RoomKeyBackup::new(sessions))).collect();
    Ok(get_backup_keys::v3::Response::new(rooms).into())
}

/// `GET /_matrix/client/*/room_keys/keys/{roomId}`: retrieve sessions from the backup for a given room.
///
/// A room without keys answers `{"sessions": {}}`, as the spec says.
async fn get_room_keys(
    State(state): State<AppState>,
    request: Authed<get_backup_keys_for_room::v3::Request>,
) -> Result<RumaResponse<get_backup_keys_for_room::v3::Response>> {
    let body = &request.body;
    let scope = Scope::Room(body.room_id.as_str());
    let keys = backup::get_keys(&state.pool, &request.session.user_id, &body.version, scope).await?;
    let sessions = keys.into_iter().map(|key| (key.session_id, key.data)).collect();
    Ok(get_backup_keys_for_room::v3::Response::new(sessions).into())
}

/// `GET /_matrix/client/*/room_keys/keys/{roomId}/{sessionId}`: retrieve a key from the backup for a given session.
async fn get_session_key(
    State(state): State<AppState>,
    request: Authed<get_backup_keys_for_session::v3::Request>,
) -> Result<RumaResponse<get_backup_keys_for_session::v3::Response>> {
    let body = &request.body;
    let scope = Scope::Session(body.room_id.as_str(), &body.session_id);
    let keys = backup::get_keys(&state.pool, &request.session.user_id, &body.version, scope).await?;
    let key = keys.into_iter().next().ok_or_else(|| Error::not_found("No key for this session in the backup"))?;
    Ok(get_backup_keys_for_session::v3::Response::new(key.data).into())
}

/// `DELETE /_matrix/client/*/room_keys/keys`: delete all keys from a backup.
async fn delete_keys(
    State(state): State<AppState>,
    request: Authed<delete_backup_keys::v3::Request>,
) -> Result<RumaResponse<delete_backup_keys::v3::Response>> {
    let result = backup::delete_keys(&state.pool, &request.session.user_id, &request.body.version, Scope::All).await?;
    changed(result, delete_backup_keys::v3::Response::new)
}

/// `DELETE /_matrix/client/*/room_keys/keys/{roomId}`: delete keys from a backup for a given room.
async fn delete_room_keys(
    State(state): State<AppState>,
    request: Authed<delete_backup_keys_for_room::v3::Request>,
) -> Result<RumaResponse<delete_backup_keys_for_room::v3::Response>> {
    let body = &request.body;
    let scope = Scope::Room(body.room_id.as_str());
    let result = backup::delete_keys(&state.pool, &request.session.user_id, &body.version, scope).await?;
    changed(result, delete_backup_keys_for_room::v3::Response::new)
}

/// `DELETE /_matrix/client/*/room_keys/keys/{roomId}/{sessionId}`: delete keys from a backup for a given session.
async fn delete_session_key(
    State(state): State<AppState>,
    request: Authed<delete_backup_keys_for_session::v3::Request>,
) -> Result<RumaResponse<delete_backup_keys_for_session::v3::Response>> {
    let body = &request.body;
    let scope = Scope::Session(body.room_id.as_str(), &body.session_id);
    let result = backup::delete_keys(&state.pool, &request.session.user_id, &body.version, scope).await?;
    changed(result, delete_backup_keys_for_session::v3::Response::new)
}
