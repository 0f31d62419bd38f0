//! Server-side key backups: a user's devices upload encrypted copies of their megolm session
//! keys into a backup version and read them back later.
//!
//! Each write runs in one transaction under the user's backup lock (`db::key_backup::lock_user`),
//! so the current-version check, the keys, the etag and the count always agree.

use crate::db;
pub(crate) use crate::db::key_backup::Scope;
use crate::db::key_backup::{NewSession, SessionRow, VersionInfoRow, VersionRow};
use crate::error::{Error, Result};
use crate::store::Store;
use ruma::UInt;
use ruma::api::client::backup::KeyBackupData;
use ruma::serde::Raw;
use ruma::{RoomId, UserId};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A backup version as clients see it.
pub(crate) struct BackupInfo {
    pub version: String,
    pub algorithm: String,
    pub auth_data: Value,
    pub count: u64,
    pub etag: String,
}

/// What a change to a version's keys leaves behind.
pub(crate) struct KeysState {
    pub etag: String,
    pub count: u64,
}

/// One backed-up session key.
pub(crate) struct StoredKey {
    pub room_id: String,
    pub session_id: String,
    pub data: Raw<KeyBackupData>,
}

/// The fields of a backup version the server checks; `auth_data` is the algorithm's business
/// and is stored as sent. (ruma's `BackupAlgorithm` would reject algorithms it does not know
/// and re-serialise the ones it does, so only its outer shape is checked here.)
#[derive(Deserialize)]
struct AlgorithmBody {
    algorithm: String,
    auth_data: Map<String, Value>,
    version: Option<String>,
}

/// The fields of a session key the server compares. ruma's `KeyBackupData` types
/// `session_data` for one algorithm; the spec leaves it algorithm-dependent and the server
/// stores it untouched, so it is read here as any JSON object.
#[derive(Deserialize)]
struct KeyBody {
    first_message_index: UInt,
    forwarded_count: UInt,
    is_verified: bool,
    session_data: Map<String, Value>,
}

/// A session key parsed from a request, ready to store.
pub(crate) struct IncomingKey {
    room_id: String,
    session_id: String,
    first_message_index: i64,
    forwarded_count: i64,
    is_verified: bool,
    session_data: Value,
}

impl IncomingKey {
    pub(crate) fn parse(room_id: &RoomId, session_id: &str, raw: &Raw<KeyBackupData>) -> Result<IncomingKey> {
        // Megolm session ids are 43 bytes; the bound keeps an identifier an identifier.
        if session_id.len() > 255 {
            return Err(Error::invalid_param("A session id may be at most 255 bytes"));
        }
        let body: KeyBody = serde_json::from_str(raw.json().get()).map_err(|error| {
            Error::bad_json(format!("Invalid key data for session {session_id} in {room_id}: {error}"))
        })?;
        Ok(IncomingKey {
            room_id: room_id.as_str().to_owned(),
            session_id: session_id.to_owned(),
            first_message_index: uint_to_i64(body.first_message_index),
            forwarded_count: uint_to_i64(body.forwarded_count),
            is_verified: body.is_verified,
            session_data: Value::Object(body.session_data),
        })
    }
}

/// `UInt` is at most 2^53 - 1, so it always fits.
fn uint_to_i64(value: UInt) -> i64 {
    i64::try_from(u64::from(value)).unwrap_or(i64::MAX)
}

fn parse_algorithm(json: &str) -> Result<AlgorithmBody> {
    let body: AlgorithmBody =
        serde_json::from_str(json).map_err(|error| Error::bad_json(format!("Invalid backup algorithm: {error}")))?;
    if body.algorithm != MEGOLM_BACKUP_V1 {
        return Err(Error::invalid_param(format!(
            "Unknown backup algorithm {}; this server knows {MEGOLM_BACKUP_V1}",
            body.algorithm
        )));
    }
    // The spec's `auth_data` for that algorithm: the public key, and signatures if any.
    if !body.auth_data.get("public_key").is_some_and(Value::is_string) {
        return Err(Error::bad_json("auth_data.public_key must be a string"));
    }
    if body.auth_data.get("signatures").is_some_and(|signatures| !signatures.is_object()) {
        return Err(Error::bad_json("auth_data.signatures must be an object"));
    }
    // Devices sign `auth_data` so that others can trust the backup.
    crate::e2ee::signatures::require_canonical(&Value::Object(body.auth_data.clone()), "auth_data")?;
    Ok(body)
}

