//! The `/sync` response as the domain hands it to the transports: typed sections whose events
//! are JSON serialised once, when the section was built. The transports (`http/`) render it;
//! nothing here is turned back into a JSON tree, so a room entry kept by the initial-sync
//! cache is served again by copying its events' bytes.

use crate::e2ee::types::DeviceListChanges;
use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use crate::rooms::served::Served;
use ruma::OneTimeKeyAlgorithm;
use ruma::RoomId;
use ruma::UInt;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One event of a section: the client-format JSON, and what the section filters, lazy loading
/// and transaction ids look at, read before it was serialised (so it is never parsed again).
#[derive(Clone, Debug)]
pub struct SyncEvent {
    pub kind: String,
    pub sender: Option<String>,
    pub event_id: Option<String>,
    pub state_key: Option<String>,
    json: Box<RawValue>,
}

impl SyncEvent {
    /// Serialises a client-format event (or an ephemeral or account data event).
    pub fn new(event: &Value) -> Result<SyncEvent> {
        let text = |key: &str| event.get(key).and_then(Value::as_str).map(str::to_owned);
        let json = serde_json::value::to_raw_value(event).map_err(|e| Error::internal(format!("sync event: {e}")))?;
        Ok(SyncEvent {
            kind: text("type").unwrap_or_default(),
            sender: text("sender"),
            event_id: text("event_id"),
            state_key: text("state_key"),
            json,
        })
    }

    /// A room event served as it is (not redacted, nothing bundled): its client-format JSON
    /// written straight from the parsed event (`Pdu::client_event_json`), with no tree built
    /// for it and written again.
    pub(crate) fn of_event(pdu: &Pdu, room_id: &RoomId) -> Result<SyncEvent> {
        Ok(SyncEvent {
            kind: pdu.kind.to_string(),
            sender: Some(pdu.sender.to_string()),
            event_id: Some(pdu.event_id.to_string()),
            state_key: pdu.state_key.clone(),
            json: pdu.client_event_json(room_id)?,
        })
    }

    /// A served room event (see `rooms::served`), with the bundled aggregations of its
    /// children (`bundle`, may be empty): written straight when it is served as it is.
    pub(crate) fn of_served(
        served: &Served,
        room_id: &RoomId,
        bundle: Option<Map<String, Value>>,
    ) -> Result<SyncEvent> {
        let bundle = bundle.filter(|bundle| !bundle.is_empty());
        if served.redaction.is_none() && bundle.is_none() {
            return SyncEvent::of_event(&served.pdu, room_id);
        }
        SyncEvent::new(&served.client_event_bundled(room_id, bundle))
    }

    /// Serialises each event of a section.
    pub fn all(events: &[Value]) -> Result<Vec<SyncEvent>> {
        events.iter().map(SyncEvent::new).collect()
    }

    /// The event's JSON text.
    pub fn raw(&self) -> &RawValue {
        &self.json
    }

    /// The event's JSON, for a response type that holds raw events (sliding sync).
    pub fn into_raw<T>(self) -> ruma::serde::Raw<T> {
        ruma::serde::Raw::from_json(self.json)
    }

    /// Adds `unsigned.transaction_id` (the sending device's own id for the event). This is the
    /// one change an event gets after it was built, and only the device's own sends get it.
    ///
    /// Only `unsigned` is parsed: the other fields are copied as the text they are (a whole
    /// tree of the event, its content included, was built and written again for one key).
    pub fn set_transaction_id(&mut self, transaction_id: &str) -> Result<()> {
        let failed = |e: serde_json::Error| Error::internal(format!("sync event {:?}: {e}", self.event_id));
        // An event written by `Pdu::client_event_json` ends with its empty `unsigned` (keys are
        // in order, `unsigned` last): the id goes in there, and nothing is parsed at all. (A
        // string cannot end the text with these characters: its quotes would be escaped.)
        const EMPTY_UNSIGNED_LAST: &str = ",\"unsigned\":{}}";
        if let Some(before) = self.json.get().strip_suffix(EMPTY_UNSIGNED_LAST) {
            let transaction_id = serde_json::to_string(transaction_id).map_err(failed)?;
            let json = format!("{before},\"unsigned\":{{\"transaction_id\":{transaction_id}}}}}");
            self.json = RawValue::from_string(json).map_err(failed)?;
            return Ok(());
        }
        self.set_transaction_id_reserialised(transaction_id)
    }

