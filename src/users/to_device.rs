//! Sending to-device messages (`PUT /sendToDevice/{eventType}/{txnId}`): queued per recipient
//! device at one stream position, delivered by `/sync` until the device acknowledges them.

use crate::db;
use crate::error::{Error, Result};
use crate::streams::Streams;
use crate::time::now_ms;
use crate::users::Session;
use ruma::ServerName;
use ruma::to_device::DeviceIdOrAllDevices;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::BTreeMap;

/// Recipient user → device (or all of them) → content, as the request body gives them.
pub type Messages = BTreeMap<ruma::OwnedUserId, BTreeMap<DeviceIdOrAllDevices, Value>>;

pub async fn send(
    pool: &PgPool,
    streams: &Streams,
    server_name: &ServerName,
    session: &Session,
    event_type: &str,
    txn_id: &str,
    messages: &Messages,
) -> Result<()> {
    if event_type.is_empty() {
        return Err(Error::invalid_param("The event type must not be empty"));
    }
    for devices in messages.values() {
        if devices.values().any(|content| !content.is_object()) {
            return Err(Error::bad_json("Each to-device message must be a JSON object"));
        }
    }
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    // Claimed inside the transaction: a concurrent retry waits on the key and then finds
    // it taken, and a failed send frees it again.
    let first_time = db::to_device::claim_transaction(
        &mut *tx,
        session.user_id.as_str(),
        session.device_id.as_str(),
        txn_id,
        now_ms(),
    )
    .await?;
    if !first_time {
        return Ok(());
    }
    let position = reservation.next(&mut tx).await?;
    let sender = session.user_id.as_str();
    let mut audience = Vec::new();
    for (recipient, devices) in messages {
        // No federation yet: remote recipients are skipped, as unknown local ones are.
        if recipient.server_name() != server_name {
            continue;
        }
        for (device, content) in devices {
            let (ids, all) = match device {
                DeviceIdOrAllDevices::AllDevices => (Vec::new(), true),
                DeviceIdOrAllDevices::DeviceId(id) => (vec![id.to_string()], false),
            };
            db::to_device::queue(&mut *tx, recipient.as_str(), &ids, all, sender, event_type, content, position)
                .await?;
        }
        audience.push(recipient.to_string());
    }
    tx.commit().await?;
    reservation.committed_for(audience).await?;
    Ok(())
}
