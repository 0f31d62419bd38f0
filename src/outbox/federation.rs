//! The federation sender's queue, written from below the domains: a domain that commits a
//! change other servers must hear of calls one of these inside its own transaction, and
//! `federation::sender` delivers the rows (DESIGN §4). Keeping the writes here, not in
//! `federation`, lets rooms, users and e2ee queue without depending on the federation layer
//! that depends on them.
//!
//! PDUs: [`enqueue_pdus`] takes the local events of one commit. EDUs: each is queued inside the transaction of the local change it announces, at
//! that change's stream position, for the servers that must hear of it — a room's other
//! servers for typing and receipts, the servers sharing a room with the user for presence and
//! device-list or signing-key updates, the recipients' servers for to-device messages. The
//! sender then carries them in the destination's next transaction (`delivery`).

use crate::db;
use crate::db::federation_edu_queue::Servers;
pub(crate) use crate::db::federation_queue::Outgoing;
use crate::error::{Error, Result};
use ruma::api::federation::transactions::edu::{
    DeviceListUpdateContent, DirectDeviceContent, DirectDeviceMessages, Edu, PresenceContent, PresenceUpdate,
    ReceiptContent, ReceiptData, ReceiptMap, SigningKeyUpdateContent, TypingContent,
};
use ruma::encryption::{CrossSigningKey, DeviceKeys};
use ruma::events::receipt::{Receipt, ReceiptThread};
use ruma::presence::PresenceState;
use ruma::serde::Raw;
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedDeviceId, OwnedTransactionId, RoomId, ServerName, UInt, UserId};
use sqlx::PgConnection;
use std::collections::BTreeMap;

fn serialize(edu: &Edu) -> Result<String> {
    serde_json::to_string(edu).map_err(|error| Error::internal(format!("serializing an EDU: {error}")))
}

/// Queues `events` (local events appended to `room_id` in the transaction `conn`; see
/// `rooms::send::committed`) for every remote server with a joined member in the room, and
/// for each event's [`Outgoing::membership_target`]. Costs nothing when there is no event, and
/// one statement otherwise.
pub(crate) async fn enqueue_pdus(
    conn: &mut PgConnection,
    local: &ServerName,
    room_id: &RoomId,
    events: &[Outgoing<'_>],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    db::federation_queue::enqueue(conn, room_id.as_str(), local.as_str(), events).await?;
    Ok(())
}

/// A local user started or stopped typing in a room.
pub(crate) async fn typing(
    conn: &mut PgConnection,
    room_id: &RoomId,
    user_id: &UserId,
    typing: bool,
    position: i64,
) -> Result<()> {
    let edu = Edu::Typing(TypingContent::new(room_id.to_owned(), user_id.to_owned(), typing));
    enqueue(conn, Servers::OfRoom(room_id.as_str()), user_id, &edu, position).await
}

/// Whether a typing change in `room_id` has another server to go to (a renewal of a running
/// timeout takes a stream position only then).
pub(crate) async fn room_has_remote_servers(
    conn: &mut PgConnection,
    room_id: &RoomId,
    local: &ServerName,
) -> Result<bool> {
    Ok(db::federation_edu_queue::room_has_remote_servers(conn, room_id.as_str(), local.as_str()).await?)
}

/// A local user's public read receipt (`m.read`; private receipts never leave the server).
pub(crate) struct ReadReceipt<'a> {
    pub room_id: &'a RoomId,
    pub user_id: &'a UserId,
    pub event_id: &'a str,
    /// `""` for an unthreaded receipt.
    pub thread_id: &'a str,
    pub ts: i64,
}

pub(crate) async fn read_receipt(conn: &mut PgConnection, receipt: &ReadReceipt<'_>, position: i64) -> Result<()> {
    let event_id = EventId::parse(receipt.event_id).map_err(|error| Error::internal(error.to_string()))?;
    let thread = ReceiptThread::try_from((!receipt.thread_id.is_empty()).then_some(receipt.thread_id))
        .map_err(|error| Error::internal(error.to_string()))?;
    let ts = MilliSecondsSinceUnixEpoch(UInt::try_from(receipt.ts).unwrap_or_default());
    let mut data = Receipt::new(ts);
    data.thread = thread;
    let read = BTreeMap::from([(receipt.user_id.to_owned(), ReceiptData::new(data, vec![event_id]))]);
    let receipts = BTreeMap::from([(receipt.room_id.to_owned(), ReceiptMap::new(read))]);
    let edu = Edu::Receipt(ReceiptContent::new(receipts));
    enqueue(conn, Servers::OfRoom(receipt.room_id.as_str()), receipt.user_id, &edu, position).await
}