/// The one backup algorithm the spec defines.
const MEGOLM_BACKUP_V1: &str = "m.megolm_backup.v1.curve25519-aes-sha2";

/// Version strings are the decimal numbers this server hands out; anything else names no
/// version.
fn parse_version(version: &str) -> Option<i64> {
    version.parse::<i64>().ok().filter(|v| *v > 0 && v.to_string() == version)
}

fn not_found(version: &str) -> Error {
    Error::not_found(format!("Unknown backup version {version}"))
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Creates a new version, which becomes the current one; returns its version string.
/// `algorithm` is the request body: `algorithm` and `auth_data`.
pub(crate) async fn create_version(pool: &Store, user_id: &UserId, algorithm: &str) -> Result<String> {
    let body = parse_algorithm(algorithm)?;
    let mut tx = pool.begin().await?;
    db::key_backup::lock_user(&mut tx, user_id.as_str()).await?;
    let version =
        db::key_backup::create_version(&mut *tx, user_id.as_str(), &body.algorithm, &body.auth_data.into()).await?;
    tx.commit().await?;
    Ok(version.to_string())
}

fn info(found: VersionInfoRow) -> BackupInfo {
    let VersionInfoRow { row, count } = found;
    BackupInfo {
        version: row.version.to_string(),
        algorithm: row.algorithm,
        // Unreadable (logged): the version is still listed, so that it can be replaced or deleted.
        auth_data: row.auth_data.into_value().unwrap_or_else(|| Value::Object(Map::new())),
        count: self::count(count),
        etag: row.etag.to_string(),
    }
}

/// The current (latest live) version.
pub(crate) async fn latest_version(pool: &Store, user_id: &UserId) -> Result<BackupInfo> {
    let found = db::key_backup::live_version_info(pool, user_id.as_str(), None)
        .await?
        .ok_or_else(|| Error::not_found("No backup version exists"))?;
    Ok(info(found))
}

pub(crate) async fn get_version(pool: &Store, user_id: &UserId, version: &str) -> Result<BackupInfo> {
    let number = parse_version(version).ok_or_else(|| not_found(version))?;
    let found = db::key_backup::live_version_info(pool, user_id.as_str(), Some(number))
        .await?
        .ok_or_else(|| not_found(version))?;
    Ok(info(found))
}

/// A live version: deleted or unknown versions are `M_NOT_FOUND`.
async fn live_version(db: impl sqlx::PgExecutor<'_>, user_id: &UserId, version: &str) -> Result<VersionRow> {
    let number = parse_version(version).ok_or_else(|| not_found(version))?;
    match db::key_backup::version(db, user_id.as_str(), number).await? {
        Some(row) if !row.deleted => Ok(row),
        _ => Err(not_found(version)),
    }
}

/// Replaces a version's `auth_data`. The algorithm cannot change, and a `version` in the body
/// must name the version in the path.
pub(crate) async fn update_version(pool: &Store, user_id: &UserId, version: &str, algorithm: &str) -> Result<()> {
    let body = parse_algorithm(algorithm)?;
    if body.version.as_deref().is_some_and(|v| v != version) {
        return Err(Error::invalid_param("The version in the body does not match the version in the path"));
    }
    let mut tx = pool.begin().await?;
    db::key_backup::lock_user(&mut tx, user_id.as_str()).await?;
    let row = live_version(&mut *tx, user_id, version).await?;
    if row.algorithm != body.algorithm {
        return Err(Error::invalid_param(format!("The algorithm of a backup cannot change (it is {})", row.algorithm)));
    }
    db::key_backup::update_auth_data(&mut *tx, user_id.as_str(), row.version, &body.auth_data.into()).await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes a version and its keys. Deleting it again succeeds, as the spec asks; a version that
/// never existed is `M_NOT_FOUND`.
pub(crate) async fn delete_version(pool: &Store, user_id: &UserId, version: &str) -> Result<()> {
    let number = parse_version(version).ok_or_else(|| not_found(version))?;
    let mut tx = pool.begin().await?;
    db::key_backup::lock_user(&mut tx, user_id.as_str()).await?;
    let row = db::key_backup::version(&mut *tx, user_id.as_str(), number).await?.ok_or_else(|| not_found(version))?;
    if !row.deleted {
        db::key_backup::delete_sessions(&mut *tx, user_id.as_str(), number, Scope::All).await?;
        db::key_backup::mark_deleted(&mut *tx, user_id.as_str(), number).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Stores keys in the current version, keeping a stored key where it is at least as good as
/// the new one. Writing to any other version is `M_WRONG_ROOM_KEYS_VERSION`, so that a client
/// still writing to a replaced backup learns of the new one.
pub(crate) async fn put_keys(pool: &Store, user_id: &UserId, version: &str, keys: &[IncomingKey]) -> Result<KeysState> {
    let mut tx = pool.begin().await?;
    db::key_backup::lock_user(&mut tx, user_id.as_str()).await?;
    let current = db::key_backup::current_version(&mut *tx, user_id.as_str())
        .await?
        .ok_or_else(|| Error::not_found("No backup version exists"))?;
    if parse_version(version) != Some(current.version) {
        return Err(Error::wrong_room_keys_version(current.version.to_string()));
    }
    let sessions: Vec<NewSession<'_>> = keys
        .iter()
        .map(|key| NewSession {
            room_id: &key.room_id,
            session_id: &key.session_id,
            first_message_index: key.first_message_index,
            forwarded_count: key.forwarded_count,
            is_verified: key.is_verified,
            session_data: &key.session_data,
        })
        .collect();
    let changed = db::key_backup::upsert_sessions(&mut *tx, user_id.as_str(), current.version, &sessions).await?;
    let state = finish_change(&mut tx, user_id, &current, changed).await?;
    tx.commit().await?;
    Ok(state)
}

/// Bumps the etag if the keys changed, and reads the count, inside the writing transaction.
async fn finish_change(
    tx: &mut db::Transaction,
    user_id: &UserId,
    row: &VersionRow,
    changed: u64,
) -> Result<KeysState> {
    let etag =
        if changed > 0 { db::key_backup::bump_etag(&mut **tx, user_id.as_str(), row.version).await? } else { row.etag };
    let count = db::key_backup::count_sessions(&mut **tx, user_id.as_str(), row.version).await?;
    Ok(KeysState { etag: etag.to_string(), count: self::count(count) })
}

/// Keys of a live version within `scope` (any version may be read, not only the current one).
pub(crate) async fn get_keys(
    pool: &Store,
    user_id: &UserId,
    version: &str,
    scope: Scope<'_>,
) -> Result<Vec<StoredKey>> {
    let row = live_version(pool, user_id, version).await?;
    let rows = db::key_backup::sessions(pool, user_id.as_str(), row.version, scope).await?;
    rows.into_iter().filter_map(stored_key).collect()
}

/// The key as served; `None` when its stored data cannot be read (logged), so that the other
/// keys are still served.
fn stored_key(row: SessionRow) -> Option<Result<StoredKey>> {
    let json = serde_json::json!({
        "first_message_index": row.first_message_index,
        "forwarded_count": row.forwarded_count,
        "is_verified": row.is_verified,
        "session_data": row.session_data.into_value()?,
    });
    let raw = serde_json::value::to_raw_value(&json).map_err(|error| Error::internal(error.to_string()));
    Some(raw.map(|raw| StoredKey { room_id: row.room_id, session_id: row.session_id, data: Raw::from_json(raw) }))
}

/// Deletes keys of a live version within `scope`.
pub(crate) async fn delete_keys(pool: &Store, user_id: &UserId, version: &str, scope: Scope<'_>) -> Result<KeysState> {
    let mut tx = pool.begin().await?;
    db::key_backup::lock_user(&mut tx, user_id.as_str()).await?;
    let row = live_version(&mut *tx, user_id, version).await?;
    let deleted = db::key_backup::delete_sessions(&mut *tx, user_id.as_str(), row.version, scope).await?;
    let state = finish_change(&mut tx, user_id, &row, deleted).await?;
    tx.commit().await?;
    Ok(state)
}
