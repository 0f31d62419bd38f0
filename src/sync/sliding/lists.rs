//! The rooms a sliding sync can show and its lists over them: each list filters the user's
//! rooms, sorts them by recency (`bump_stamp`) and shows those in its `ranges`.

use crate::db;
use crate::db::sync::MembershipRow;
use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use crate::store::Store;
use crate::sync::sliding::filters::FilterFacts;
use crate::sync::sliding::unparsed::MoreFilters;
use ruma::UserId;
use ruma::api::client::sync::sync_events::v5::request::List;
use ruma::events::room::member::MembershipState;
use std::collections::{BTreeMap, HashMap};

/// A room the user has a membership in, as of the answer's stream position.
#[derive(Clone, Debug)]
pub(super) struct MemberRoom {
    pub room_id: String,
    pub membership: MembershipState,
    /// Position of the member event that set the membership.
    pub position: i64,
    /// Its latest bump event's position, or for a room not joined the membership's.
    pub bump_stamp: i64,
}

impl MemberRoom {
    pub(super) fn is_joined(&self) -> bool {
        self.membership == MembershipState::Join
    }

    /// Invited or knocking: the room is known only by its stripped state.
    pub(super) fn is_pending(&self) -> bool {
        matches!(self.membership, MembershipState::Invite | MembershipState::Knock)
    }
}

/// The user's rooms as of `upto` that lists may show: joined, invited and knocked ones, and
/// those left or banned from after `since` (so the client learns of the leave). Forgotten
/// rooms never appear.
pub(super) async fn member_rooms(
    pool: &Store,
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
            let membership = MembershipState::from(pdu.content_value()["membership"].as_str().unwrap_or_default());
            (membership, event.stream_position)
        };
        let shown = match membership {
            MembershipState::Join | MembershipState::Invite | MembershipState::Knock => true,
            MembershipState::Leave | MembershipState::Ban => since.is_some_and(|since| position > since),
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
pub(super) fn validate(lists: &BTreeMap<String, List>) -> Result<()> {
    for (name, list) in lists {
        if let Some((start, end)) = list.ranges.iter().find(|(start, end)| start > end) {
            return Err(Error::invalid_param(format!(
                "List {name:?} has a range that ends before it starts: [{start}, {end}]"
            )));
        }
    }
    Ok(())
}

/// One list's answer: how many rooms pass its filters, and those in its ranges (by index).
pub(super) struct ListView<'a> {
    pub count: u64,
    pub in_range: Vec<&'a MemberRoom>,
}

/// The list's view of the rooms, with `more` its filters ruma does not parse.
pub(super) fn view<'a>(
    list: &List,
    more: Option<&MoreFilters>,
    rooms: &'a [MemberRoom],
    facts: &FilterFacts,
) -> ListView<'a> {
    let passing: Vec<&MemberRoom> =
        rooms.iter().filter(|room| facts.allows(list.filters.as_ref(), more, room)).collect();
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
