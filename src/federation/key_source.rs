//! Where the inbound pipeline and membership code get the public keys that verify an event: the
//! key ring in a running server; tests and tools may hand over keys they already hold.

use ruma::OwnedServerName;
use ruma::signatures::PublicKeyMap;
use std::collections::{BTreeMap, BTreeSet};

/// Server name -> key ids wanted.
pub type WantedKeys = BTreeMap<OwnedServerName, BTreeSet<String>>;

pub trait KeySource {
    /// The keys among `wanted` this source has or can fetch; a missing key is simply absent
    /// (verification then fails cleanly).
    fn public_keys(&self, wanted: &WantedKeys) -> impl Future<Output = PublicKeyMap> + Send;
}

impl KeySource for PublicKeyMap {
    async fn public_keys(&self, _wanted: &WantedKeys) -> PublicKeyMap {
        self.clone()
    }
}

impl KeySource for crate::federation::key_ring::KeyRing {
    async fn public_keys(&self, wanted: &WantedKeys) -> PublicKeyMap {
        crate::federation::key_ring::KeyRing::public_keys(self, wanted).await
    }
}
