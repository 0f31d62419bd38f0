//! Sending to-device messages (`PUT /sendToDevice/{eventType}/{txnId}`): queued per recipient
//! device at one stream position, delivered by `/sync` until the device acknowledges them.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::Streams;
use crate::time::now_ms;
use crate::users::Session;
use ruma::api::federation::transactions::edu::DirectDeviceMessages;
use ruma::serde::Raw;
use ruma::to_device::DeviceIdOrAllDevices;
use ruma::{OwnedServerName, ServerName, UserId};
use serde_json::Value;
use std::collections::BTreeMap;

/// Recipient user → device (or all of them) → content, as the request body gives them.
pub(crate) type Messages = BTreeMap<ruma::OwnedUserId, BTreeMap<DeviceIdOrAllDevices, Value>>;

/// To-device messages from a remote sender (`m.direct_to_device`): stored once per
/// `message_id` (a retransmission stores nothing), for the local recipients among `messages`.
pub(crate) async fn receive_remote(
    pool: &Store,
    streams: &Streams,
    server_name: &ServerName,
    sender: &UserId,
    event_type: &str,
    message_id: &str,
    messages: &Messages,
) -> Result<()> {
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    // A remote sender has no device here: the empty device id keeps its message ids apart
    // from every local device's transaction ids.
    if !db::to_device::claim_transaction(&mut *tx, sender.as_str(), "", message_id, now_ms()).await? {
        return Ok(());
    }
    let position = reservation.next(&mut tx).await?;
    let mut audience = Vec::new();
    for (recipient, devices) in messages.iter().filter(|(recipient, _)| recipient.server_name() == server_name) {
        queue_for(&mut tx, (recipient, devices), sender, event_type, position).await?;
        audience.push(recipient.to_string());
    }
    tx.commit().await?;
    reservation.committed_for(audience).await?;
    Ok(())
}

pub(crate) async fn send(
    pool: &Store,
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
    let mut audience = Vec::new();
    let mut remote: BTreeMap<OwnedServerName, DirectDeviceMessages> = BTreeMap::new();
    for (recipient, devices) in messages {
        // Remote recipients' messages go to their server in one EDU per server.
        if recipient.server_name() != server_name {
            let for_server = remote.entry(recipient.server_name().to_owned()).or_default();
            for (device, content) in devices {
                let raw = serde_json::value::to_raw_value(content).map_err(|e| Error::internal(e.to_string()))?;
                for_server.entry(recipient.clone()).or_default().insert(device.clone(), Raw::from_json(raw));
            }
            continue;
        }
        queue_for(&mut tx, (recipient, devices), &session.user_id, event_type, position).await?;
        audience.push(recipient.to_string());
    }
    // Unique per sending device and transaction id (the length keeps the two apart).
    let message_id = format!("{}:{}{txn_id}", session.device_id.as_str().len(), session.device_id);
    for (destination, messages) in remote {
        crate::outbox::federation::to_device(
            &mut tx,
            &destination,
            &session.user_id,
            event_type,
            &message_id,
            messages,
            position,
        )
        .await?;
    }
    tx.commit().await?;
    reservation.committed_for(audience).await?;
    Ok(())
}

/// Queues a local recipient's messages (per device, or for all of them) at `position`.
async fn queue_for(
    tx: &mut crate::db::Transaction,
    (recipient, devices): (&UserId, &BTreeMap<DeviceIdOrAllDevices, Value>),
    sender: &UserId,
    event_type: &str,
    position: i64,
) -> Result<()> {
    for (device, content) in devices {
        let (ids, all) = match device {
            DeviceIdOrAllDevices::AllDevices => (Vec::new(), true),
            DeviceIdOrAllDevices::DeviceId(id) => (vec![id.to_string()], false),
        };
        db::to_device::queue(&mut **tx, recipient.as_str(), &ids, all, sender.as_str(), event_type, content, position)
            .await?;
    }
    Ok(())
}
