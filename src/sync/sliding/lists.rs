//! The rooms a sliding sync can show and its lists over them: each list filters the user's
//! rooms, sorts them by recency (`bump_stamp`) and shows those in its `ranges`.

use crate::db;
use crate::db::sync::MembershipRow;
use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use ruma::UserId;
use ruma::api::client::sync::sync_events::v5::request::{List, ListFilters};
use ruma::directory::RoomTypeFilter;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A room the user has a membership in, as of the answer's stream position.
#[derive(Clone, Debug)]
pub struct MemberRoom {
    pub room_id: String,
    pub membership: String,
    /// Position of the member event that set the membership.
    pub position: i64,
    /// Its latest bump event's position, or for a room not joined the membership's.
    pub bump_stamp: i64,
}

impl MemberRoom {
    pub fn is_joined(&self) -> bool {
        self.membership == "join"
    }

    /// Invited or knocking: the room is known only by its stripped state.
    pub fn is_pending(&self) -> bool {
        matches!(self.membership.as_str(), "invite" | "knock")
    }
}

/// The user's rooms as of `upto` that lists may show: joined, invited and knocked ones, and
/// those left or banned from after `since` (so the client learns of the leave). Forgotten
/// rooms never appear.
pub async fn member_rooms(
    pool: &PgPool,
    user: &UserId,
    memberships: &[MembershipRow],
    since: Option<i64>,
    upto: i64,
) -> Result<Vec<MemberRoom>> {
    let mut rooms = Vec::new();
    for row in memberships.iter().filter(|row| !row.forgotten) {
        // The row is the latest membership; one newer than `upto` belongs to the next answer.
        let (membership, position) = if row.stream_position <= upto {
            (row.membership.clone(), row.stream_position)
        } else {
            let Some(event) = db::sync::member_event_at(pool, &row.room_id, user.as_str(), upto).await? else {
                continue;
            };
            let pdu = Pdu::from_stored(&event.event_id, &event.json)?;
            let membership = pdu.content_value()["membership"].as_str().unwrap_or_default().to_owned();
            (membership, event.stream_position)
        };
        let shown = match membership.as_str() {
            "join" | "invite" | "knock" => true,
            "leave" | "ban" => since.is_some_and(|since| position > since),
            _ => false,
        };
        if shown {
            rooms.push(MemberRoom { room_id: row.room_id.clone(), membership, position, bump_stamp: position });
        }
    }
    let joined: Vec<String> = rooms.iter().filter(|room| room.is_joined()).map(|room| room.room_id.clone()).collect();
    let stamps: HashMap<String, i64> = db::sliding_sync::bump_stamps(pool, &joined, upto).await?.into_iter().collect();
    for room in rooms.iter_mut().filter(|room| room.is_joined()) {
        if let Some(stamp) = stamps.get(&room.room_id) {
            room.bump_stamp = *stamp;
        }
    }
    // Most recent first; the room id breaks ties so that the order is stable.
    rooms.sort_by(|a, b| b.bump_stamp.cmp(&a.bump_stamp).then_with(|| a.room_id.cmp(&b.room_id)));
    Ok(rooms)
}

/// Refuses lists a client cannot mean: a range that ends before it starts.
pub fn validate(lists: &BTreeMap<String, List>) -> Result<()> {
    for (name, list) in lists {
        if let Some((start, end)) = list.ranges.iter().find(|(start, end)| start > end) {
            return Err(Error::invalid_param(format!(
                "List {name:?} has a range that ends before it starts: [{start}, {end}]"
            )));
        }
    }
    Ok(())
}

/// What the filters need to know of the rooms, read once for all lists.
pub struct FilterFacts {
    /// Rooms the user marked as direct chats (`m.direct`), and invites marked `is_direct`.
    pub direct: HashSet<String>,
    encrypted: HashSet<String>,
    room_types: HashMap<String, String>,
}

impl FilterFacts {
    pub async fn read(pool: &PgPool, user: &UserId, rooms: &[MemberRoom], needs_state: bool) -> Result<FilterFacts> {
        let mut direct = HashSet::new();
        if let Some(Value::Object(by_user)) = db::account_data::get(pool, user.as_str(), "", "m.direct").await? {
            for room_ids in by_user.values().filter_map(Value::as_array) {
                direct.extend(room_ids.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
        for room in rooms.iter().filter(|room| room.membership == "invite") {
            if let Some(event) = db::sync::member_event_at(pool, &room.room_id, user.as_str(), room.position).await? {
                let pdu = Pdu::from_stored(&event.event_id, &event.json)?;
                if pdu.content_value()["is_direct"] == Value::Bool(true) {
                    direct.insert(room.room_id.clone());
                }
            }
        }
        let (mut encrypted, mut room_types) = (HashSet::new(), HashMap::new());
        if needs_state {
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
        Ok(FilterFacts { direct, encrypted, room_types })
    }

    fn allows(&self, filters: &ListFilters, room: &MemberRoom) -> bool {
        let id = &room.room_id;
        let type_matches = |wanted: &RoomTypeFilter| match (wanted, self.room_types.get(id)) {
            (RoomTypeFilter::Default, None) => true,
            (RoomTypeFilter::Default, Some(_)) | (_, None) => false,
            (wanted, Some(room_type)) => wanted.as_str() == Some(room_type.as_str()),
        };
        filters.is_dm.is_none_or(|is_dm| self.direct.contains(id) == is_dm)
            && filters.is_encrypted.is_none_or(|wanted| self.encrypted.contains(id) == wanted)
            && filters.is_invite.is_none_or(|wanted| (room.membership == "invite") == wanted)
            && (filters.room_types.is_empty() || filters.room_types.iter().any(type_matches))
            && !filters.not_room_types.iter().any(type_matches)
    }
}

/// Whether any list filters on what only the rooms' state tells.
pub fn needs_state(lists: &BTreeMap<String, List>) -> bool {
    lists.values().filter_map(|list| list.filters.as_ref()).any(|filters| {
        filters.is_encrypted.is_some() || !filters.room_types.is_empty() || !filters.not_room_types.is_empty()
    })
}

/// One list's answer: how many rooms pass its filters, and those in its ranges (by index).
pub struct ListView<'a> {
    pub count: u64,
    pub in_range: Vec<&'a MemberRoom>,
}

pub fn view<'a>(list: &List, rooms: &'a [MemberRoom], facts: &FilterFacts) -> ListView<'a> {
    let passing: Vec<&MemberRoom> = match &list.filters {
        Some(filters) => rooms.iter().filter(|room| facts.allows(filters, room)).collect(),
        None => rooms.iter().collect(),
    };
    let mut shown = vec![false; passing.len()];
    for (start, end) in &list.ranges {
        let start = usize::try_from(u64::from(*start)).unwrap_or(usize::MAX);
        let end = usize::try_from(u64::from(*end)).unwrap_or(usize::MAX);
        for flag in shown.iter_mut().take(end.saturating_add(1)).skip(start) {
            *flag = true;
        }
    }
    let in_range = passing.iter().zip(shown).filter(|(_, shown)| *shown).map(|(room, _)| *room).collect();
    ListView { count: passing.len() as u64, in_range }
}
