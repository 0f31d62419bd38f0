//! `rooms.join.{id}.ephemeral`: typing notifications and read receipts of the window.
//!
//! Typing is a set per room: whenever it changed in the window the room gets the whole set
//! as of `upto` (possibly empty, which is how a client learns everyone stopped). Receipts are
//! sent as changed in the window — every current one on an initial sync — with private
//! receipts only to their owner. Neither shows users the syncing user ignores (blocking holds
//! for typing and receipts, issue #21).

use crate::db;
use crate::error::Result;
use crate::store::Store;
use crate::sync::news::News;
use crate::sync::response::{Events, SyncEvent};
use crate::sync::types::RoomEntry;
use crate::sync::types::SyncWindow;
use ruma::UserId;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};

/// The ephemeral events of each of `room_ids` (the user's joined rooms) with something in
/// the window `(since, upto]`; rooms without any are absent.
pub(super) async fn events(
    pool: &Store,
    user: &UserId,
    room_ids: &[String],
    window: SyncWindow,
    news: &News,
) -> Result<HashMap<String, Vec<SyncEvent>>> {
    let SyncWindow { since, upto } = window;
    let mut by_room: HashMap<String, Vec<SyncEvent>> = HashMap::new();
    if room_ids.is_empty() {
        return Ok(by_room);
    }
    // The news may name rooms the user is not joined to at `upto`: keep to `room_ids`.
    let among_joined =
        |rooms: &[String]| -> Vec<String> { rooms.iter().filter(|room| room_ids.contains(room)).cloned().collect() };

    let typing_rooms = match news.rooms_with_typing() {
        Some(rooms) => among_joined(rooms),
        None => room_ids.to_vec(),
    };
    let mut typing: HashMap<String, Vec<String>> = match since {
        // An incremental sync sends the set of every room where it changed, even when empty.
        Some(_) => typing_rooms.iter().map(|room_id| (room_id.clone(), Vec::new())).collect(),
        // An initial sync has nothing to say about rooms where nobody types.
        None => HashMap::new(),
    };
    let receipt_rooms = match news.rooms_with_receipts() {
        Some(rooms) => among_joined(rooms),
        None => room_ids.to_vec(),
    };
    // Typing and receipts are read side by side.
    let typing_read = async {
        match typing_rooms.is_empty() {
            true => Ok(Vec::new()),
            false => db::ephemeral::typing_users(pool, &typing_rooms, upto).await,
        }
    };
    let receipts_read = async {
        match receipt_rooms.is_empty() {
            true => Ok(Vec::new()),
            false => db::ephemeral::receipts_between(pool, &receipt_rooms, user.as_str(), since, upto).await,
        }
    };
    let (typing_rows, receipt_rows) = tokio::try_join!(typing_read, receipts_read)?;
    let mut ignored = Ignored::new(pool, user, news);
    for (room_id, user_id) in typing_rows {
        if !ignored.contains(&user_id).await? {
            typing.entry(room_id).or_default().push(user_id);
        }
    }
    for (room_id, users) in typing {
        let event = SyncEvent::new(&json!({ "type": "m.typing", "content": { "user_ids": users } }))?;
        by_room.entry(room_id).or_default().push(event);
    }

    let mut receipts: HashMap<String, Map<String, Value>> = HashMap::new();
    for row in receipt_rows {
        if ignored.contains(&row.user_id).await? {
            continue;
        }
        let mut receipt = json!({ "ts": row.ts });
        if !row.thread_id.is_empty() {
            receipt["thread_id"] = json!(row.thread_id);
        }
        // {eventId: {receiptType: {userId: receipt}}}
        let content = receipts.entry(row.room_id).or_default();
        let by_type = content.entry(row.event_id).or_insert_with(|| json!({}));
        let by_user = by_type.as_object_mut().map(|types| types.entry(row.receipt_type).or_insert_with(|| json!({})));
        if let Some(Value::Object(users)) = by_user {
            users.insert(row.user_id, receipt);
        }
    }
    for (room_id, content) in receipts {
        let event = SyncEvent::new(&json!({ "type": "m.receipt", "content": content }))?;
        by_room.entry(room_id).or_default().push(event);
    }
    Ok(by_room)
}

/// Adds the room's ephemeral events to its entry; a room with any is not quiet, so an
/// incremental sync (and a waiting long-poll) answers with it.
pub(super) fn attach(entry: Option<RoomEntry>, events: Vec<SyncEvent>) -> Option<RoomEntry> {
    let mut entry = entry?;
    if !events.is_empty() {
        entry.room.ephemeral = Some(Events { events });
        entry.is_quiet = false;
    }
    Some(entry)
}

/// The users the syncing user ignores, read once and only if someone typed or read.
pub(super) struct Ignored<'a> {
    pool: &'a Store,
    user: &'a UserId,
    users: Option<HashSet<String>>,
}

impl<'a> Ignored<'a> {
    pub(super) fn new(pool: &'a Store, user: &'a UserId, news: &News) -> Ignored<'a> {
        Ignored { pool, user, users: news.ignored_users() }
    }

    pub(super) async fn contains(&mut self, other: &str) -> Result<bool> {
        let users = match &mut self.users {
            Some(users) => users,
            unread => unread.insert(crate::users::ignore::ignored_users(self.pool, self.user).await?),
        };
        Ok(users.contains(other))
    }
}
