//! The sync filter's section filters (`account_data`, `presence`, and per room `state`,
//! `ephemeral`, `account_data`): they only ever remove events. A room's are applied while its
//! entry is built, so that an incremental sync leaves out a room whose news they removed
//! entirely (and a long-poll does not answer for it); the others to the built response. The
//! timeline filter is applied while building the timeline (it decides `limited`).

use crate::rooms::filter::type_matches;
use crate::sync::news::Wanted;
use crate::sync::response::{Events, SyncBody, SyncEvent};
use crate::sync::types::RoomEntry;
use ruma::api::client::filter::{Filter, FilterDefinition, RoomEventFilter};
use ruma::{OwnedUserId, UInt};

/// One section's conditions, from either of ruma's two filter shapes. Most filters leave a
/// section alone or empty it (`not_types: ["*"]`): those two hold nothing, since a WebSocket
/// keeps its filter for its whole life (five sections of conditions were 560 B of every idle
/// connection, measured with heaptrack).
#[derive(Clone, Debug, Default)]
pub(crate) enum SectionFilter {
    /// No condition: every event passes.
    #[default]
    All,
    /// No event can pass.
    Nothing,
    Conditions(Box<Conditions>),
}

#[derive(Clone, Debug)]
pub(crate) struct Conditions {
    types: Option<Vec<String>>,
    not_types: Vec<String>,
    senders: Option<Vec<String>>,
    not_senders: Vec<String>,
    limit: Option<usize>,
}

impl SectionFilter {
    /// ruma's `Filter` and `RoomEventFilter` share these fields under the same names.
    fn new(
        types: &Option<Vec<String>>,
        not_types: &[String],
        senders: Option<&[OwnedUserId]>,
        not_senders: &[OwnedUserId],
        limit: Option<UInt>,
    ) -> SectionFilter {
        let limit = limit.map(|limit| usize::try_from(u64::from(limit)).unwrap_or(usize::MAX));
        let no_type_passes = types.as_ref().is_some_and(Vec::is_empty) || not_types.iter().any(|kind| kind == "*");
        if limit == Some(0) || no_type_passes {
            return SectionFilter::Nothing;
        }
        if types.is_none() && not_types.is_empty() && senders.is_none() && not_senders.is_empty() && limit.is_none() {
            return SectionFilter::All;
        }
        SectionFilter::Conditions(Box::new(Conditions {
            types: types.clone(),
            not_types: not_types.to_vec(),
            senders: senders.map(|s| s.iter().map(ToString::to_string).collect()),
            not_senders: not_senders.iter().map(ToString::to_string).collect(),
            limit,
        }))
    }

    fn from_filter(f: &Filter) -> SectionFilter {
        Self::new(&f.types, &f.not_types, f.senders.as_deref(), &f.not_senders, f.limit)
    }

    fn from_room_event_filter(f: &RoomEventFilter) -> SectionFilter {
        Self::new(&f.types, &f.not_types, f.senders.as_deref(), &f.not_senders, f.limit)
    }

    /// Whether an event of this type can pass (senders aside).
    fn may_allow_type(&self, kind: &str) -> bool {
        match self {
            SectionFilter::All => true,
            SectionFilter::Nothing => false,
            SectionFilter::Conditions(conditions) => conditions.may_allow_type(kind),
        }
    }

    /// Whether events of some type can pass: account data types are anyone's to name.
    fn may_allow_any_type(&self) -> bool {
        !matches!(self, SectionFilter::Nothing)
    }

    fn apply(&self, section: &mut Events) {
        match self {
            SectionFilter::All => {}
            SectionFilter::Nothing => section.events.clear(),
            SectionFilter::Conditions(conditions) => conditions.apply(section),
        }
    }
}

impl Conditions {
    /// Exclusions win over inclusions; events without a sender (account data) pass sender
    /// conditions only when none are given.
    fn allows(&self, event: &SyncEvent) -> bool {
        let kind = event.kind.as_str();
        if self.not_types.iter().any(|pattern| type_matches(pattern, kind)) {
            return false;
        }
        if self.types.as_ref().is_some_and(|types| !types.iter().any(|pattern| type_matches(pattern, kind))) {
            return false;
        }
        let sender = event.sender.as_deref();
        if sender.is_some_and(|sender| self.not_senders.iter().any(|s| s == sender)) {
            return false;
        }
        if let Some(senders) = &self.senders
            && !sender.is_some_and(|sender| senders.iter().any(|s| s == sender))
        {
            return false;
        }
        true
    }

    fn may_allow_type(&self, kind: &str) -> bool {
        !self.not_types.iter().any(|pattern| type_matches(pattern, kind))
            && self.types.as_ref().is_none_or(|types| types.iter().any(|pattern| type_matches(pattern, kind)))
    }

    fn apply(&self, section: &mut Events) {
        let events = &mut section.events;
        events.retain(|event| self.allows(event));
        if let Some(limit) = self.limit {
            events.truncate(limit);
        }
    }
}

