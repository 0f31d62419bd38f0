//! What a room looks like from outside: the summary fields that the directory, space
//! hierarchies and previews show, from the room's current state.

use crate::db;
use crate::error::Result;
use crate::rooms::pdu::Pdu;
use crate::store::Store;
use ruma::events::room::member::MembershipState;
use ruma::{RoomId, UserId};
use serde_json::{Value, json};
use std::collections::HashMap;

/// The room's current state as `type → state_key → (content, event)`.
pub(crate) struct CurrentState {
    entries: HashMap<(String, String), Pdu>,
}

impl CurrentState {
    pub(crate) async fn load(pool: &Store, room_id: &RoomId) -> Result<CurrentState> {
        let mut entries = HashMap::new();
        for entry in db::state::current_state(pool, room_id.as_str()).await? {
            let pdu = Pdu::from_stored(&entry.event_id, &entry.json)?;
            entries.insert((entry.event_type, entry.state_key), pdu);
        }
        Ok(CurrentState { entries })
    }

    pub(crate) fn content(&self, event_type: &str, state_key: &str) -> Value {
        self.entries.get(&(event_type.to_owned(), state_key.to_owned())).map(Pdu::content_value).unwrap_or(Value::Null)
    }

    pub(crate) fn events_of_type<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = &'a Pdu> + 'a {
        self.entries.iter().filter(move |((kind, _), _)| kind == event_type).map(|(_, pdu)| pdu)
    }

    pub(crate) fn join_rule(&self) -> String {
        self.content("m.room.join_rules", "")["join_rule"].as_str().unwrap_or("invite").to_owned()
    }

    pub(crate) fn membership(&self, user: &UserId) -> Option<String> {
        self.content("m.room.member", user.as_str())["membership"].as_str().map(str::to_owned)
    }

    pub(crate) fn world_readable(&self) -> bool {
        self.content("m.room.history_visibility", "")["history_visibility"] == "world_readable"
    }
}

/// The spec's room summary object (as in `/hierarchy` and `/publicRooms` chunks).
pub(crate) async fn summary(pool: &Store, room_id: &RoomId, state: &CurrentState) -> Result<Value> {
    let joined = db::rooms::joined_members(pool, room_id.as_str()).await?.len();
    let create = state.content("m.room.create", "");
    let mut summary = json!({
        "room_id": room_id,
        "num_joined_members": joined,
        "join_rule": state.join_rule(),
        "world_readable": state.world_readable(),
        "guest_can_join": state.content("m.room.guest_access", "")["guest_access"] == "can_join",
        "room_version": create["room_version"].as_str().unwrap_or("1"),
    });
    let optional = [
        ("name", state.content("m.room.name", "")["name"].clone()),
        ("topic", state.content("m.room.topic", "")["topic"].clone()),
        ("avatar_url", state.content("m.room.avatar", "")["url"].clone()),
        ("canonical_alias", state.content("m.room.canonical_alias", "")["alias"].clone()),
        ("room_type", create["type"].clone()),
        ("encryption", state.content("m.room.encryption", "")["algorithm"].clone()),
    ];
    for (field, value) in optional {
        if value.is_string() && value.as_str() != Some("") {
            summary[field] = value;
        }
    }
    Ok(summary)
}

/// Whether `user` may look at the room from outside: they are in it or invited, it is open
/// to joins or knocks, it is world-readable, or its restriction admits them.
pub(crate) async fn can_preview(pool: &Store, user: &UserId, state: &CurrentState) -> Result<bool> {
    if matches!(state.membership(user).as_deref(), Some("join" | "invite")) || state.world_readable() {
        return Ok(true);
    }
    let join_rules = state.content("m.room.join_rules", "");
    match join_rules["join_rule"].as_str() {
        Some("public" | "knock") => Ok(true),
        Some("restricted" | "knock_restricted") => {
            let allowed = join_rules["allow"].as_array().into_iter().flatten().filter_map(|c| c["room_id"].as_str());
            for room in allowed {
                if db::rooms::membership(pool, room, user.as_str())
                    .await?
                    .is_some_and(|m| m.membership == MembershipState::Join)
                {
                    return Ok(true);
                }
            }
            Ok(join_rules["join_rule"] == "knock_restricted")
        }
        _ => Ok(false),
    }
}
