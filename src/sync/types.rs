//! The types every part of `/sync` shares: the window of the stream a sync covers, the
//! options a filter resolves to, and a room's entry as the sections fill it (the response's
//! types are `response`). They sit below the sections
//! (`build`, `room`, `unread`, `presence`, …) so each section depends on them, not on another
//! section.

use crate::rooms::filter::EventFilter;
use crate::sync::response::SyncRoom;

/// Deliver every change with `since < position <= upto`; `since: None` is an initial sync.
#[derive(Clone, Copy, Debug)]
pub struct SyncWindow {
    pub since: Option<i64>,
    pub upto: i64,
}

#[derive(Clone)]
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

/// One room's entry of the body.
pub(crate) struct RoomEntry {
    pub room: SyncRoom,
    /// Nothing in it: no timeline events, no state, no account data.
    pub is_quiet: bool,
    /// Whether the window changed what the room summary counts (members, name, alias), when
    /// the timeline's reading saw the whole window; `None` when it did not.
    pub summary_changed: Option<bool>,
}
