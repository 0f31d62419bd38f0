//! One room of a sliding sync answer: its timeline since the connection last sent it (or its
//! latest events, when it is new to the connection), the state the client asked for, and
//! what the room list shows — name, avatar, heroes, counts, unread counts, recency.

use crate::db;
use crate::db::unread::ReadPositions;
use crate::error::{Error, Result};
use crate::rooms::served;
use crate::store::Store;
use crate::sync::response::SyncEvent;
use crate::sync::room::{RoomWindow, StateMode, room_entry};
use crate::sync::sliding::connection::SentRoom;
use crate::sync::sliding::lists::MemberRoom;
use crate::sync::sliding::required_state::RequiredState;
use crate::sync::types::SyncOptions;
use crate::sync::unread::Reader;
use ruma::api::client::sync::sync_events::v5::response::{Hero, Room};
use ruma::serde::Raw;
use ruma::{DeviceId, OwnedMxcUri, OwnedUserId, RoomId, UInt, UserId};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// The spec suggests five heroes.
const MAX_HEROES: i64 = 5;
/// The most timeline events a room may ask for at once (as `/sync`'s filters).
pub(super) const MAX_TIMELINE_LIMIT: usize = 1000;

/// What every room of one answer is built with.
pub(super) struct RoomContext<'a> {
    pub pool: &'a Store,
    pub user: &'a UserId,
    pub device: &'a DeviceId,
    /// The connection's previous position (`None`: its first answer).
    pub since: Option<i64>,
    pub upto: i64,
    pub ignored: &'a HashSet<String>,
    pub read_positions: &'a HashMap<String, ReadPositions>,
    pub direct: &'a HashSet<String>,
}

/// What the lists and subscriptions showing a room ask of it, merged.
#[derive(Clone, Debug, Default)]
pub(super) struct RoomConfig {
    pub timeline_limit: usize,
    pub required_state: Vec<(String, String)>,
}

impl RoomConfig {
    /// Adds another list's or subscription's wishes: the longer timeline, every state pair.
    pub(super) fn merge(&mut self, timeline_limit: UInt, required_state: &[(ruma::events::StateEventType, String)]) {
        let limit = usize::try_from(u64::from(timeline_limit)).unwrap_or(usize::MAX).min(MAX_TIMELINE_LIMIT);
        self.timeline_limit = self.timeline_limit.max(limit);
        for (event_type, state_key) in required_state {
            let pair = (event_type.to_string(), state_key.clone());
            if !self.required_state.contains(&pair) {
                self.required_state.push(pair);
            }
        }
        self.required_state.sort();
    }
}

/// How far the answer sends a room: to `upto`, or for a room left, to the leave.
pub(super) fn room_upto(context: &RoomContext<'_>, room: &MemberRoom) -> i64 {
    match room.is_joined() || room.is_pending() {
        true => context.upto,
        false => room.position.min(context.upto),
    }
}

/// The room's entry (the caller skips rooms with no news for the connection), or `None` for
/// a room this server has no events of, or an invite from an ignored user. With `expands`,
/// the timeline is the room's latest events whatever the client had, as for a new room.
pub(super) async fn build(
    context: &RoomContext<'_>,
    room: &MemberRoom,
    config: &RoomConfig,
    previous: Option<&SentRoom>,
    expands: bool,
) -> Result<Option<Room>> {
    let room_id = RoomId::parse(&room.room_id).map_err(|e| Error::internal(format!("stored room id: {e}")))?;
    let initial = previous.is_none_or(|previous| previous.membership != room.membership);
    let mut entry = Room::new();
    entry.bump_stamp = UInt::new(u64::try_from(room.bump_stamp).unwrap_or_default());
    entry.is_dm = context.direct.contains(&room.room_id).then_some(true);
    entry.initial = initial.then_some(true);
    if room.is_pending() {
        return pending(context, room, &room_id, entry, initial).await;
    }
    let pool = context.pool;
    let upto = room_upto(context, room);
    let after = previous.filter(|_| !initial && !expands).map_or(0, |previous| previous.upto.min(upto));
    let options = SyncOptions {
        timeline_limit: config.timeline_limit,
        device: Some(context.device.to_owned()),
        ..SyncOptions::default()
    };
    let joined = room.is_joined();
    let window = RoomWindow { after, upto, joined, state: StateMode::Nothing, first_page: None, start_state: None };
    let Some(timeline) = room_entry(pool, context.user, &room_id, window, &options, context.ignored, Vec::new())
        .await?
        .map(|entry| entry.room.timeline)
    else {
        // A membership in a room whose events this server does not have.
        return Ok(None);
    };
    let mut events = timeline.events;
    crate::sync::transaction_ids::annotate(pool, context.user, context.device, &mut events).await?;
    let senders: HashSet<&str> = events.iter().filter_map(|event| event.sender.as_deref()).collect();

    let snapshot = db::rooms::state_at_position(pool, room_id.as_str(), upto).await?;
    let required = RequiredState::of(&config.required_state, context.user);
    // What the client had: the state asked for before, as of the room's previous answer.
    let before = match previous.filter(|_| !initial) {
        Some(previous) => db::rooms::state_at_position(pool, room_id.as_str(), previous.upto)
            .await?
            .map(|snapshot| (RequiredState::of(&previous.required_state, context.user), snapshot)),
        None => None,
    };
    let state = match snapshot {
        Some(snapshot) => {
            let entries = required.read_since(pool, snapshot, before.as_ref(), &senders).await?;
            let rules = crate::rooms::facts::rules(pool, &room_id).await?;
            served::apply_to_state(pool, &rules.redaction, &entries).await?
        }
        None => Vec::new(),
    };
    entry.required_state = state.iter().map(|served| raw(&served.client_event(&room_id))).collect::<Result<_>>()?;
    entry.limited = timeline.limited;
    entry.prev_batch = Some(timeline.prev_batch);
    // The first answer's events are all history to the client (Synapse says 0 as well).
    entry.num_live = Some(UInt::MIN);
    if let Some(since) = context.since {
        let live = db::sliding_sync::events_between(pool, room_id.as_str(), since, upto, events.len() as i64).await?;
        entry.num_live = UInt::new(u64::try_from(live).unwrap_or_default());
    }
    entry.timeline = events.into_iter().map(SyncEvent::into_raw).collect();
    if let Some(snapshot) = snapshot {
        describe(context, &room_id, snapshot, &mut entry).await?;
    }
    if room.is_joined() {
        let reader = Reader {
            user: context.user,
            positions: context.read_positions.get(&room.room_id).cloned(),
            ignored: context.ignored,
            threaded: false,
            window_rows: None,
        };
        let (notifications, highlights) = crate::sync::unread::totals(pool, reader, &room_id, upto).await?;
        entry.unread_notifications.notification_count = UInt::new(notifications);
        entry.unread_notifications.highlight_count = UInt::new(highlights);
    }
    Ok(Some(entry))
}

