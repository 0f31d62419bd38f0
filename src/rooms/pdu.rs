//! A PDU: one event of a room's DAG, exactly as signed, plus its parsed fields.

use crate::error::{Error, Result};
use ruma::canonical_json::CanonicalJsonObject;
use ruma::events::TimelineEventType;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId};
use serde::Deserialize;
use serde_json::value::RawValue as RawJsonValue;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct Pdu {
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
    /// The signed event as stored (with an `event_id` key only in room versions 1 and 2).
    /// Never changed once the PDU is made: `text` is its serialisation. Shared, so that a
    /// clone of a parsed event (`rooms::parsed`) does not copy the whole tree.
    pub json: Arc<CanonicalJsonObject>,
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
        Ok(Pdu {
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
            json: Arc::new(json),
            text,
        })
    }

    /// Parses an event as stored in the database.
    pub fn from_stored(event_id: &str, json: &str) -> Result<Pdu> {
        let event_id =
            OwnedEventId::try_from(event_id).map_err(|e| Error::internal(format!("stored event id: {e}")))?;
        let object: CanonicalJsonObject =
            serde_json::from_str(json).map_err(|e| Error::internal(format!("stored event {event_id}: {e}")))?;
        Pdu::from_canonical(event_id, object)
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
