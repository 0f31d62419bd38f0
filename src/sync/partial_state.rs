//! Rooms joined with a partial state (`federation::partial_state`) in `/sync`. Until the
//! resync puts the full state in place their member list is incomplete, so a sync that does
//! not lazy-load members (and so promises the whole list) leaves them out, as Synapse does;
//! the first such sync whose window holds the completion shows the room whole, as newly
//! joined, since the client never saw it. A lazy-loading sync shows them throughout: it needs
//! only the members of the timeline's senders, which the partial state holds.

use crate::db::sync::MembershipRow;
use crate::sync::types::{SyncOptions, SyncWindow};
use ruma::events::room::member::MembershipState;
use std::collections::HashSet;

/// Which joined rooms one window leaves out, and which it shows whole for their new state.
#[derive(Default)]
pub(super) struct PartialRooms {
    left_out: HashSet<String>,
    completed: HashSet<String>,
}

impl PartialRooms {
    /// Sorted from the user's memberships (as `room_memberships` holds them now).
    pub(super) fn of(memberships: &[MembershipRow], window: SyncWindow, options: &SyncOptions) -> PartialRooms {
        let mut rooms = PartialRooms::default();
        if options.timeline.lazy_load_members {
            return rooms;
        }
        for row in memberships.iter().filter(|row| row.membership == MembershipState::Join) {
            // Completed after the window: still partial at its end.
            let partial_at_end = row.partial_state || row.full_state_at.is_some_and(|at| at > window.upto);
            if partial_at_end {
                rooms.left_out.insert(row.room_id.clone());
            } else if let (Some(since), Some(at)) = (window.since, row.full_state_at)
                && at > since
            {
                rooms.completed.insert(row.room_id.clone());
            }
        }
        rooms
    }

    pub(super) fn leaves_out(&self, room_id: &str) -> bool {
        self.left_out.contains(room_id)
    }

    /// Whether the room's full state came within the window (the room was left out before).
    pub(super) fn completed(&self, room_id: &str) -> bool {
        self.completed.contains(room_id)
    }
}