/// A local user's presence as others should now see it.
pub(crate) struct PresenceChange<'a> {
    pub user_id: &'a UserId,
    pub state: PresenceState,
    pub status_msg: Option<String>,
    pub currently_active: bool,
}

/// Goes only to servers sharing a room with the user: nobody else may see their presence.
pub(crate) async fn presence(conn: &mut PgConnection, change: PresenceChange<'_>, position: i64) -> Result<()> {
    let mut update = PresenceUpdate::new(change.user_id.to_owned(), change.state, UInt::MIN);
    update.status_msg = change.status_msg;
    update.currently_active = change.currently_active;
    let edu = Edu::Presence(PresenceContent::new(vec![update]));
    enqueue(conn, Servers::SharingWith(change.user_id.as_str()), change.user_id, &edu, position).await
}

/// Queues `edu`, about the local user `user_id`, for `servers` (their own server excepted).
async fn enqueue(
    conn: &mut PgConnection,
    servers: Servers<'_>,
    user_id: &UserId,
    edu: &Edu,
    position: i64,
) -> Result<()> {
    let local = user_id.server_name().as_str();
    db::federation_edu_queue::enqueue_for(conn, servers, local, &serialize(edu)?, position).await?;
    Ok(())
}

/// To-device messages of a local sender for the users of one other server, under a message
/// id the receiver deduplicates by.
pub(crate) async fn to_device(
    conn: &mut PgConnection,
    destination: &ServerName,
    sender: &UserId,
    event_type: &str,
    message_id: &str,
    messages: DirectDeviceMessages,
    position: i64,
) -> Result<()> {
    let mut content =
        DirectDeviceContent::new(sender.to_owned(), event_type.into(), OwnedTransactionId::from(message_id));
    content.messages = messages;
    let edu = serialize(&Edu::DirectToDevice(content))?;
    db::federation_edu_queue::enqueue_to(conn, destination.as_str(), &edu, position).await?;
    Ok(())
}

/// A local user's device changed (new keys) or was deleted. `stream_id` is the change's
/// stream position; `prev_id` the position of the user's change before it, if any, so the
/// receiver can tell when it missed one (and then asks for the whole list).
pub(crate) struct DeviceChange<'a> {
    pub user_id: &'a UserId,
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub keys: Option<Raw<DeviceKeys>>,
    pub deleted: bool,
    pub prev_id: Option<i64>,
}

pub(crate) async fn device_list_update(
    conn: &mut PgConnection,
    change: DeviceChange<'_>,
    stream_id: i64,
) -> Result<()> {
    let stream_id_uint = UInt::try_from(stream_id).map_err(|error| Error::internal(error.to_string()))?;
    let mut content = DeviceListUpdateContent::new(change.user_id.to_owned(), change.device_id, stream_id_uint);
    content.device_display_name = change.display_name;
    content.keys = change.keys;
    content.deleted = change.deleted.then_some(true);
    content.prev_id = change.prev_id.and_then(|prev| UInt::try_from(prev).ok()).into_iter().collect();
    enqueue(
        conn,
        Servers::SharingWith(change.user_id.as_str()),
        change.user_id,
        &Edu::DeviceListUpdate(content),
        stream_id,
    )
    .await
}

/// A local user's cross-signing master or self-signing key changed.
pub(crate) async fn signing_key_update(
    conn: &mut PgConnection,
    user_id: &UserId,
    master_key: Option<Raw<CrossSigningKey>>,
    self_signing_key: Option<Raw<CrossSigningKey>>,
    position: i64,
) -> Result<()> {
    let mut content = SigningKeyUpdateContent::new(user_id.to_owned());
    content.master_key = master_key;
    content.self_signing_key = self_signing_key;
    enqueue(conn, Servers::SharingWith(user_id.as_str()), user_id, &Edu::SigningKeyUpdate(content), position).await
}
