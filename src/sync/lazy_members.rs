//! Lazy-loaded members (spec: "Lazy-loading room members"): of the room's member events, a
//! sync sends those of the timeline's senders and of the user, from the state at the
//! timeline's start even when unchanged — unless this device was sent that very event
//! already and has acknowledged it (it synced from a token after the response that carried
//! it), and did not ask for redundant members. A limited sync also sends every member event
//! of its gap (the caller keeps those), redundant or not, as the spec requires.
//!
//! What each device was sent is kept in this process only, like Synapse's cache: a device
//! whose syncs reach another process, or whose record was evicted, is sent redundant members,
//! which the spec allows; it is never denied one it lacks.

use crate::db::events::StoredEvent;
use crate::db::state::StateEntry;
use crate::error::Result;
use crate::rooms::pdu::Pdu;
use crate::store::Store;
use quick_cache::sync::Cache;
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, RoomId, UserId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Devices whose record is kept; beyond, the least recently used are forgotten.
const DEVICES: usize = 20_000;
/// Member events remembered per device; beyond, the device's record starts afresh.
const PER_DEVICE: usize = 50_000;

/// Room → member → (member event id, position of the sync response that carried it). Nested,
/// so that a look-up borrows the room and member ids instead of building a key of copies (it
/// runs for every woken member of a fan-out).
#[derive(Default)]
struct SentMembers {
    rooms: HashMap<String, HashMap<String, (String, i64)>>,
    /// Member events recorded, over all rooms.
    count: usize,
}

impl SentMembers {
    fn has(&self, room_id: &str, member: &str, event_id: &str, acknowledged: i64) -> bool {
        let sent = self.rooms.get(room_id).and_then(|members| members.get(member));
        sent.is_some_and(|(sent_id, at)| sent_id == event_id && *at <= acknowledged)
    }

    fn record(&mut self, room_id: &str, member: &str, event_id: &str, upto: i64) {
        if self.count >= PER_DEVICE {
            *self = SentMembers::default();
        }
        let members = match self.rooms.get_mut(room_id) {
            Some(members) => members,
            None => self.rooms.entry(room_id.to_owned()).or_default(),
        };
        match members.get_mut(member) {
            // The first response that carried the event is the one a later token acknowledges.
            Some(entry) if entry.0 == event_id => {}
            Some(entry) => *entry = (event_id.to_owned(), upto),
            None => {
                members.insert(member.to_owned(), (event_id.to_owned(), upto));
                self.count += 1;
            }
        }
    }
}

/// A device of a user.
type DeviceKey = (OwnedUserId, OwnedDeviceId);

/// What each device was sent, kept in the store (see [`Store::cache`]).
struct SentToDevices(Cache<DeviceKey, Arc<Mutex<SentMembers>>>);

impl Default for SentToDevices {
    fn default() -> SentToDevices {
        SentToDevices(Cache::new(DEVICES))
    }
}

/// The device a sync answers, and what lazy loading it asked for.
#[derive(Clone, Copy)]
pub(super) struct LazyDevice<'a> {
    pub pool: &'a Store,
    pub user: &'a UserId,
    pub device: &'a DeviceId,
    pub include_redundant: bool,
}

impl LazyDevice<'_> {
    fn sent(&self) -> Arc<Mutex<SentMembers>> {
        let devices = self.pool.cache::<SentToDevices>();
        let key = (self.user.to_owned(), self.device.to_owned());
        if let Some(sent) = devices.0.get(&key) {
            return sent;
        }
        // Two first syncs of a device at once may each start a record; one is lost, which
        // costs only redundant members.
        let sent = Arc::<Mutex<SentMembers>>::default();
        devices.0.insert(key, sent.clone());
        sent
    }

    /// An initial sync starts a new sequence: the client may have forgotten everything.
    pub(super) fn forget_all(&self) {
        let key = (self.user.to_owned(), self.device.to_owned());
        self.pool.cache::<SentToDevices>().0.remove(&key);
    }

    /// Drops from `entries` (member events in the room) those the device has: sent in a
    /// response at or before `acknowledged`, the token the device syncs from now.
    fn drop_sent(&self, room_id: &RoomId, entries: &mut Vec<StateEntry>, acknowledged: i64) {
        let sent = self.sent();
        let sent = sent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.retain(|entry| !sent.has(room_id.as_str(), &entry.state_key, &entry.event_id, acknowledged));
    }

    /// Records the member events of a response that ends at `upto`.
    pub(super) fn record<'e>(&self, room_id: &RoomId, events: impl Iterator<Item = (&'e str, &'e str)>, upto: i64) {
        let sent = self.sent();
        let mut sent = sent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (member, event_id) in events {
            sent.record(room_id.as_str(), member, event_id, upto);
        }
    }
}

/// Whose member events lazy loading sends: the timeline's senders and the user.
pub(super) fn wanted_members(user: &UserId, timeline: &[(StoredEvent, Pdu)]) -> Vec<String> {
    let mut members: Vec<String> = timeline.iter().map(|(_, pdu)| pdu.sender.to_string()).collect();
    members.push(user.to_string());
    members.sort_unstable();
    members.dedup();
    members
}

/// What [`load`] works from.
pub(super) struct LazyLoad<'a> {
    pub room_id: &'a RoomId,
    pub user: &'a UserId,
    pub timeline: &'a [(StoredEvent, Pdu)],
    pub start_snapshot: Option<i64>,
    /// Member events that stay whoever they are of (a limited sync's gap).
    pub keep: &'a HashSet<i64>,
    /// The device and the token it syncs from, where redundant members may be left out.
    pub device: Option<(LazyDevice<'a>, i64)>,
}

/// Cuts `state`'s member events down to the wanted ones (and those to keep), adding the wanted
/// ones it lacks from the state at the timeline's start, except those the device has.
pub(super) async fn load(pool: &Store, lazy: LazyLoad<'_>, state: &mut Vec<StateEntry>) -> Result<()> {
    let wanted: HashSet<String> = wanted_members(lazy.user, lazy.timeline).into_iter().collect();
    state.retain(|entry| {
        entry.event_type != "m.room.member" || wanted.contains(&entry.state_key) || lazy.keep.contains(&entry.event_nid)
    });
    let present: HashSet<String> =
        state.iter().filter(|entry| entry.event_type == "m.room.member").map(|entry| entry.state_key.clone()).collect();
    let missing: Vec<String> = wanted.into_iter().filter(|member| !present.contains(member)).collect();
    if let Some(snapshot) = lazy.start_snapshot
        && !missing.is_empty()
    {
        let mut unchanged = crate::rooms::facts::member_events_at(pool, snapshot, &missing).await?;
        if let Some((device, acknowledged)) = lazy.device.filter(|(device, _)| !device.include_redundant) {
            device.drop_sent(lazy.room_id, &mut unchanged, acknowledged);
        }
        state.extend(unchanged);
    }
    Ok(())
}