/// An invited or knocked room: its stripped state, once per membership.
async fn pending(
    context: &RoomContext<'_>,
    room: &MemberRoom,
    room_id: &RoomId,
    mut entry: Room,
    initial: bool,
) -> Result<Option<Room>> {
    if !initial {
        return Ok(None);
    }
    let member =
        db::sync::member_event_at(context.pool, room_id.as_str(), context.user.as_str(), room.position).await?;
    let Some(member) = member else { return Ok(None) };
    let Some(events) = crate::sync::build::stripped_state(context.pool, room_id, &member, context.ignored).await?
    else {
        // An invite from an ignored user is not shown.
        return Ok(None);
    };
    entry.name = events
        .iter()
        .find(|event| event["type"] == "m.room.name")
        .and_then(|event| event["content"]["name"].as_str())
        .map(str::to_owned);
    entry.invite_state = Some(events.iter().map(raw).collect::<Result<_>>()?);
    Ok(Some(entry))
}

/// The room's name, avatar, heroes and member counts, as a room list shows them.
async fn describe(context: &RoomContext<'_>, room_id: &RoomId, snapshot: i64, entry: &mut Room) -> Result<()> {
    let pool = context.pool;
    let facts = db::unread::summary_facts(pool, room_id.as_str(), context.user.as_str(), MAX_HEROES).await?;
    entry.joined_count = UInt::new(u64::try_from(facts.joined).unwrap_or_default());
    entry.invited_count = UInt::new(u64::try_from(facts.invited).unwrap_or_default());
    let mut keys = vec![("m.room.name".to_owned(), String::new()), ("m.room.avatar".to_owned(), String::new())];
    if !facts.named {
        keys.extend(facts.heroes.iter().map(|hero| ("m.room.member".to_owned(), hero.clone())));
    }
    let mut contents: HashMap<(String, String), Value> = HashMap::new();
    for state in db::state::snapshot_state_for_keys(pool, snapshot, &keys).await? {
        let event: Value = serde_json::from_str(&state.json).unwrap_or_default();
        contents.insert((state.event_type, state.state_key), event["content"].clone());
    }
    let content = |event_type: &str, state_key: &str| contents.get(&(event_type.to_owned(), state_key.to_owned()));
    entry.name = content("m.room.name", "")
        .and_then(|content| content["name"].as_str())
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    entry.avatar = match content("m.room.avatar", "").and_then(|content| content["url"].as_str()) {
        Some(url) if !url.is_empty() => ruma::JsOption::Some(OwnedMxcUri::from(url)),
        _ => ruma::JsOption::Undefined,
    };
    if !facts.named {
        let heroes = facts.heroes.iter().filter_map(|hero| {
            let mut shown = Hero::new(OwnedUserId::try_from(hero.as_str()).ok()?);
            let member = content("m.room.member", hero);
            shown.name = member.and_then(|content| content["displayname"].as_str()).map(str::to_owned);
            shown.avatar = member.and_then(|content| content["avatar_url"].as_str()).map(OwnedMxcUri::from);
            Some(shown)
        });
        entry.heroes = Some(heroes.collect());
    }
    Ok(())
}

/// A client-format event as ruma's raw JSON of the type the response field has.
pub(super) fn raw<T>(event: &Value) -> Result<Raw<T>> {
    let json = serde_json::value::to_raw_value(event).map_err(|e| Error::internal(format!("event JSON: {e}")))?;
    Ok(Raw::from_json(json))
}
