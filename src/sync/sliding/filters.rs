//! The list filters (MSC4186's `SlidingRoomFilter`): what each asks of a room, decided by
//! facts about the user's rooms read once per look for all lists — and only those facts some
//! list's filters need.

use crate::db;
use crate::error::Result;
use crate::rooms::pdu::Pdu;
use crate::store::Store;
use crate::sync::sliding::lists::MemberRoom;
use crate::sync::sliding::unparsed::{MoreFilters, Unparsed};
use ruma::UserId;
use ruma::api::client::sync::sync_events::v5::request::{List, ListFilters};
use ruma::directory::RoomTypeFilter;
use ruma::events::room::member::MembershipState;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the filters need to know of the rooms, read once for all lists.
pub(super) struct FilterFacts {
    /// Rooms the user marked as direct chats (`m.direct`), and invites marked `is_direct`.
    pub direct: HashSet<String>,
    encrypted: HashSet<String>,
    room_types: HashMap<String, String>,
    /// The user's tags on each room they tagged (`m.tag` room account data).
    tags: HashMap<String, HashSet<String>>,
    /// The children of each space a list filters on that the user is joined to (others are
    /// ignored, as MSC4186 says: their children are not the user's to learn).
    space_children: HashMap<String, HashSet<String>>,
}

impl FilterFacts {
    pub(super) async fn read(
        pool: &Store,
        user: &UserId,
        rooms: &[MemberRoom],
        lists: &BTreeMap<String, List>,
        more: &Unparsed,
    ) -> Result<FilterFacts> {
        let mut direct = HashSet::new();
        if let Some(Value::Object(by_user)) = db::account_data::get(pool, user.as_str(), "", "m.direct").await? {
            for room_ids in by_user.values().filter_map(Value::as_array) {
                direct.extend(room_ids.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
        for room in rooms.iter().filter(|room| room.membership == MembershipState::Invite) {
            if let Some(event) = db::sync::member_event_at(pool, &room.room_id, user.as_str(), room.position).await? {
                let pdu = Pdu::from_stored(&event.event_id, &event.json)?;
                if pdu.content_value()["is_direct"] == Value::Bool(true) {
                    direct.insert(room.room_id.clone());
                }
            }
        }
        let (mut encrypted, mut room_types) = (HashSet::new(), HashMap::new());
        if needs_state(lists) {
            let ids: Vec<String> = rooms.iter().map(|room| room.room_id.clone()).collect();
            for facts in db::sliding_sync::room_facts(pool, &ids).await? {
                if facts.encrypted {
                    encrypted.insert(facts.room_id.clone());
                }
                if let Some(room_type) = facts.room_type {
                    room_types.insert(facts.room_id, room_type);
                }
            }
        }
        let mut tags = HashMap::new();
        if more.all_filters().any(|filters| filters.tags.is_some() || filters.not_tags.is_some()) {
            for (room_id, names) in db::sliding_sync::room_tags(pool, user.as_str()).await? {
                tags.insert(room_id, names.into_iter().collect());
            }
        }
        let joined: HashSet<&str> =
            rooms.iter().filter(|room| room.is_joined()).map(|room| room.room_id.as_str()).collect();
        let spaces: Vec<String> = more
            .all_filters()
            .filter_map(|filters| filters.spaces.as_ref())
            .flatten()
            .filter(|space| joined.contains(space.as_str()))
            .map(|space| space.to_string())
            .collect();
        let mut space_children: HashMap<String, HashSet<String>> = HashMap::new();
        if !spaces.is_empty() {
            for (space, child) in db::sliding_sync::space_children(pool, &spaces).await? {
                space_children.entry(space).or_default().insert(child);
            }
        }
        Ok(FilterFacts { direct, encrypted, room_types, tags, space_children })
    }

    /// Whether the room passes a list's filters: ruma's `filters` and the `more` it drops.
    pub(super) fn allows(&self, filters: Option<&ListFilters>, more: Option<&MoreFilters>, room: &MemberRoom) -> bool {
        filters.is_none_or(|filters| self.allows_parsed(filters, room))
            && more.is_none_or(|more| self.allows_more(more, room))
    }

    fn allows_parsed(&self, filters: &ListFilters, room: &MemberRoom) -> bool {
        let id = &room.room_id;
        let type_matches = |wanted: &RoomTypeFilter| match (wanted, self.room_types.get(id)) {
            (RoomTypeFilter::Default, None) => true,
            (RoomTypeFilter::Default, Some(_)) | (_, None) => false,
            (wanted, Some(room_type)) => wanted.as_str() == Some(room_type.as_str()),
        };
        filters.is_dm.is_none_or(|is_dm| self.direct.contains(id) == is_dm)
            && filters.is_encrypted.is_none_or(|wanted| self.encrypted.contains(id) == wanted)
            && filters.is_invite.is_none_or(|wanted| (room.membership == MembershipState::Invite) == wanted)
            && (filters.room_types.is_empty() || filters.room_types.iter().any(type_matches))
            && !filters.not_room_types.iter().any(type_matches)
    }

    fn allows_more(&self, more: &MoreFilters, room: &MemberRoom) -> bool {
        let id = &room.room_id;
        let tagged =
            |names: &Vec<String>| self.tags.get(id).is_some_and(|tags| names.iter().any(|name| tags.contains(name)));
        let in_space = |space: &ruma::OwnedRoomId| {
            self.space_children.get(space.as_str()).is_some_and(|children| children.contains(id))
        };
        more.spaces.as_ref().is_none_or(|spaces| spaces.iter().any(in_space))
            && more.tags.as_ref().is_none_or(tagged)
            && !more.not_tags.as_ref().is_some_and(tagged)
    }
}

/// Whether any list filters on what only the rooms' state tells.
fn needs_state(lists: &BTreeMap<String, List>) -> bool {
    lists.values().filter_map(|list| list.filters.as_ref()).any(|filters| {
        filters.is_encrypted.is_some() || !filters.room_types.is_empty() || !filters.not_room_types.is_empty()
    })
}
