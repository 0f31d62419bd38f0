//! A PDU: one event of a room's DAG, exactly as signed, plus its parsed fields.

use crate::error::{Error, Result};
use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::TimelineEventType;
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue as RawJsonValue;
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};

/// A parsed event, shared: a clone is a reference count. The parsed events cache
/// (`rooms::parsed`) hands the same event to every sync a message wakes, and each used to copy
/// its fields and its text (a dozen allocations and the JSON, per member, per event).
#[derive(Clone, Debug)]
pub struct Pdu(Arc<PduFields>);

impl std::ops::Deref for Pdu {
    type Target = PduFields;

    fn deref(&self) -> &PduFields {
        &self.0
    }
}

/// What a [`Pdu`] holds: the event's parsed fields beside its canonical text.
#[derive(Debug)]
pub struct PduFields {
    pub event_id: OwnedEventId,
    /// Absent only on a v12 create event, whose id *is* the room id.
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawJsonValue>,
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub depth: UInt,
    /// The signed event as a tree (with an `event_id` key only in room versions 1 and 2), made
    /// from `text` when first asked for ([`Pdu::object`]): serving a stored event needs its
    /// fields and its text, and only redacting it or checking its hashes and signatures needs
    /// the tree. Never changed once made.
    object: OnceLock<CanonicalJsonObject>,
    /// `json` as canonical JSON text, made once: every writer and sender of the event needs it,
    /// and serialising the object again (after cloning it) cost each of them.
    text: String,
}

#[derive(Deserialize)]
struct Fields {
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    kind: TimelineEventType,
    content: Box<RawJsonValue>,
    state_key: Option<String>,
    #[serde(deserialize_with = "event_references")]
    prev_events: Vec<OwnedEventId>,
    #[serde(deserialize_with = "event_references")]
    auth_events: Vec<OwnedEventId>,
    /// Read leniently: a redaction naming no valid event redacts nothing (and a local one is
    /// refused as the client's mistake), rather than making the whole PDU unreadable.
    redacts: Option<Value>,
    depth: UInt,
}

/// One entry of `prev_events` or `auth_events`: an event id (room versions 3 and later), or in
/// room versions 1 and 2 a pair of the id and the event's hashes, which nothing checks (Synapse
/// writes them empty), so only the id is kept.
#[derive(Deserialize)]
#[serde(untagged)]
enum EventReference {
    Id(OwnedEventId),
    IdAndHashes(OwnedEventId, serde::de::IgnoredAny),
}

fn event_references<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<OwnedEventId>, D::Error> {
    let references = Vec::<EventReference>::deserialize(deserializer)?;
    Ok(references
        .into_iter()
        .map(|reference| match reference {
            EventReference::Id(id) | EventReference::IdAndHashes(id, _) => id,
        })
        .collect())
}

#[derive(Deserialize)]
struct RedactsInContent {
    redacts: Option<OwnedEventId>,
}

impl Pdu {
    pub fn from_canonical(event_id: OwnedEventId, json: CanonicalJsonObject) -> Result<Pdu> {
        let text = serde_json::to_string(&json).map_err(|e| Error::internal(format!("serialising a PDU: {e}")))?;
        Pdu::from_text(event_id, text, OnceLock::from(json))
    }

    /// Parses an event as stored in the database. The stored text is the canonical JSON its
    /// tree serialises to ([`Pdu::from_canonical`] made it), so its fields are read straight
    /// from it: no tree is built (see [`Pdu::object`]) and nothing is serialised again.
    pub fn from_stored(event_id: &str, json: &str) -> Result<Pdu> {
        let event_id =
            OwnedEventId::try_from(event_id).map_err(|e| Error::internal(format!("stored event id: {e}")))?;
        Pdu::from_text(event_id, json.to_owned(), OnceLock::new())
    }

    /// The PDU of canonical JSON `text`, whose tree is `object` when known already.
    fn from_text(event_id: OwnedEventId, text: String, object: OnceLock<CanonicalJsonObject>) -> Result<Pdu> {
        let fields: Fields =
            serde_json::from_str(&text).map_err(|e| Error::internal(format!("PDU {event_id} is malformed: {e}")))?;
        // Since room version 11 `redacts` lives in the content.
        let top_level_redacts =
            fields.redacts.as_ref().and_then(Value::as_str).and_then(|id| OwnedEventId::try_from(id).ok());
        let redacts = top_level_redacts.or_else(|| {
            (fields.kind == TimelineEventType::RoomRedaction)
                .then(|| serde_json::from_str::<RedactsInContent>(fields.content.get()).ok().and_then(|c| c.redacts))
                .flatten()
        });
        Ok(Pdu(Arc::new(PduFields {
            event_id,
            room_id: fields.room_id,
            sender: fields.sender,
            origin_server_ts: fields.origin_server_ts,
            kind: fields.kind,
            content: fields.content,
            state_key: fields.state_key,
            prev_events: fields.prev_events,
            auth_events: fields.auth_events,
            redacts,
            depth: fields.depth,
            object,
            text,
        })))
    }

    /// The signed event as a canonical JSON tree, parsed from its text on first use.
    pub fn object(&self) -> Result<&CanonicalJsonObject> {
        if let Some(object) = self.object.get() {
            return Ok(object);
        }
        let parsed: CanonicalJsonObject = serde_json::from_str(&self.text)
            .map_err(|e| Error::internal(format!("PDU {} is not canonical JSON: {e}", self.event_id)))?;
        Ok(self.object.get_or_init(|| parsed))
    }

