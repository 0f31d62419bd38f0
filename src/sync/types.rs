//! The types every part of `/sync` shares: the window of the stream a sync covers, the
//! options a filter resolves to, and the body the sections fill. They sit below the sections
//! (`build`, `room`, `unread`, `presence`, …) so each section depends on them, not on another
//! section.

use crate::rooms::filter::EventFilter;
use serde_json::{Map, Value};

/// Deliver every change with `since < position <= upto`; `since: None` is an initial sync.
#[derive(Clone, Copy, Debug)]
pub struct SyncWindow {
    pub since: Option<i64>,
    pub upto: i64,
}

pub struct SyncOptions {
    pub full_state: bool,
    /// Room timeline filter and limit (default limit 10 when the filter gives none).
    pub timeline: EventFilter,
    pub timeline_limit: usize,
    /// Per-thread unread counts (the timeline filter's `unread_thread_notifications`).
    pub unread_thread_notifications: bool,
    /// The room filter's `include_leave`: an initial (or full-state) sync lists the rooms the
    /// user left or was banned from too (an incremental one lists those left in its window
    /// anyway).
    pub include_leave: bool,
    /// The requesting device: lazy loading leaves out the member events it already has.
    pub device: Option<ruma::OwnedDeviceId>,
    // The room filter's `rooms` / `not_rooms` apply to which rooms appear at all: the builder
    // asks `timeline.allows_room`, so the caller merges them into `timeline`. Its
    // `lazy_load_members` (from the state filter) trims `state` to the timeline's senders.
}

/// The timeline limit when the filter gives none.
pub const DEFAULT_TIMELINE_LIMIT: usize = 10;

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            full_state: false,
            timeline: EventFilter::default(),
            timeline_limit: DEFAULT_TIMELINE_LIMIT,
            unread_thread_notifications: false,
            include_leave: false,
            device: None,
        }
    }
}

/// The response body without `next_batch` (the lead adds it): a spec-shaped JSON object
/// {"rooms": {"join": {...}, "invite": {...}, "leave": {...}}, "account_data": {"events": [...]}}
/// with empty sections omitted, plus whether anything at all is in it.
pub struct SyncBody {
    pub json: Value,
    pub is_empty: bool,
}

impl SyncBody {
    /// A body with no sections yet.
    pub fn empty() -> SyncBody {
        SyncBody { json: Value::Object(Map::new()), is_empty: true }
    }

    /// Adds another body's top-level sections (which are disjoint from this one's).
    pub fn merge(&mut self, other: SyncBody) {
        if let (Value::Object(into), Value::Object(from)) = (&mut self.json, other.json) {
            into.extend(from);
        }
        self.is_empty &= other.is_empty;
    }
}

/// One room's entry of the body.
pub(crate) struct RoomEntry {
    pub json: Value,
    /// Nothing in it: no timeline events, no state, no account data.
    pub is_quiet: bool,
    /// Whether the window changed what the room summary counts (members, name, alias), when
    /// the timeline's reading saw the whole window; `None` when it did not.
    pub summary_changed: Option<bool>,
}
