//! What a sliding sync request may hold that ruma 0.17's `v5::Request` drops when it parses
//! the body, read here from the raw JSON instead: the list filters `spaces`, `tags` and
//! `not_tags` (MSC4186 has them; ruma's `ListFilters` stops at `not_room_types`), and
//! `unsubscribe_rooms` (MSC3575's, which some clients still send).

use crate::error::{Error, Result};
use ruma::OwnedRoomId;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Unparsed {
    #[serde(default)]
    lists: Option<BTreeMap<String, UnparsedList>>,
    /// Rooms the client no longer subscribes to.
    #[serde(default)]
    unsubscribe_rooms: Option<Vec<OwnedRoomId>>,
}

#[derive(Debug, Default, Deserialize)]
struct UnparsedList {
    #[serde(default)]
    filters: Option<MoreFilters>,
}

/// A list's filters beyond ruma's. `None` filters nothing; an empty list matches no room (as
/// Synapse reads them).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MoreFilters {
    /// Only rooms that one of these spaces (that the user is joined to) names as a child.
    #[serde(default)]
    pub spaces: Option<Vec<OwnedRoomId>>,
    /// Only rooms the user gave one of these tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// No room the user gave one of these tags (winning over `tags`).
    #[serde(default)]
    pub not_tags: Option<Vec<String>>,
}

impl MoreFilters {
    pub(crate) fn is_empty(&self) -> bool {
        self.spaces.is_none() && self.tags.is_none() && self.not_tags.is_none()
    }
}

impl Unparsed {
    /// Reads the fields from the request's JSON body (which ruma has already accepted).
    pub(crate) fn from_body(json: &[u8]) -> Result<Unparsed> {
        serde_json::from_slice(json).map_err(|e| Error::bad_json(format!("Invalid sliding sync request: {e}")))
    }

    /// The filters beyond ruma's of the list `name`, when it has any.
    pub(crate) fn filters(&self, name: &str) -> Option<&MoreFilters> {
        self.lists.as_ref()?.get(name)?.filters.as_ref().filter(|filters| !filters.is_empty())
    }

    /// Every list's filters beyond ruma's.
    pub(crate) fn all_filters(&self) -> impl Iterator<Item = &MoreFilters> {
        self.lists.iter().flat_map(|lists| lists.values()).filter_map(|list| list.filters.as_ref())
    }

    pub(crate) fn unsubscribes(&self, room_id: &str) -> bool {
        self.unsubscribe_rooms.as_ref().is_some_and(|rooms| rooms.iter().any(|room| room.as_str() == room_id))
    }
}