    /// The canonical JSON text (what is stored and what federation will send).
    pub fn canonical_json(&self) -> String {
        self.text.clone()
    }

    /// [`Pdu::canonical_json`], borrowed.
    pub fn canonical_text(&self) -> &str {
        &self.text
    }

    pub fn content_value(&self) -> Value {
        serde_json::from_str(self.content.get()).unwrap_or(Value::Null)
    }

    /// The event in the client-server API's format.
    pub fn to_client_event(&self, room_id: &RoomId) -> Value {
        let mut event = json!({
            "event_id": self.event_id,
            "room_id": room_id,
            "sender": self.sender,
            "origin_server_ts": self.origin_server_ts,
            "type": self.kind.to_string(),
            "content": self.content_value(),
            "unsigned": {},
        });
        if let Some(state_key) = &self.state_key {
            event["state_key"] = json!(state_key);
        }
        if let Some(redacts) = &self.redacts {
            event["redacts"] = json!(redacts);
        }
        event
    }

    /// [`Pdu::to_client_event`] as JSON text, written straight from the event's fields: its
    /// content is copied as the text it is, not parsed into a tree and written out again. The
    /// same JSON, keys in the same (sorted) order.
    pub fn client_event_json(&self, room_id: &RoomId) -> Result<Box<RawJsonValue>> {
        /// `{}`.
        #[derive(Serialize)]
        struct NothingUnsigned {}
        #[derive(Serialize)]
        struct ClientEvent<'a> {
            content: &'a RawJsonValue,
            event_id: &'a EventId,
            origin_server_ts: MilliSecondsSinceUnixEpoch,
            #[serde(skip_serializing_if = "Option::is_none")]
            redacts: Option<&'a EventId>,
            room_id: &'a RoomId,
            sender: &'a UserId,
            #[serde(skip_serializing_if = "Option::is_none")]
            state_key: Option<&'a str>,
            #[serde(rename = "type")]
            kind: &'a TimelineEventType,
            unsigned: NothingUnsigned,
        }
        let event = ClientEvent {
            content: &self.content,
            event_id: &self.event_id,
            origin_server_ts: self.origin_server_ts,
            redacts: self.redacts.as_deref(),
            room_id,
            sender: &self.sender,
            state_key: self.state_key.as_deref(),
            kind: &self.kind,
            unsigned: NothingUnsigned {},
        };
        serde_json::value::to_raw_value(&event)
            .map_err(|e| Error::internal(format!("client event {}: {e}", self.event_id)))
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawJsonValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::Pdu;
    use ruma::canonical_json::CanonicalJsonObject;
    use ruma::events::TimelineEventType;

    const STORED: &str = r#"{"auth_events":["$create","$power"],"content":{"body":"caf\u00e9 \"quoted\"","n":[1,-2]},"depth":7,"hashes":{"sha256":"abc"},"origin_server_ts":1700000000000,"prev_events":["$prev"],"room_id":"!r:x","sender":"@u:x","signatures":{"x":{"ed25519:a":"sig"}},"type":"m.room.message"}"#;

    #[test]
    fn a_stored_event_reads_as_the_tree_it_was_written_from() {
        let tree: CanonicalJsonObject = serde_json::from_str(STORED).expect("canonical JSON");
        let built = Pdu::from_canonical("$e".try_into().expect("id"), tree.clone()).expect("built");
        let stored = Pdu::from_stored("$e", built.canonical_text()).expect("stored");
        assert_eq!(stored.canonical_text(), built.canonical_text(), "the text is kept as stored");
        assert_eq!(stored.object().expect("tree"), &tree, "the tree, made when asked, is the one written");
        assert_eq!(stored.kind, TimelineEventType::RoomMessage);
        assert_eq!(stored.depth, built.depth);
        assert_eq!(stored.prev_events, built.prev_events);
        assert_eq!(stored.auth_events, built.auth_events);
        assert_eq!(stored.content.get(), built.content.get());
    }

    /// The event as the database holds it: the canonical serialisation of its tree.
    fn stored(event_id: &str, text: &str) -> Pdu {
        let tree: CanonicalJsonObject = serde_json::from_str(text).expect("canonical JSON");
        let built = Pdu::from_canonical(event_id.try_into().expect("id"), tree).expect("built");
        Pdu::from_stored(event_id, built.canonical_text()).expect("stored")
    }

    #[test]
    fn the_client_event_written_straight_is_the_one_built_as_a_tree() {
        let room_id: &ruma::RoomId = "!r:x".try_into().expect("room id");
        let member = STORED.replace("\"type\":\"m.room.message\"", "\"state_key\":\"@u:x\",\"type\":\"m.room.member\"");
        let redaction =
            STORED.replace("\"type\":\"m.room.message\"", "\"redacts\":\"$old\",\"type\":\"m.room.redaction\"");
        for pdu in [stored("$e", STORED), stored("$m", &member), stored("$r", &redaction)] {
            let written = pdu.client_event_json(room_id).expect("written");
            let built = serde_json::to_string(&pdu.to_client_event(room_id)).expect("built");
            assert_eq!(written.get(), built, "the same text, byte for byte");
        }
    }

    #[test]
    fn stored_text_that_is_not_canonical_json_fails_when_the_tree_is_asked_for() {
        // A float: JSON, but not canonical JSON (no float is ever stored; this is the guard).
        let text = STORED.replace("\"n\":[1,-2]", "\"n\":[1.5]");
        let stored = Pdu::from_stored("$e", &text).expect("its fields read");
        assert!(stored.object().is_err());
    }
}
