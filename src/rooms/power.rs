//! Reading power levels from a room's current state, for decisions taken before an event is
//! built (the auth rules remain the final word on every event).

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use crate::store::Store;
use ruma::RoomId;
use serde_json::Value;

/// The current state entries power levels are read from.
pub(crate) const POWER_KEYS: [(&str, &str); 2] = [("m.room.create", ""), ("m.room.power_levels", "")];

/// The current power levels content and the room's creators (the create event's sender and,
/// in room version 12, its `additional_creators`).
pub(crate) struct PowerLevels {
    pub content: Value,
    pub creators: Vec<String>,
    /// Whether creators outrank everyone (room version 12).
    pub creators_are_privileged: bool,
}

impl PowerLevels {
    pub(crate) async fn current(pool: &Store, room_id: &RoomId) -> Result<PowerLevels> {
        let entries = db::state::current_state_for_keys(pool, room_id.as_str(), &POWER_KEYS).await?;
        PowerLevels::from_state(room_id, &entries)
    }

    /// From state entries that include the room's create event and, if it has one, its power
    /// levels event (see [`POWER_KEYS`]); other entries are passed over.
    pub(crate) fn from_state(room_id: &RoomId, entries: &[db::state::StateEntry]) -> Result<PowerLevels> {
        let find = |event_type: &str| {
            entries.iter().find(|entry| entry.event_type == event_type && entry.state_key.is_empty())
        };
        let create = find("m.room.create").ok_or_else(|| Error::not_found(format!("Unknown room {room_id}")))?;
        let create = Pdu::from_stored(&create.event_id, &create.json)?;
        let create_content = create.content_value();
        let version = create_content["room_version"].as_str().unwrap_or("1");
        let creators_are_privileged = ruma::RoomVersionId::try_from(version)
            .ok()
            .and_then(|version| version.rules())
            .is_some_and(|rules| rules.authorization.explicitly_privilege_room_creators);
        let mut creators = vec![create.sender.to_string()];
        if creators_are_privileged {
            creators.extend(
                create_content["additional_creators"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|u| u.as_str().map(str::to_owned)),
            );
        }
        let content = match find("m.room.power_levels") {
            Some(entry) => Pdu::from_stored(&entry.event_id, &entry.json)?.content_value(),
            None => Value::Null,
        };
        Ok(PowerLevels { content, creators, creators_are_privileged })
    }

    /// A user's level; creators of a v12 room outrank any number.
    pub(crate) fn of(&self, user: &str) -> i64 {
        if self.creators_are_privileged && self.creators.iter().any(|creator| creator == user) {
            return i64::MAX;
        }
        if self.content.is_null() {
            // Without a power levels event the creator has 100 and everyone else 0.
            return if self.creators.first().is_some_and(|creator| creator == user) { 100 } else { 0 };
        }
        self.content["users"][user].as_i64().or_else(|| self.content["users_default"].as_i64()).unwrap_or(0)
    }

    /// The level needed to send a state event of `event_type`.
    pub(crate) fn for_state_event(&self, event_type: &str) -> i64 {
        self.content["events"][event_type].as_i64().or_else(|| self.content["state_default"].as_i64()).unwrap_or(50)
    }

    pub(crate) fn invite(&self) -> i64 {
        self.content["invite"].as_i64().unwrap_or(0)
    }
}
