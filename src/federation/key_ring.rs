//! Other servers' signing keys (spec: "Retrieving server keys"), and ours.
//!
//! Keys live in PostgreSQL (`db::server_keys`), so every Hearth process on the database shares
//! them and a restart forgets nothing. A key that is not known, or whose `valid_until_ts` has
//! passed, is fetched from the server itself (`GET /_matrix/key/v2/server`), and failing that
//! through each of `federation.trusted_key_servers` (`POST /_matrix/key/v2/query`). Fetches are
//! bounded: one at a time per server (callers waiting for the same server share its outcome),
//! and after a fetch that did not produce what was wanted the server is not asked again before
//! a cool-down that doubles with each such fetch (10 s up to an hour). So a server signing
//! with key ids it never publishes cannot make Hearth fetch on every request.
//!
//! A missing key is simply absent from the answer: verification against it then fails, and
//! the caller refuses what needed it.

use super::client::{FederationClient, FederationError};
use crate::db::server_keys::{self, NewKey, StoredKey};
use crate::signing_key::SigningKey;
use crate::store::Store;
use crate::time::now_ms;
use futures_util::future::join_all;
use ruma::api::federation::discovery::get_remote_server_keys_batch::v2 as notary_query;
use ruma::api::federation::discovery::get_server_keys::v2 as server_keys_query;
use ruma::api::federation::discovery::{OldVerifyKey, ServerSigningKeys, VerifyKey};
use ruma::serde::{Base64, Raw};
use ruma::signatures::{PublicKeyMap, PublicKeySet};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedServerName, ServerName};
use serde_json::value::RawValue as RawJsonValue;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long other servers may rely on our key object (Synapse's default refresh interval).
const OWN_KEYS_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// The longest a fetched key object is trusted without asking again.
const MAX_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Cool-down after the first fetch that did not give what was wanted; doubles each time.
const FIRST_COOL_DOWN: Duration = Duration::from_secs(10);
const MAX_COOL_DOWN: Duration = Duration::from_secs(3600);
/// Servers looked up by one call at most: a request or event names one or two.
const MAX_SERVERS_PER_LOOKUP: usize = 32;

pub struct KeyRing {
    pool: Store,
    server_name: OwnedServerName,
    key: Arc<SigningKey>,
    client: FederationClient,
    notaries: Vec<OwnedServerName>,
    cool_downs: Mutex<HashMap<OwnedServerName, CoolDown>>,
    fetch_locks: Mutex<HashMap<OwnedServerName, Arc<tokio::sync::Mutex<()>>>>,
}

struct CoolDown {
    failures: u32,
    until: Instant,
}

impl KeyRing {
    pub fn new(
        pool: Store,
        server_name: OwnedServerName,
        key: Arc<SigningKey>,
        client: FederationClient,
        notaries: &[String],
    ) -> KeyRing {
        let notaries = notaries.iter().filter_map(|name| OwnedServerName::try_from(name.as_str()).ok()).collect();
        KeyRing {
            pool,
            server_name,
            key,
            client,
            notaries,
            cool_downs: Mutex::default(),
            fetch_locks: Mutex::default(),
        }
    }

    /// Records our current key, so that keys we used before it are published as old ones.
    /// Processes sharing a database must share the signing key (the data directory's
    /// `signing.key`): the last one started would otherwise retire the others' keys.
    pub async fn record_own_key(&self) -> sqlx::Result<()> {
        let key = &self.key;
        server_keys::record_own_key(
            &self.pool,
            self.server_name.as_str(),
            &key.key_id(),
            &key.public_key_base64(),
            now_ms(),
        )
        .await
    }

    /// The keys of each server in `wanted` (key ids like `ed25519:abc`) that Hearth has or could
    /// fetch, including keys the server has since retired; absent if unknown.
    pub async fn public_keys(&self, wanted: &BTreeMap<OwnedServerName, BTreeSet<String>>) -> PublicKeyMap {
        self.lookup(wanted, None).await
    }

    /// Like [`KeyRing::public_keys`], but only keys valid at `ts_ms`: a current key whose
    /// `valid_until_ts` is not before it, or a retired key that expired after it. What request
    /// authentication uses, with the present time.
    pub async fn public_keys_valid_at(
        &self,
        wanted: &BTreeMap<OwnedServerName, BTreeSet<String>>,
        ts_ms: i64,
    ) -> PublicKeyMap {
        self.lookup(wanted, Some(ts_ms)).await
    }

    async fn lookup(
        &self,
        wanted: &BTreeMap<OwnedServerName, BTreeSet<String>>,
        valid_at: Option<i64>,
    ) -> PublicKeyMap {
        let lookups = wanted.iter().take(MAX_SERVERS_PER_LOOKUP).map(|(server, key_ids)| async move {
            let keys = match self.server_keys(server, key_ids, valid_at).await {
                Ok(keys) => keys,
                Err(error) => {
                    tracing::warn!(%server, %error, "could not read server keys");
                    Vec::new()
                }
            };
            (server.to_string(), usable_set(&keys, key_ids, valid_at))
        });
        join_all(lookups).await.into_iter().filter(|(_, set)| !set.is_empty()).collect()
    }

    /// The stored keys of `server`, fetched first when they do not cover `key_ids`.
    async fn server_keys(
        &self,
        server: &ServerName,
        key_ids: &BTreeSet<String>,
        valid_at: Option<i64>,
    ) -> sqlx::Result<Vec<StoredKey>> {
        if server == self.server_name {
            return self.own_keys().await;
        }
        let stored = server_keys::keys_of(&self.pool, server.as_str()).await?;
        if covers(&stored, key_ids, valid_at) {
            return Ok(stored);
        }
        // One fetch per server at a time; whoever waited finds what it stored.
        let lock = self.fetch_lock(server);
        let _fetching = lock.lock().await;
        let stored = server_keys::keys_of(&self.pool, server.as_str()).await?;
        if covers(&stored, key_ids, valid_at) || !self.may_fetch(server) {
            return Ok(stored);
        }
        let wanted_ids: Vec<String> = key_ids.iter().cloned().collect();
        self.fetch(server, &wanted_ids).await;
        let stored = server_keys::keys_of(&self.pool, server.as_str()).await?;
        self.fetched(server, covers(&stored, key_ids, valid_at));
        Ok(stored)
    }

    /// Our current key (valid as long as we serve it) and the ones we used before.
    async fn own_keys(&self) -> sqlx::Result<Vec<StoredKey>> {
        let mut keys: Vec<StoredKey> = server_keys::keys_of(&self.pool, self.server_name.as_str())
            .await?
            .into_iter()
            .filter(|key| key.key_id != self.key.key_id() && key.expired_ts.is_some())
            .collect();
        keys.push(StoredKey {
            key_id: self.key.key_id(),
            public_key: self.key.public_key_base64(),
            valid_until_ts: i64::MAX,
            expired_ts: None,
            response: None,
        });
        Ok(keys)
    }

    /// Asks the server, then the notaries, storing every valid key object they give.
    async fn fetch(&self, server: &ServerName, key_ids: &[String]) {
        match self.fetch_direct(server).await {
            Ok(()) => {
                let stored = server_keys::keys_of(&self.pool, server.as_str()).await.unwrap_or_default();
                if key_ids.iter().all(|id| stored.iter().any(|key| &key.key_id == id)) {
                    return;
                }
            }
            Err(error) => tracing::info!(%server, %error, "could not fetch keys from the server itself"),
        }
        for notary in &self.notaries {
            if notary.as_str() == server.as_str() {
                continue;
            }
            if let Err(error) = self.fetch_through(notary, server, key_ids).await {
                tracing::info!(%server, %notary, %error, "could not fetch keys through a notary");
            }
        }
    }

    async fn fetch_direct(&self, server: &ServerName) -> Result<(), String> {
        let response = self
            .client
            .send(server, server_keys_query::Request::new())
            .await
            .map_err(|error: FederationError| error.to_string())?;
        let object = checked_key_object(server, response.server_key.json(), &BTreeMap::new())?;
        self.store(server, &object).await
    }

    async fn fetch_through(&self, notary: &ServerName, server: &ServerName, key_ids: &[String]) -> Result<(), String> {
        let notary_keys = self.notary_keys(notary).await?;
        let criteria: BTreeMap<_, _> = key_ids
            .iter()
            .filter_map(|id| ruma::OwnedServerSigningKeyId::try_from(id.as_str()).ok())
            .map(|id| (id, notary_query::QueryCriteria::new()))
            .collect();
        let request = notary_query::Request::new(BTreeMap::from([(server.to_owned(), criteria)]));
        let response = self.client.send(notary, request).await.map_err(|error| error.to_string())?;
        let mut stored_any = false;
        for raw in &response.server_keys {
            let extra = BTreeMap::from([(notary.to_string(), notary_keys.clone())]);
            match checked_key_object(server, raw.json(), &extra) {
                Ok(object) => {
                    self.store(server, &object).await?;
                    stored_any = true;
                }
                Err(why) => tracing::info!(%server, %notary, %why, "a notary served an unusable key object"),
            }
        }
        if stored_any { Ok(()) } else { Err("the notary served no usable key object".to_owned()) }
    }

    /// A notary's own keys, fetched from it directly (never through another notary).
    async fn notary_keys(&self, notary: &ServerName) -> Result<PublicKeySet, String> {
        let now = now_ms();
        let fresh = |keys: &[StoredKey]| keys.iter().any(|key| key.expired_ts.is_none() && key.valid_until_ts >= now);
        let mut stored = server_keys::keys_of(&self.pool, notary.as_str()).await.map_err(|e| e.to_string())?;
        if !fresh(&stored) {
            self.fetch_direct(notary).await?;
            stored = server_keys::keys_of(&self.pool, notary.as_str()).await.map_err(|e| e.to_string())?;
        }
        let set = usable_set(&stored, &BTreeSet::new(), Some(now));
        if set.is_empty() { Err(format!("no valid keys for the notary {notary}")) } else { Ok(set) }
    }

    async fn store(&self, server: &ServerName, object: &ServerSigningKeys) -> Result<(), String> {
        let current = object.verify_keys.iter().map(|(id, key)| (id.to_string(), key.key.encode(), None));
        let old = object
            .old_verify_keys
            .iter()
            .map(|(id, key)| (id.to_string(), key.key.encode(), Some(i64::from(key.expired_ts.get()))));
        let rows: Vec<(String, String, Option<i64>)> = current.chain(old).collect();
        let keys: Vec<NewKey<'_>> = rows
            .iter()
            .map(|(key_id, public_key, expired_ts)| NewKey { key_id, public_key, expired_ts: *expired_ts })
            .collect();
        let response = serde_json::to_string(object).map_err(|error| error.to_string())?;
        // The spec caps what a server may claim at 7 days from now (room versions 5 and up).
        let cap = now_ms().saturating_add(i64::try_from(MAX_VALIDITY.as_millis()).unwrap_or(i64::MAX));
        let valid_until_ts = i64::from(object.valid_until_ts.get()).min(cap);
        server_keys::store_response(&self.pool, server.as_str(), &keys, valid_until_ts, &response, now_ms())
            .await
            .map_err(|error| error.to_string())
    }

    fn fetch_lock(&self, server: &ServerName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.fetch_locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Locks nobody holds or waits for are dropped, so the map stays as small as the
        // number of fetches in flight.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(server.to_owned()).or_default().clone()
    }

    fn may_fetch(&self, server: &ServerName) -> bool {
        let cool_downs = self.cool_downs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cool_downs.get(server).is_none_or(|cool_down| cool_down.until <= Instant::now())
    }

    fn fetched(&self, server: &ServerName, satisfied: bool) {
        let mut cool_downs = self.cool_downs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if satisfied {
            cool_downs.remove(server);
            return;
        }
        let now = Instant::now();
        cool_downs.retain(|_, cool_down| cool_down.until > now);
        let failures = cool_downs.get(server).map_or(0, |cool_down| cool_down.failures) + 1;
        let wait = FIRST_COOL_DOWN.saturating_mul(1 << (failures - 1).min(16)).min(MAX_COOL_DOWN);
        cool_downs.insert(server.to_owned(), CoolDown { failures, until: now + wait });
    }

    /// Our key object, signed, as `/_matrix/key/v2/server` serves it.
    pub async fn own_key_object(&self) -> Result<Raw<ServerSigningKeys>, crate::Error> {
        let valid_until = now_ms().saturating_add(i64::try_from(OWN_KEYS_VALIDITY.as_millis()).unwrap_or(i64::MAX));
        let mut object = ServerSigningKeys::new(self.server_name.clone(), millis(valid_until));
        for key in self.own_keys().await? {
            let (Ok(key_id), Ok(public_key)) =
                (ruma::OwnedServerSigningKeyId::try_from(key.key_id.as_str()), Base64::parse(&key.public_key))
            else {
                continue;
            };
            match key.expired_ts {
                None => {
                    object.verify_keys.insert(key_id, VerifyKey::new(public_key));
                }
                Some(expired) => {
                    object.old_verify_keys.insert(key_id, OldVerifyKey::new(millis(expired), public_key));
                }
            }
        }
        let mut canonical = canonical_object(&object)?;
        canonical.remove("signatures");
        self.sign(canonical)
    }

    /// Adds our signature to a JSON object (a notary's countersignature on served keys).
    pub fn sign<T>(&self, mut object: CanonicalJsonObject) -> Result<Raw<T>, crate::Error> {
        ruma::signatures::sign_json(self.server_name.as_str(), &self.key.key_pair, &mut object)
            .map_err(|error| crate::Error::internal(format!("signing a key object: {error}")))?;
        raw_json(&object)
    }

    /// The key objects Hearth holds for `server` (fetching when none is valid at
    /// `minimum_valid_until_ts` or a wanted key is missing): what a notary serves.
    pub async fn key_objects_for(
        &self,
        server: &ServerName,
        key_ids: &BTreeSet<String>,
        minimum_valid_until_ts: i64,
    ) -> Result<Vec<CanonicalJsonObject>, crate::Error> {
        if server == self.server_name {
            let own = self.own_key_object().await?;
            return Ok(serde_json::from_str(own.json().get()).map(|object| vec![object]).unwrap_or_default());
        }
        let stored = self.server_keys(server, key_ids, Some(minimum_valid_until_ts)).await?;
        let mut responses: Vec<&str> = stored
            .iter()
            .filter(|key| key_ids.is_empty() || key_ids.contains(&key.key_id))
            .filter_map(|key| key.response.as_deref())
            .collect();
        responses.sort_unstable();
        responses.dedup();
        Ok(responses.into_iter().filter_map(|text| serde_json::from_str(text).ok()).collect())
    }
}

/// A JSON object as the raw JSON a ruma response carries.
pub(crate) fn raw_json<T>(object: &CanonicalJsonObject) -> Result<Raw<T>, crate::Error> {
    let json = serde_json::to_string(object).map_err(|error| crate::Error::internal(error.to_string()))?;
    let raw = RawJsonValue::from_string(json).map_err(|error| crate::Error::internal(error.to_string()))?;
    Ok(Raw::from_json(raw))
}

fn millis(ms: i64) -> MilliSecondsSinceUnixEpoch {
    MilliSecondsSinceUnixEpoch(ruma::UInt::new_saturating(u64::try_from(ms).unwrap_or(0)))
}

fn canonical_object<T: serde::Serialize>(value: &T) -> Result<CanonicalJsonObject, crate::Error> {
    match ruma::canonical_json::to_canonical_value(value) {
        Ok(CanonicalJsonValue::Object(object)) => Ok(object),
        Ok(_) => Err(crate::Error::internal("a key object is not a JSON object")),
        Err(error) => Err(crate::Error::internal(format!("a key object is not canonical JSON: {error}"))),
    }
}

/// Whether `stored` holds every wanted key (any key, if none is named) in a usable state.
fn covers(stored: &[StoredKey], key_ids: &BTreeSet<String>, valid_at: Option<i64>) -> bool {
    let now = now_ms();
    let fresh = |key: &StoredKey| match key.expired_ts {
        // A retired key never gets fresher: it is usable for what it signed before expiring.
        Some(expired) => valid_at.is_none_or(|ts| ts < expired),
        None => key.valid_until_ts >= valid_at.unwrap_or(now),
    };
    if key_ids.is_empty() {
        return stored.iter().any(fresh);
    }
    key_ids.iter().all(|id| stored.iter().any(|key| &key.key_id == id && fresh(key)))
}

/// The keys of `stored` to hand out: the wanted ones (all, if none is named), only those
/// valid at `valid_at` when given.
fn usable_set(stored: &[StoredKey], key_ids: &BTreeSet<String>, valid_at: Option<i64>) -> PublicKeySet {
    stored
        .iter()
        .filter(|key| key_ids.is_empty() || key_ids.contains(&key.key_id))
        .filter(|key| match (valid_at, key.expired_ts) {
            (None, _) => true,
            (Some(ts), Some(expired)) => ts < expired,
            (Some(ts), None) => key.valid_until_ts >= ts,
        })
        .filter_map(|key| Base64::parse(&key.public_key).ok().map(|parsed| (key.key_id.clone(), parsed)))
        .collect()
}

/// A key object for `server`, signed by `server` with one of its own keys (and by each server
/// of `countersigners` with theirs); the signatures of anyone else are not checked.
fn checked_key_object(
    server: &ServerName,
    raw: &RawJsonValue,
    countersigners: &PublicKeyMap,
) -> Result<ServerSigningKeys, String> {
    let object: ServerSigningKeys =
        serde_json::from_str(raw.get()).map_err(|error| format!("not a key object: {error}"))?;
    if object.server_name != server {
        return Err(format!("keys of {} served for {server}", object.server_name));
    }
    let canonical: CanonicalJsonObject =
        serde_json::from_str(raw.get()).map_err(|error| format!("not canonical JSON: {error}"))?;
    let own: PublicKeySet = object.verify_keys.iter().map(|(id, key)| (id.to_string(), key.key.clone())).collect();
    let mut signers = countersigners.clone();
    signers.insert(server.to_string(), own);
    verify_signed_by(canonical, &signers)?;
    Ok(object)
}

/// Verifies that each server of `signers` signed `object` with one of its keys there.
/// Signatures of other servers are set aside (ruma's check wants a key for every signer).
pub(crate) fn verify_signed_by(mut object: CanonicalJsonObject, signers: &PublicKeyMap) -> Result<(), String> {
    let Some(CanonicalJsonValue::Object(signatures)) = object.get_mut("signatures") else {
        return Err("the object is not signed".to_owned());
    };
    signatures.retain(|entity, _| signers.contains_key(entity));
    if signatures.len() != signers.len() {
        return Err("a required signature is missing".to_owned());
    }
    ruma::signatures::verify_json(signers, &object).map_err(|error| format!("bad signature: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(key_id: &str, valid_until_ts: i64, expired_ts: Option<i64>) -> StoredKey {
        StoredKey {
            key_id: key_id.to_owned(),
            public_key: "aGVsbG8".to_owned(),
            valid_until_ts,
            expired_ts,
            response: None,
        }
    }

    #[test]
    fn stale_and_unknown_keys_need_a_fetch_retired_ones_do_not() {
        let now = now_ms();
        let ids = |list: &[&str]| list.iter().map(|id| (*id).to_owned()).collect::<BTreeSet<_>>();
        let keys = [stored("ed25519:a", now + 60_000, None), stored("ed25519:old", 0, Some(now - 1000))];
        assert!(covers(&keys, &ids(&["ed25519:a"]), None));
        assert!(covers(&keys, &ids(&["ed25519:old"]), None), "retired keys are not refetched");
        assert!(!covers(&keys, &ids(&["ed25519:b"]), None));
        assert!(!covers(&keys, &ids(&["ed25519:a"]), Some(now + 120_000)), "valid_until_ts has passed by then");
        assert!(!covers(&keys, &ids(&["ed25519:old"]), Some(now)), "retired before that time");
        let expired = [stored("ed25519:a", now - 1, None)];
        assert!(!covers(&expired, &ids(&["ed25519:a"]), None));
        assert!(!covers(&[], &BTreeSet::new(), None));
    }

    #[test]
    fn only_keys_valid_at_the_time_are_handed_out_for_it() {
        let now = now_ms();
        let keys = [stored("ed25519:a", now + 60_000, None), stored("ed25519:old", 0, Some(now - 1000))];
        assert_eq!(usable_set(&keys, &BTreeSet::new(), None).len(), 2);
        let at_now: Vec<String> = usable_set(&keys, &BTreeSet::new(), Some(now)).into_keys().collect();
        assert_eq!(at_now, ["ed25519:a"]);
        let earlier: Vec<String> = usable_set(&keys, &BTreeSet::new(), Some(now - 5000)).into_keys().collect();
        assert_eq!(earlier, ["ed25519:a", "ed25519:old"]);
    }
}