    /// [`SyncEvent::set_transaction_id`] for any event: its top-level fields read as text, its
    /// `unsigned` parsed, and the whole written again.
    fn set_transaction_id_reserialised(&mut self, transaction_id: &str) -> Result<()> {
        let failed = |e: serde_json::Error| Error::internal(format!("sync event {:?}: {e}", self.event_id));
        let json = {
            let mut fields: std::collections::BTreeMap<String, &RawValue> =
                serde_json::from_str(self.json.get()).map_err(failed)?;
            let mut unsigned: serde_json::Map<String, Value> = match fields.get("unsigned") {
                Some(unsigned) => serde_json::from_str(unsigned.get()).map_err(failed)?,
                None => serde_json::Map::new(),
            };
            unsigned.insert("transaction_id".to_owned(), Value::from(transaction_id));
            let unsigned = serde_json::value::to_raw_value(&unsigned).map_err(failed)?;
            fields.insert("unsigned".to_owned(), &unsigned);
            serde_json::value::to_raw_value(&fields).map_err(failed)?
        };
        self.json = json;
        Ok(())
    }
}

impl Serialize for SyncEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

/// `{"events": [...]}`, the shape of every event section.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Events {
    pub events: Vec<SyncEvent>,
}

impl Events {
    /// The section of `events`, or none when there are none.
    pub fn non_empty(events: Vec<SyncEvent>) -> Option<Events> {
        (!events.is_empty()).then_some(Events { events })
    }
}

/// `rooms.{join,leave}.{id}.timeline`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timeline {
    pub events: Vec<SyncEvent>,
    pub limited: bool,
    pub prev_batch: String,
}

/// `rooms.join.{id}.summary`.
#[derive(Clone, Debug, Serialize)]
pub struct RoomSummary {
    /// Only for rooms without a name to show.
    #[serde(rename = "m.heroes", skip_serializing_if = "Option::is_none")]
    pub heroes: Option<Vec<String>>,
    #[serde(rename = "m.joined_member_count")]
    pub joined_member_count: i64,
    #[serde(rename = "m.invited_member_count")]
    pub invited_member_count: i64,
}

/// `unread_notifications`, and each thread's in `unread_thread_notifications`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnreadCount {
    pub notification_count: u64,
    pub highlight_count: u64,
}

/// A `rooms.join` or `rooms.leave` entry; the sections a left room never has stay empty.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncRoom {
    pub timeline: Timeline,
    pub state: Events,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_data: Option<Events>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<Events>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<RoomSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread_notifications: Option<UnreadCount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread_thread_notifications: Option<BTreeMap<String, UnreadCount>>,
}

/// `rooms.invite.{id}`.
#[derive(Clone, Debug, Serialize)]
pub struct InvitedRoom {
    pub invite_state: Events,
}

/// `rooms.knock.{id}`.
#[derive(Clone, Debug, Serialize)]
pub struct KnockedRoom {
    pub knock_state: Events,
}

/// `rooms`, by room id. Joined rooms are shared with the initial-sync cache.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rooms {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub join: BTreeMap<String, Arc<SyncRoom>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub invite: BTreeMap<String, InvitedRoom>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub leave: BTreeMap<String, SyncRoom>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub knock: BTreeMap<String, KnockedRoom>,
}

impl Rooms {
    pub fn is_empty(&self) -> bool {
        self.join.is_empty() && self.invite.is_empty() && self.leave.is_empty() && self.knock.is_empty()
    }
}

/// `device_lists`.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceLists {
    pub changed: Vec<ruma::OwnedUserId>,
    pub left: Vec<ruma::OwnedUserId>,
}

impl From<DeviceListChanges> for DeviceLists {
    fn from(changes: DeviceListChanges) -> DeviceLists {
        DeviceLists { changed: changes.changed, left: changes.left }
    }
}

/// `device_one_time_keys_count` and `device_unused_fallback_key_types` of the requesting
/// device: in every response that has a device (clients read a missing count as zero).
#[derive(Clone, Debug, Default, Serialize)]
pub struct KeyCounts {
    pub device_one_time_keys_count: BTreeMap<OneTimeKeyAlgorithm, UInt>,
    pub device_unused_fallback_key_types: Vec<OneTimeKeyAlgorithm>,
}

