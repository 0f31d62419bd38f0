//! The end-to-end encryption parts of `/sync`: `device_lists` (whose keys to refresh, in an
//! incremental sync), and the requesting device's `device_one_time_keys_count` and
//! `device_unused_fallback_key_types`. The counts are always present for a device (clients
//! read a missing count as zero and upload keys they do not need) but are not news on their
//! own: only device-list changes make a waiting sync answer.

use crate::e2ee::{device_lists, one_time_keys};
use crate::error::Result;
use crate::store::Store;
use crate::sync::response::{KeyCounts, SyncBody};
use crate::sync::types::SyncWindow;
use ruma::{DeviceId, UserId};

pub(super) async fn section(pool: &Store, user: &UserId, window: SyncWindow) -> Result<SyncBody> {
    let mut body = SyncBody::empty();
    let Some(since) = window.since else { return Ok(body) };
    let lists = device_lists::between(pool, user.as_str(), since, window.upto).await?;
    if !lists.is_empty() {
        body.device_lists = Some(lists.into());
    }
    Ok(body)
}

/// `device_one_time_keys_count` and `device_unused_fallback_key_types` of the device.
pub(super) async fn key_counts(pool: &Store, user: &UserId, device: &DeviceId) -> Result<KeyCounts> {
    let read = crate::db::e2ee_keys::key_counts_and_fallbacks(pool, user.as_str(), device.as_str()).await?;
    Ok(key_counts_of(&read))
}

/// [`key_counts`] from what another statement (the window's news) read along.
pub(super) fn key_counts_of(read: &crate::db::e2ee_keys::DeviceKeyCounts) -> KeyCounts {
    let (counts, fallback) = one_time_keys::counts_and_fallbacks_of(read);
    KeyCounts { device_one_time_keys_count: counts, device_unused_fallback_key_types: fallback }
}
