//! The MUCs one bound resource has joined. In XMPP, room presence belongs to the session: a
//! client joins its rooms again after each connect, and the rooms it is in decide what group
//! messages it receives. The Matrix membership behind it outlives the session (a dropped
//! connection leaves no Matrix room); only an explicit XMPP leave leaves the Matrix room.

use ruma::OwnedRoomId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use xmpp_parsers::jid::BareJid;

/// A room as this resource is in it.
#[derive(Clone, Debug)]
pub(super) struct JoinedRoom {
    pub room_id: OwnedRoomId,
    /// The address the client joined by (an alias or the room id).
    pub jid: BareJid,
    pub nick: String,
    /// The stream position the join's own stanzas (occupants, history, subject) reach; live
    /// delivery continues after it.
    pub since: i64,
    /// The nick each occupant was last announced with, by Matrix user id: what their
    /// departure or renaming must name.
    pub nicks: BTreeMap<String, String>,
}

/// Shared by the stanza handler (joins and leaves) and the delivery task (what to deliver).
#[derive(Clone, Default)]
pub(super) struct Occupancy(Arc<Mutex<BTreeMap<OwnedRoomId, JoinedRoom>>>);

impl Occupancy {
    fn rooms(&self) -> std::sync::MutexGuard<'_, BTreeMap<OwnedRoomId, JoinedRoom>> {
        // Nothing panics while holding the lock, and the map stays consistent either way.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn insert(&self, room: JoinedRoom) {
        self.rooms().insert(room.room_id.clone(), room);
    }

    pub(super) fn remove(&self, room_id: &OwnedRoomId) -> Option<JoinedRoom> {
        self.rooms().remove(room_id)
    }

    pub(super) fn by_jid(&self, jid: &BareJid) -> Option<JoinedRoom> {
        self.rooms().values().find(|room| room.jid == *jid).cloned()
    }

    /// Records the occupants' nicks as last announced.
    pub(super) fn set_nicks(&self, room_id: &OwnedRoomId, nicks: BTreeMap<String, String>) {
        if let Some(room) = self.rooms().get_mut(room_id) {
            room.nicks = nicks;
        }
    }

    pub(super) fn snapshot(&self) -> Vec<JoinedRoom> {
        self.rooms().values().cloned().collect()
    }
}
