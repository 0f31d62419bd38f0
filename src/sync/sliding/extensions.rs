//! Sliding sync's extensions: to-device messages, end-to-end encryption (device lists, key
//! counts), account data, receipts and typing — the last three for the rooms of the lists and
//! subscriptions they name (all of them when they name none).

use crate::db::sync::MembershipRow;
use crate::error::Result;
use crate::store::Store;
use crate::sync::news::{News, Wanted};
use crate::sync::response::SyncEvent;
use crate::sync::types::SyncWindow;
use ruma::api::client::sync::sync_events::v5::request::{self, ExtensionRoomConfig};
use ruma::api::client::sync::sync_events::v5::response;
use ruma::{DeviceId, OwnedRoomId, UserId};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Which rooms each list and the subscriptions showed in this answer.
pub(super) struct ShownRooms<'a> {
    pub by_list: &'a BTreeMap<String, Vec<String>>,
    pub subscribed: &'a [String],
    /// Rooms the connection had not sent before this answer: their receipts come whole.
    pub new_to_connection: &'a BTreeSet<String>,
}

impl ShownRooms<'_> {
    /// The rooms an extension's `lists` and `rooms` name; unknown list names name nothing.
    fn named(&self, lists: Option<&[String]>, rooms: Option<&[ExtensionRoomConfig]>) -> BTreeSet<String> {
        let mut named = BTreeSet::new();
        match lists {
            Some(lists) => {
                for name in lists {
                    named.extend(self.by_list.get(name).into_iter().flatten().cloned());
                }
            }
            None => named.extend(self.by_list.values().flatten().cloned()),
        }
        match rooms {
            Some(rooms) => {
                for room in rooms {
                    match room {
                        ExtensionRoomConfig::Room(room_id) if self.subscribed.contains(&room_id.to_string()) => {
                            named.insert(room_id.to_string());
                        }
                        ExtensionRoomConfig::Room(_) => {}
                        _ => named.extend(self.subscribed.iter().cloned()),
                    }
                }
            }
            None => named.extend(self.subscribed.iter().cloned()),
        }
        named
    }
}

/// Who asks, and the window the answer covers.
pub(super) struct ExtensionContext<'a> {
    pub pool: &'a Store,
    pub user: &'a UserId,
    pub device: &'a DeviceId,
    pub memberships: &'a [MembershipRow],
    pub window: SyncWindow,
}

fn enabled(flag: Option<bool>) -> bool {
    flag == Some(true)
}

/// The extensions' answers, and whether any holds news (key counts alone are not news).
pub(super) async fn build(
    context: &ExtensionContext<'_>,
    asked: &request::Extensions,
    shown: &ShownRooms<'_>,
) -> Result<(response::Extensions, bool)> {
    let ExtensionContext { pool, user, device, window, .. } = *context;
    let mut answer = response::Extensions::default();
    let mut news = false;
    if enabled(asked.to_device.enabled) {
        let to_device = to_device(pool, user, device, asked.to_device.since.as_deref(), window.upto).await?;
        news |= !to_device.events.is_empty();
        answer.to_device = Some(to_device);
    }
    if enabled(asked.e2ee.enabled) {
        let mut e2ee = json!(crate::sync::device_lists::key_counts(pool, user, device).await?);
        if window.since.is_some() {
            let lists = crate::sync::device_lists::section(pool, user, window).await?;
            if let Some(lists) = lists.device_lists {
                e2ee["device_lists"] = json!(lists);
                news = true;
            }
        }
        answer.e2ee = serde_json::from_value(e2ee).map_err(|e| crate::Error::internal(format!("e2ee: {e}")))?;
    }
    if enabled(asked.account_data.enabled) {
        let account_data = &asked.account_data;
        let rooms = shown.named(account_data.lists.as_deref(), account_data.rooms.as_deref());
        let (global, by_room) = crate::sync::build::account_data_events(pool, user, window.since, window.upto).await?;
        answer.account_data.global = global.into_iter().map(SyncEvent::into_raw).collect();
        for (room_id, events) in by_room.into_iter().filter(|(room_id, _)| rooms.contains(room_id)) {
            let Ok(room_id) = OwnedRoomId::try_from(room_id) else { continue };
            answer.account_data.rooms.insert(room_id, events.into_iter().map(SyncEvent::into_raw).collect());
        }
        news |= !answer.account_data.is_empty();
    }
    let receipts = enabled(asked.receipts.enabled);
    let typing = enabled(asked.typing.enabled);
    if receipts || typing {
        let mut rooms = BTreeSet::new();
        if receipts {
            rooms.extend(shown.named(asked.receipts.lists.as_deref(), asked.receipts.rooms.as_deref()));
        }
        if typing {
            rooms.extend(shown.named(asked.typing.lists.as_deref(), asked.typing.rooms.as_deref()));
        }
        let (fresh, live): (Vec<String>, Vec<String>) =
            rooms.into_iter().partition(|room| window.since.is_none() || shown.new_to_connection.contains(room));
        let mut events = ephemeral(context, &live, window).await?;
        // Rooms new to the connection get every current receipt, as an initial sync does.
        events.extend(ephemeral(context, &fresh, SyncWindow { since: None, upto: window.upto }).await?);
        let receipt_rooms = shown.named(asked.receipts.lists.as_deref(), asked.receipts.rooms.as_deref());
        let typing_rooms = shown.named(asked.typing.lists.as_deref(), asked.typing.rooms.as_deref());
        for (room_id, room_events) in events {
            let Ok(id) = OwnedRoomId::try_from(room_id.as_str()) else { continue };
            for event in room_events {
                match event.kind.as_str() {
                    "m.receipt" if receipts && receipt_rooms.contains(&room_id) => {
                        answer.receipts.rooms.insert(id.clone(), event.into_raw());
                    }
                    "m.typing" if typing && typing_rooms.contains(&room_id) => {
                        answer.typing.rooms.insert(id.clone(), event.into_raw());
                    }
                    _ => {}
                }
            }
        }
        news |= !answer.receipts.is_empty() || !answer.typing.is_empty();
    }
    Ok((answer, news))
}

/// Typing and receipts of the joined ones of `rooms` in the window.
async fn ephemeral(
    context: &ExtensionContext<'_>,
    rooms: &[String],
    window: SyncWindow,
) -> Result<HashMap<String, Vec<SyncEvent>>> {
    if rooms.is_empty() {
        return Ok(HashMap::new());
    }
    let ExtensionContext { pool, user, device, memberships, .. } = *context;
    let news = News::of(pool, user, Some(device), memberships, window, Wanted::ALL).await?;
    crate::sync::ephemeral::events(pool, user, rooms, window, &news).await
}

/// The device's queued to-device messages. The extension keeps its own token: a `since` the
/// client sends back proves it has every message up to there, which are then deleted, as
/// `/sync` deletes on its `since`.
async fn to_device(
    pool: &Store,
    user: &UserId,
    device: &DeviceId,
    since: Option<&str>,
    upto: i64,
) -> Result<response::ToDevice> {
    let since = since.and_then(|since| since.parse::<i64>().ok()).filter(|since| *since <= upto);
    let window = SyncWindow { since, upto };
    let section = crate::sync::to_device::section(pool, user, Some(device), window).await?;
    let mut answer = response::ToDevice::default();
    answer.next_batch = upto.to_string();
    if let Some(section) = section.to_device {
        answer.events = section.events.into_iter().map(SyncEvent::into_raw).collect();
    }
    Ok(answer)
}
