//! The end-to-end encryption parts of `/sync`: `device_lists` (whose keys to refresh, in an
//! incremental sync), and the requesting device's `device_one_time_keys_count` and
//! `device_unused_fallback_key_types`. The counts are always present for a device (clients
//! read a missing count as zero and upload keys they do not need) but are not news on their
//! own: only device-list changes make a waiting sync answer.

use crate::e2ee::{device_lists, one_time_keys};
use crate::error::Result;
use crate::store::Store;
use crate::sync::types::{SyncBody, SyncWindow};
use ruma::{DeviceId, UserId};
use serde_json::{Map, Value, json};

pub async fn section(pool: &Store, user: &UserId, window: SyncWindow) -> Result<SyncBody> {
    let mut body = SyncBody::empty();
    let Some(since) = window.since else { return Ok(body) };
    let lists = device_lists::between(pool, user.as_str(), since, window.upto).await?;
    if let Value::Object(map) = &mut body.json
        && !lists.is_empty()
    {
        map.insert("device_lists".to_owned(), json!({ "changed": lists.changed, "left": lists.left }));
        body.is_empty = false;
    }
    Ok(body)
}

/// `device_one_time_keys_count` and `device_unused_fallback_key_types` of the device.
pub async fn key_counts(pool: &Store, user: &UserId, device: &DeviceId) -> Result<Map<String, Value>> {
    let read = crate::db::e2ee_keys::key_counts_and_fallbacks(pool, user.as_str(), device.as_str()).await?;
    Ok(key_counts_of(&read))
}

/// [`key_counts`] from what another statement (the window's news) read along.
pub fn key_counts_of(read: &crate::db::e2ee_keys::DeviceKeyCounts) -> Map<String, Value> {
    let (counts, fallback) = one_time_keys::counts_and_fallbacks_of(read);
    let mut map = Map::new();
    map.insert("device_one_time_keys_count".to_owned(), json!(counts));
    map.insert("device_unused_fallback_key_types".to_owned(), json!(fallback));
    map
}