/// The response body without `next_batch`: each section is absent when it has nothing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncBody {
    #[serde(skip_serializing_if = "Rooms::is_empty")]
    pub rooms: Rooms,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_data: Option<Events>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<Events>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_device: Option<Events>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_lists: Option<DeviceLists>,
    /// Not news on its own: set last, on the answer.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub key_counts: Option<KeyCounts>,
}

impl SyncBody {
    /// A body with no sections yet.
    pub fn empty() -> SyncBody {
        SyncBody::default()
    }

    /// Whether nothing the client would learn from is in it (the key counts aside).
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
            && self.account_data.is_none()
            && self.presence.is_none()
            && self.to_device.is_none()
            && self.device_lists.is_none()
    }

    /// Adds another body's sections (which are disjoint from this one's).
    pub fn merge(&mut self, other: SyncBody) {
        let SyncBody { rooms, account_data, presence, to_device, device_lists, key_counts } = other;
        if !rooms.is_empty() {
            self.rooms = rooms;
        }
        self.account_data = self.account_data.take().or(account_data);
        self.presence = self.presence.take().or(presence);
        self.to_device = self.to_device.take().or(to_device);
        self.device_lists = self.device_lists.take().or(device_lists);
        self.key_counts = self.key_counts.take().or(key_counts);
    }

    /// The body as a JSON tree (for tests and callers that inspect it; the transports
    /// serialise it directly).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// A whole `/sync` response: the body and the token of the next window.
#[derive(Clone, Debug, Serialize)]
pub struct SyncResponse {
    #[serde(flatten)]
    pub body: SyncBody,
    pub next_batch: String,
}

#[cfg(test)]
mod tests {
    use super::SyncEvent;
    use serde_json::{Value, json};

    fn value_of(event: &SyncEvent) -> Value {
        serde_json::from_str(event.raw().get()).expect("an event's JSON")
    }

    #[test]
    fn a_transaction_id_joins_unsigned_and_leaves_the_rest_as_it_was() {
        let event = json!({
            "type": "m.room.message", "event_id": "$a", "sender": "@u:x",
            "content": {"body": "quote \" and \\u00e9", "nested": {"list": [1, 2.5, null]}},
            "unsigned": {"age": 5},
        });
        let mut served = SyncEvent::new(&event).expect("serialised");
        served.set_transaction_id("txn-1").expect("annotated");
        let mut expected = event.clone();
        expected["unsigned"]["transaction_id"] = json!("txn-1");
        assert_eq!(value_of(&served), expected);
        assert_eq!(served.event_id.as_deref(), Some("$a"));
    }

    #[test]
    fn an_empty_unsigned_at_the_end_takes_the_id_as_a_reserialised_event_would() {
        // As `Pdu::client_event_json` writes an event: keys in order, an empty `unsigned` last,
        // a content that says `"unsigned":{}` in a string and in an object of its own.
        let event = json!({
            "content": {"body": "ends with ,\"unsigned\":{}}", "unsigned": {}},
            "event_id": "$c", "sender": "@u:x", "type": "m.room.message", "unsigned": {},
        });
        let mut served = SyncEvent::new(&event).expect("serialised");
        assert!(served.raw().get().ends_with(",\"unsigned\":{}}"), "{}", served.raw().get());
        served.set_transaction_id("txn \"3\"").expect("annotated");
        let mut expected = event.clone();
        expected["unsigned"] = json!({"transaction_id": "txn \"3\""});
        assert_eq!(value_of(&served), expected);
        let mut general = SyncEvent::new(&event).expect("serialised");
        general.set_transaction_id_reserialised("txn \"3\"").expect("annotated");
        assert_eq!(served.raw().get(), general.raw().get(), "the same text either way");
    }

    #[test]
    fn an_event_without_unsigned_gets_one() {
        let event = json!({"type": "m.room.message", "event_id": "$b", "content": {}});
        let mut served = SyncEvent::new(&event).expect("serialised");
        served.set_transaction_id("txn-2").expect("annotated");
        let mut expected = event.clone();
        expected["unsigned"] = json!({"transaction_id": "txn-2"});
        assert_eq!(value_of(&served), expected);
    }
}
