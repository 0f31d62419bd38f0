//! One-time and fallback keys: uploaded in bulk by a device, claimed one at a time by others
//! who start an Olm session with it (`POST /keys/claim`).

use crate::db;
use crate::e2ee::types::{ClaimedKeys, OneTimeKeys};
use crate::e2ee::{signatures, to_raw};
use crate::error::{Error, Result};
use crate::store::Store;
use ruma::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedOneTimeKeyId, OwnedUserId, ServerName, UInt};
use serde_json::Value;
use sqlx::PgConnection;
use std::collections::BTreeMap;

/// Key ids (`<algorithm>:<name>`) are identifiers: at most 255 bytes.
const MAX_KEY_ID_BYTES: usize = 255;

/// An uploaded key: its algorithm, id (`<algorithm>:<name>`) and JSON.
pub(crate) struct ParsedKey {
    pub algorithm: String,
    pub key_id: String,
    pub json: Value,
}

/// Checks each key against the spec's shape (a base64 string or a signed key object).
pub(crate) fn parse_all(keys: &OneTimeKeys) -> Result<Vec<ParsedKey>> {
    keys.iter()
        .map(|(id, raw)| {
            if id.as_str().len() > MAX_KEY_ID_BYTES {
                return Err(Error::invalid_param(format!("A key id may be at most {MAX_KEY_ID_BYTES} bytes")));
            }
            raw.deserialize().map_err(|error| Error::bad_json(format!("Invalid key {id}: {error}")))?;
            let json = serde_json::from_str(raw.json().get())
                .map_err(|error| Error::bad_json(format!("Invalid key {id}: {error}")))?;
            signatures::require_canonical(&json, &format!("Key {id}"))?;
            Ok(ParsedKey { algorithm: id.algorithm().to_string(), key_id: id.to_string(), json })
        })
        .collect()
}

pub(crate) async fn store(
    conn: &mut PgConnection,
    user: &str,
    device: &str,
    one_time: &[ParsedKey],
    fallback: &[ParsedKey],
) -> Result<()> {
    if !one_time.is_empty() {
        let algorithms: Vec<String> = one_time.iter().map(|key| key.algorithm.clone()).collect();
        let ids: Vec<String> = one_time.iter().map(|key| key.key_id.clone()).collect();
        let keys: Vec<Value> = one_time.iter().map(|key| key.json.clone()).collect();
        db::e2ee_keys::insert_one_time_keys(&mut *conn, user, device, &algorithms, &ids, &keys).await?;
    }
    // One fallback key per algorithm: a new one replaces the previous one.
    for key in fallback {
        db::e2ee_keys::set_fallback_key(&mut *conn, user, device, &key.algorithm, &key.key_id, &key.json).await?;
    }
    Ok(())
}

/// The device's unclaimed one-time keys per algorithm (`signed_curve25519` always present).
pub(crate) async fn counts(
    conn: &mut PgConnection,
    user: &str,
    device: &str,
) -> Result<BTreeMap<OneTimeKeyAlgorithm, UInt>> {
    Ok(count_map(db::e2ee_keys::one_time_key_counts(conn, user, device).await?))
}

/// The device's one-time key counts and unused fallback key algorithms (what every `/sync`
/// response carries), from what another statement read along.
pub(crate) fn counts_and_fallbacks_of(
    read: &db::e2ee_keys::DeviceKeyCounts,
) -> (BTreeMap<OneTimeKeyAlgorithm, UInt>, Vec<OneTimeKeyAlgorithm>) {
    let fallbacks =
        read.unused_fallback_key_types.iter().map(|algorithm| OneTimeKeyAlgorithm::from(algorithm.as_str())).collect();
    (count_map(read.counts()), fallbacks)
}

fn count_map(counts: Vec<db::e2ee_keys::KeyCount>) -> BTreeMap<OneTimeKeyAlgorithm, UInt> {
    let mut counts: BTreeMap<OneTimeKeyAlgorithm, UInt> = counts
        .into_iter()
        .map(|row| (OneTimeKeyAlgorithm::from(row.algorithm.as_str()), UInt::try_from(row.count).unwrap_or_default()))
        .collect();
    // An explicit zero for the algorithm every client uses: some clients read a missing
    // count as "the server does not say" and never top their keys up (Synapse does the same).
    counts.entry(OneTimeKeyAlgorithm::SignedCurve25519).or_insert(UInt::MIN);
    counts
}

/// `POST /keys/claim`: one key per requested device, in one transaction. A one-time key goes
/// to exactly one claimer; when none is left the fallback key is handed out (again and again,
/// marked used so the device replaces it).
pub(crate) async fn claim(
    pool: &Store,
    server_name: &ServerName,
    wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>,
) -> Result<ClaimedKeys> {
    let mut response = ClaimedKeys::default();
    let mut tx = pool.begin().await?;
    for (user, devices) in wanted {
        // Remote users' keys are claimed from their servers (`federation::user_keys`).
        if user.server_name() != server_name {
            continue;
        }
        for (device, algorithm) in devices {
            let (user_id, device_id, algorithm) = (user.as_str(), device.as_str(), algorithm.as_str());
            let claimed = match db::e2ee_keys::claim_one_time_key(&mut *tx, user_id, device_id, algorithm).await? {
                Some(key) => Some(key),
                None => db::e2ee_keys::claim_fallback_key(&mut *tx, user_id, device_id, algorithm).await?,
            };
            let Some(claimed) = claimed else { continue };
            let Ok(key_id) = OwnedOneTimeKeyId::try_from(claimed.key_id.as_str()) else { continue };
            let Some(key_json) = claimed.key_json.into_value() else { continue };
            response
                .one_time_keys
                .entry(user.clone())
                .or_default()
                .entry(device.clone())
                .or_default()
                .insert(key_id, to_raw(&key_json)?);
        }
    }
    tx.commit().await?;
    Ok(response)
}
