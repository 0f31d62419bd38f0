//! The end-to-end encryption parts of `/sync`: `device_lists` (whose keys to refresh, in an
//! incremental sync), and the requesting device's `device_one_time_keys_count` and
//! `device_unused_fallback_key_types`. The counts are always present for a device (clients
//! read a missing count as zero and upload keys they do not need) but are not news on their
//! own: only device-list changes make a waiting sync answer.

use crate::e2ee::{device_lists, one_time_keys};
use crate::error::Result;
use crate::sync::build::{SyncBody, SyncWindow};
use ruma::{DeviceId, UserId};
use serde_json::{Value, json};
use sqlx::PgPool;

pub async fn section(pool: &PgPool, user: &UserId, device: Option<&DeviceId>, window: SyncWindow) -> Result<SyncBody> {
    let mut body = SyncBody::empty();
    let lists = match window.since {
        Some(since) => device_lists::between(pool, user.as_str(), since, window.upto).await?,
        None => Default::default(),
    };
    let counts = match device {
        Some(device) => {
            // One connection for both: holding one while waiting for another from the pool
            // starves the pool under load (every sync would hold one and wait).
            let mut conn = pool.acquire().await?;
            let counts = one_time_keys::counts(&mut conn, user.as_str(), device.as_str()).await?;
            let fallback = one_time_keys::unused_fallback_types(&mut conn, user.as_str(), device.as_str()).await?;
            drop(conn);
            Some((counts, fallback))
        }
        None => None,
    };
    let Value::Object(map) = &mut body.json else { return Ok(body) };
    if !lists.is_empty() {
        map.insert("device_lists".to_owned(), json!(lists));
        body.is_empty = false;
    }
    if let Some((counts, fallback)) = counts {
        map.insert("device_one_time_keys_count".to_owned(), json!(counts));
        map.insert("device_unused_fallback_key_types".to_owned(), json!(fallback));
    }
    Ok(body)
}
