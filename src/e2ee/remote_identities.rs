//! Other servers' users as cross-signing sees them: a local user verifies a remote user by
//! signing the remote master key with their user-signing key (`POST /keys/signatures/upload`).
//! That signature is the signer's own business (the spec shows a user-signing key's
//! signatures only to its owner), so it stays on the signer's server: it is checked against
//! the remote master key this server cached from the user's server, and merged into that
//! key whenever the signer queries the remote user's keys.

use crate::db;
use crate::db::remote_device_lists::CachedDevices;
use crate::e2ee::types::QueriedKeys;
use crate::e2ee::{signatures, to_raw};
use crate::error::Result;
use crate::store::Store;
use ruma::UserId;
use serde_json::Value;
use sqlx::PgConnection;

/// The remote `user`'s master key as cached here (from their server's device list and
/// `m.signing_key_update`s): its public key and the signed object.
pub(crate) async fn cached_master_key(conn: &mut PgConnection, user: &UserId) -> Result<Option<(String, Value)>> {
    let Some(row) = db::remote_device_lists::get(&mut *conn, user.as_str()).await? else { return Ok(None) };
    // A copy that cannot be read is no key to sign (the next query fetches the list again).
    let Ok(cached) = serde_json::from_str::<CachedDevices>(&row.devices) else { return Ok(None) };
    let Some(master) = cached.master_key else { return Ok(None) };
    Ok(public_key_of(&master).map(|public_key| (public_key, master)))
}

/// The public key a cross-signing key object holds (exactly one, as its server checked).
fn public_key_of(key: &Value) -> Option<String> {
    key.get("keys")?.as_object()?.values().next()?.as_str().map(str::to_owned)
}

/// Adds to the remote users' master keys in `found` the signatures `requester` made on them.
pub(crate) async fn attach_requester_signatures(
    pool: &Store,
    requester: &UserId,
    found: &mut QueriedKeys,
) -> Result<()> {
    let remote: Vec<String> = found
        .master_keys
        .keys()
        .filter(|user| user.server_name() != requester.server_name())
        .map(ToString::to_string)
        .collect();
    if remote.is_empty() {
        return Ok(());
    }
    let mine = db::e2ee_cross_signing::signatures_by_on(pool, requester.as_str(), &remote).await?;
    for (user, raw) in found.master_keys.iter_mut() {
        let on_user: Vec<_> = mine.iter().filter(|signature| signature.target_user_id == user.as_str()).collect();
        if on_user.is_empty() {
            continue;
        }
        let Ok(mut json) = serde_json::from_str::<Value>(raw.json().get()) else { continue };
        let Some(public_key) = public_key_of(&json) else { continue };
        // Only a signature on the key served now: one on a replaced key verifies nothing.
        signatures::merge(&mut json, on_user.into_iter().filter(|signature| signature.target_key_id == public_key));
        *raw = to_raw(&json)?;
    }
    Ok(())
}