/// The section filters of a sync filter definition.
#[derive(Clone, Debug, Default)]
pub struct SectionFilters {
    account_data: SectionFilter,
    presence: SectionFilter,
    room_state: SectionFilter,
    room_ephemeral: SectionFilter,
    room_account_data: SectionFilter,
}

impl SectionFilters {
    pub fn from_definition(definition: &FilterDefinition) -> SectionFilters {
        SectionFilters {
            account_data: SectionFilter::from_filter(&definition.account_data),
            presence: SectionFilter::from_filter(&definition.presence),
            room_state: SectionFilter::from_room_event_filter(&definition.room.state),
            room_ephemeral: SectionFilter::from_room_event_filter(&definition.room.ephemeral),
            room_account_data: SectionFilter::from_room_event_filter(&definition.room.account_data),
        }
    }

    /// The sections that can hold anything after filtering.
    pub fn wanted(&self) -> Wanted {
        Wanted {
            account_data: self.account_data.may_allow_any_type(),
            room_account_data: self.room_account_data.may_allow_any_type(),
            presence: self.presence.may_allow_type("m.presence"),
            typing: self.room_ephemeral.may_allow_type("m.typing"),
            receipts: self.room_ephemeral.may_allow_type("m.receipt"),
        }
    }

    /// The top-level sections of a built response (the rooms' were filtered as they were built).
    pub fn apply(&self, body: &mut SyncBody) {
        if let Some(section) = &mut body.account_data {
            self.account_data.apply(section);
        }
        if let Some(section) = &mut body.presence {
            self.presence.apply(section);
        }
    }

    /// Global account data events through their filter.
    pub(crate) fn filter_account_data(&self, events: Vec<SyncEvent>) -> Vec<SyncEvent> {
        let mut section = Events { events };
        self.account_data.apply(&mut section);
        section.events
    }

    /// A room entry's state, ephemeral events and account data through their filters; the
    /// entry is quiet when nothing is left in it (and no timeline event was there).
    pub(crate) fn apply_to_room(&self, entry: &mut RoomEntry) {
        let room = &mut entry.room;
        let mut left = 0;
        for (section, filter) in [
            (Some(&mut room.state), &self.room_state),
            (room.ephemeral.as_mut(), &self.room_ephemeral),
            (room.account_data.as_mut(), &self.room_account_data),
        ] {
            if let Some(section) = section {
                filter.apply(section);
                left += section.events.len();
            }
        }
        entry.is_quiet = room.timeline.events.is_empty() && left == 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may fail loudly
    use super::*;
    use serde_json::json;

    fn section(events: &[(&str, &str)]) -> Events {
        let events = events.iter().map(|(kind, sender)| json!({"type": kind, "sender": sender, "content": {}}));
        Events { events: events.map(|event| SyncEvent::new(&event).unwrap()).collect() }
    }

    fn kinds(section: &Events) -> Vec<&str> {
        section.events.iter().map(|event| event.kind.as_str()).collect()
    }

    fn filter(definition: serde_json::Value) -> SectionFilters {
        SectionFilters::from_definition(&serde_json::from_value(definition).unwrap())
    }

    #[test]
    fn a_section_left_alone_or_emptied_holds_no_conditions() {
        let filters = filter(json!({"presence": {"not_types": ["*"]}, "account_data": {"types": []}}));
        assert!(matches!(filters.presence, SectionFilter::Nothing));
        assert!(matches!(filters.account_data, SectionFilter::Nothing));
        assert!(matches!(filters.room_state, SectionFilter::All));
        let wanted = filters.wanted();
        assert!(!wanted.presence && !wanted.account_data && wanted.typing && wanted.receipts);
        let limited = filter(json!({"room": {"ephemeral": {"limit": 0}}}));
        assert!(matches!(limited.room_ephemeral, SectionFilter::Nothing));
        assert!(!limited.wanted().typing);
    }

    #[test]
    fn conditions_keep_what_they_name_up_to_the_limit() {
        let filters = filter(json!({"room": {"state": {
            "types": ["m.room.*"], "not_types": ["m.room.topic"], "not_senders": ["@eve:x"], "limit": 2
        }}}));
        let mut state = section(&[
            ("m.room.name", "@a:x"),
            ("m.room.topic", "@a:x"),
            ("m.room.avatar", "@eve:x"),
            ("org.custom", "@a:x"),
            ("m.room.create", "@a:x"),
            ("m.room.member", "@a:x"),
        ]);
        filters.room_state.apply(&mut state);
        assert_eq!(kinds(&state), ["m.room.name", "m.room.create"]);
        let mut emptied = section(&[("m.presence", "@a:x")]);
        filter(json!({"presence": {"not_types": ["*"]}})).presence.apply(&mut emptied);
        assert!(emptied.events.is_empty());
    }
}
