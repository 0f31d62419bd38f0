//! The `to_device` section of `/sync`. Unlike the rest of the response this is a queue, not a
//! window: everything still queued for the device up to `upto` is sent, and a sync whose
//! `since` has moved past a message proves the client has it, so the message is deleted.
//! Each message is therefore delivered until acknowledged, then never again.
//!
//! A sync whose window is empty skips its look (`long_poll`), and with it this section's
//! deletion: this process remembers the devices it sent messages to until they acknowledge
//! them, so that their acknowledging sync still looks and deletes. A device whose messages
//! another process sent, or that this process forgot (the record is bounded), has its
//! acknowledged messages deleted by its next look that is not skipped; none of them is sent
//! again unless the client goes back to a token before them, which a queue allows.

use crate::db;
use crate::error::Result;
use crate::store::Store;
use crate::sync::response::{Events, SyncBody, SyncEvent};
use crate::sync::types::SyncWindow;
use quick_cache::sync::Cache;
use ruma::{DeviceId, UserId};
use serde_json::json;

/// Devices this process sent to-device messages to, with the position of the answer that
/// carried them, until a sync acknowledges that position.
pub(super) struct AwaitingAcknowledgement(Cache<(String, String), i64>);

impl Default for AwaitingAcknowledgement {
    fn default() -> AwaitingAcknowledgement {
        AwaitingAcknowledgement(Cache::new(100_000))
    }
}

impl AwaitingAcknowledgement {
    /// Whether the device may have messages from this process that a sync from `since` would
    /// acknowledge.
    pub(super) fn awaits(&self, user: &UserId, device: &DeviceId, since: i64) -> bool {
        self.0.get(&key(user, device)).is_some_and(|sent_upto| sent_upto <= since)
    }
}

fn key(user: &UserId, device: &DeviceId) -> (String, String) {
    (user.as_str().to_owned(), device.as_str().to_owned())
}

/// The section for the device, or none for a request without one.
pub(super) async fn section(
    pool: &Store,
    user: &UserId,
    device: Option<&DeviceId>,
    window: SyncWindow,
) -> Result<SyncBody> {
    let mut body = SyncBody::empty();
    let Some(device) = device else { return Ok(body) };
    let awaiting = pool.cache::<AwaitingAcknowledgement>();
    if let Some(since) = window.since {
        db::to_device::delete_acknowledged(pool, user.as_str(), device.as_str(), since).await?;
        if awaiting.awaits(user, device, since) {
            awaiting.0.remove(&key(user, device));
        }
    }
    let messages = db::to_device::pending(pool, user.as_str(), device.as_str(), window.upto).await?;
    if messages.is_empty() {
        return Ok(body);
    }
    awaiting.0.insert(key(user, device), window.upto);
    let events = messages
        .into_iter()
        .filter_map(|message| {
            let content = message.content.into_value()?;
            Some(SyncEvent::new(&json!({ "sender": message.sender, "type": message.event_type, "content": content })))
        })
        .collect::<Result<Vec<_>>>()?;
    body.to_device = Some(Events { events });
    Ok(body)
}
