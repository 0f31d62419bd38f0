//! Room event filters (spec: "Filtering"): which events a `/messages` page (and later
//! `/sync`) includes, and whether member state is lazy-loaded.

use crate::db::events::EventMatch;
use crate::rooms::pdu::Pdu;
use ruma::RoomId;
use ruma::api::client::filter::{LazyLoadOptions, RoomEventFilter, UrlFilter};

#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    types: Option<Vec<String>>,
    not_types: Vec<String>,
    senders: Option<Vec<String>>,
    not_senders: Vec<String>,
    rooms: Option<Vec<String>>,
    not_rooms: Vec<String>,
    contains_url: Option<bool>,
    pub lazy_load_members: bool,
    pub include_redundant_members: bool,
}

impl EventFilter {
    pub fn from_ruma(filter: &RoomEventFilter) -> EventFilter {
        let (lazy_load_members, include_redundant_members) = match filter.lazy_load_options {
            LazyLoadOptions::Enabled { include_redundant_members } => (true, include_redundant_members),
            _ => (false, false),
        };
        EventFilter {
            types: filter.types.clone(),
            not_types: filter.not_types.clone(),
            senders: filter.senders.as_ref().map(|senders| senders.iter().map(ToString::to_string).collect()),
            not_senders: filter.not_senders.iter().map(ToString::to_string).collect(),
            rooms: filter.rooms.as_ref().map(|rooms| rooms.iter().map(ToString::to_string).collect()),
            not_rooms: filter.not_rooms.iter().map(ToString::to_string).collect(),
            contains_url: filter.url_filter.as_ref().map(|url| matches!(url, UrlFilter::EventsWithUrl)),
            lazy_load_members,
            include_redundant_members,
        }
    }

    /// Adds a room filter's `rooms` / `not_rooms` (which sit beside the timeline filter).
    pub fn with_rooms(mut self, rooms: Option<&[ruma::OwnedRoomId]>, not_rooms: &[ruma::OwnedRoomId]) -> EventFilter {
        if let Some(rooms) = rooms {
            let rooms: Vec<String> = rooms.iter().map(ToString::to_string).collect();
            self.rooms = Some(match self.rooms.take() {
                Some(existing) => existing.into_iter().filter(|room| rooms.contains(room)).collect(),
                None => rooms,
            });
        }
        self.not_rooms.extend(not_rooms.iter().map(ToString::to_string));
        self
    }

    /// The type and sender conditions for the database to check, when there are any (the
    /// URL condition stays with [`EventFilter::allows`], which must still be asked).
    pub fn type_and_sender_match(&self) -> Option<EventMatch> {
        let restricts = self.types.is_some()
            || !self.not_types.is_empty()
            || self.senders.is_some()
            || !self.not_senders.is_empty();
        restricts.then(|| EventMatch {
            types: self.types.clone(),
            not_types: self.not_types.clone(),
            senders: self.senders.clone(),
            not_senders: self.not_senders.clone(),
        })
    }

    /// Whether every event of a room the filter lets in passes [`EventFilter::allows`]: no
    /// type, sender or URL condition.
    pub fn keeps_every_event(&self) -> bool {
        self.types.is_none()
            && self.not_types.is_empty()
            && self.senders.is_none()
            && self.not_senders.is_empty()
            && self.contains_url.is_none()
    }

    /// Whether the room passes `rooms` / `not_rooms`.
    pub fn allows_room(&self, room_id: &RoomId) -> bool {
        let room = room_id.as_str();
        !self.not_rooms.iter().any(|r| r == room)
            && self.rooms.as_ref().is_none_or(|rooms| rooms.iter().any(|r| r == room))
    }

    /// Whether an event passes the type, sender and URL conditions. Exclusions win over
    /// inclusions, as the spec says.
    pub fn allows(&self, pdu: &Pdu) -> bool {
        let kind = pdu.kind.to_string();
        let sender = pdu.sender.as_str();
        if self.not_types.iter().any(|pattern| type_matches(pattern, &kind)) {
            return false;
        }
        if self.types.as_ref().is_some_and(|types| !types.iter().any(|pattern| type_matches(pattern, &kind))) {
            return false;
        }
        if self.not_senders.iter().any(|s| s == sender) {
            return false;
        }
        if self.senders.as_ref().is_some_and(|senders| !senders.iter().any(|s| s == sender)) {
            return false;
        }
        if let Some(wants_url) = self.contains_url {
            let has_url = pdu.content_value().get("url").is_some_and(|url| url.is_string());
            if has_url != wants_url {
                return false;
            }
        }
        true
    }
}

/// Event type patterns may end in (or contain) `*`, matching any sequence of characters.
pub(crate) fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == kind,
        Some((prefix, rest)) => {
            let Some(remainder) = kind.strip_prefix(prefix) else { return false };
            if rest.is_empty() {
                return true;
            }
            (0..=remainder.len())
                .filter(|i| remainder.is_char_boundary(*i))
                .any(|i| type_matches(rest, &remainder[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::type_matches;

    #[test]
    fn wildcards_match_like_the_spec_says() {
        assert!(type_matches("m.room.message", "m.room.message"));
        assert!(type_matches("m.room.*", "m.room.message"));
        assert!(type_matches("*", "anything"));
        assert!(type_matches("m.*.message", "m.room.message"));
        assert!(!type_matches("m.room.*", "m.reaction"));
        assert!(!type_matches("m.room.message", "m.room.messages"));
    }
}
