//! `unsigned.transaction_id` (spec: "Transaction identifiers"): an event served to the device
//! that sent it carries the transaction id the client sent it with, so the client can match
//! it to its local echo. Every other reader — the sender's other devices included — gets none.

use crate::db;
use crate::error::Result;
use crate::store::Store;
use ruma::{DeviceId, RoomId, UserId};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Adds the transaction ids `device` of `user` sent any of `events` (client-format) with. Only
/// the user's own events can have one, so there is nothing to read unless some are among them.
pub(crate) async fn annotate<'a>(
    pool: &Store,
    user: &UserId,
    device: &DeviceId,
    events: impl IntoIterator<Item = &'a mut Value>,
) -> Result<()> {
    let own: Vec<&mut Value> = events.into_iter().filter(|event| event["sender"] == user.as_str()).collect();
    if own.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = own.iter().filter_map(|event| event["event_id"].as_str().map(str::to_owned)).collect();
    let sent: HashMap<String, String> =
        db::rooms::transaction_ids_of(pool, user.as_str(), device.as_str(), &ids).await?.into_iter().collect();
    for event in own {
        if let Some(txn_id) = event["event_id"].as_str().and_then(|id| sent.get(id)) {
            event["unsigned"]["transaction_id"] = json!(txn_id);
        }
    }
    Ok(())
}

/// The transaction ids `device` of `user` sent any of `event_ids` with, by event id (an edge
/// that names messages by the sender's own ids, as XMPP does, maps them back).
pub(crate) async fn sent_with(
    pool: &Store,
    user: &UserId,
    device: &DeviceId,
    event_ids: &[String],
) -> Result<HashMap<String, String>> {
    if event_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sent = db::rooms::transaction_ids_of(pool, user.as_str(), device.as_str(), event_ids).await?;
    Ok(sent.into_iter().collect())
}

/// The message event `device` of `user` sent in `room_id` with `txn_id`, if any (an XMPP
/// correction names the message it corrects by the client's own id).
pub(crate) async fn message_sent_with(
    pool: &Store,
    user: &UserId,
    device: &DeviceId,
    room_id: &RoomId,
    txn_id: &str,
) -> Result<Option<String>> {
    let key = db::rooms::TxnKey {
        user_id: user.as_str(),
        device_id: device.as_str(),
        room_id: room_id.as_str(),
        event_type: "m.room.message",
        txn_id,
    };
    Ok(db::rooms::transaction_event(pool, key).await?)
}
