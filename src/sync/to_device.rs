//! The `to_device` section of `/sync`. Unlike the rest of the response this is a queue, not a
//! window: everything still queued for the device up to `upto` is sent, and a sync whose
//! `since` has moved past a message proves the client has it, so the message is deleted.
//! Each message is therefore delivered until acknowledged, then never again.

use crate::db;
use crate::error::Result;
use crate::store::Store;
use crate::sync::response::{Events, SyncBody, SyncEvent};
use crate::sync::types::SyncWindow;
use ruma::{DeviceId, UserId};
use serde_json::json;

/// The section for the device, or none for a request without one.
pub(super) async fn section(
    pool: &Store,
    user: &UserId,
    device: Option<&DeviceId>,
    window: SyncWindow,
) -> Result<SyncBody> {
    let mut body = SyncBody::empty();
    let Some(device) = device else { return Ok(body) };
    if let Some(since) = window.since {
        db::to_device::delete_acknowledged(pool, user.as_str(), device.as_str(), since).await?;
    }
    let messages = db::to_device::pending(pool, user.as_str(), device.as_str(), window.upto).await?;
    if messages.is_empty() {
        return Ok(body);
    }
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
