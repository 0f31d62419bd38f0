//! `rooms.join.{id}.unread_notifications`: how many events after the user's read receipt
//! would notify them, and how many of those highlight, under the spec's default push rules
//! (spec: "Push Rules: Default Rules"). Hearth has no per-user push rules yet, so the default
//! rule set is the user's rule set; the counts are computed on demand from the room's events
//! (`db::unread`) rather than stored per event.

use crate::db;
use crate::db::unread::ReadPositions;
use crate::error::Result;
use crate::rooms::pdu::Pdu;
use crate::rooms::power::{POWER_KEYS, PowerLevels};
use crate::sync::types::RoomEntry;
use crate::sync::unread_cache::{self as cache, CacheKey};
use ruma::{RoomId, UserId};
use serde_json::{Map, Value, json};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashSet};

/// Counting is bounded: beyond this many unread events a client shows "lots" anyway, and a
/// sync must not scan a room's whole history.
const MAX_COUNTED: i64 = 1000;

/// Default power level needed for `@room` (`notifications.room`).
const DEFAULT_ROOM_NOTIFICATION_LEVEL: i64 = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    None,
    Notify,
    Highlight,
}

/// What the rules need to know about the room and the user.
struct Context {
    user_id: String,
    localpart: String,
    /// The user's display name in the room (`contains_display_name`).
    display_name: Option<String>,
    /// Joined members (`room_member_count == 2` of the one-to-one rules).
    member_count: i64,
    power: PowerLevels,
}

/// Notifying and highlighting events, for the main timeline or one thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Count {
    notifications: u64,
    highlights: u64,
}

impl Count {
    fn add(&mut self, action: Action) {
        match action {
            Action::None => {}
            Action::Notify => self.notifications += 1,
            Action::Highlight => {
                self.notifications += 1;
                self.highlights += 1;
            }
        }
    }

    fn plus(self, other: Count) -> Count {
        Count {
            notifications: self.notifications + other.notifications,
            highlights: self.highlights + other.highlights,
        }
    }

    fn json(self) -> Value {
        json!({ "notification_count": self.notifications, "highlight_count": self.highlights })
    }
}

/// Unread counts of a room: its main timeline, and each thread (by root event id).
#[derive(Clone, Debug, Default)]
pub(super) struct UnreadCounts {
    main: Count,
    threads: BTreeMap<String, Count>,
}

impl UnreadCounts {
    fn add(&mut self, other: &UnreadCounts) {
        self.main = self.main.plus(other.main);
        for (root, count) in &other.threads {
            let total = self.threads.entry(root.clone()).or_default();
            *total = total.plus(*count);
        }
    }

    fn total(&self) -> Count {
        self.threads.values().fold(self.main, |total, thread| total.plus(*thread))
    }
}

/// The position up to which the user has read a thread (`None`: the main timeline): their
/// unthreaded receipt covers every thread, a threaded one only its own thread (spec:
/// "Threaded read receipts"); with neither, what came before they joined.
fn read_up_to(positions: &ReadPositions, thread: Option<&str>) -> i64 {
    let own_thread = thread.unwrap_or("main");
    positions
        .receipts
        .iter()
        .filter(|(receipt_thread, _)| receipt_thread.is_empty() || receipt_thread == own_thread)
        .map(|(_, position)| *position)
        .max()
        .unwrap_or(positions.joined)
}

/// The counts for the user in the room over the events up to `upto`, each event judged
/// against the read position of its own thread. Events of ignored users are left out, as
/// they are from the timeline. Counts already made for an earlier `upto` with the same read
/// positions are carried forward (`unread_cache`), so only newer events are looked at.
async fn counts(
    pool: &PgPool,
    user: &UserId,
    room_id: &RoomId,
    positions: Option<ReadPositions>,
    upto: i64,
    ignored: &HashSet<String>,
) -> Result<UnreadCounts> {
    let Some(positions) = positions else {
        return Ok(UnreadCounts::default());
    };
    let key = CacheKey::new(pool, user, room_id);
    let (after, mut unread) = match cache::lookup(&key, &positions, ignored, upto) {
        Some(earlier) => earlier,
        // Every thread's read position is at least the lowest of these.
        None => {
            let lowest_read = positions.receipts.iter().map(|(_, position)| *position).fold(positions.joined, i64::min);
            (lowest_read, UnreadCounts::default())
        }
    };
    let newer = count_between(pool, user, room_id, &positions, after, upto, ignored).await?;
    unread.add(&newer);
    cache::store(key, positions, ignored, upto, unread.clone());
    Ok(unread)
}

/// Counts of the events with `after < position <= upto` that are past their thread's read
/// position.
async fn count_between(
    pool: &PgPool,
    user: &UserId,
    room_id: &RoomId,
    positions: &ReadPositions,
    after: i64,
    upto: i64,
    ignored: &HashSet<String>,
) -> Result<UnreadCounts> {
    let mut unread = UnreadCounts::default();
    if after >= upto {
        return Ok(unread);
    }
    let events = db::unread::unread_events(pool, room_id.as_str(), user.as_str(), after, upto, MAX_COUNTED).await?;
    let events: Vec<_> = events
        .into_iter()
        .filter(|event| event.stream_position > read_up_to(positions, event.thread_root.as_deref()))
        .collect();
    if events.is_empty() {
        return Ok(unread);
    }
    // The user's member event and what power levels are made of, in one query.
    let [create, power_levels] = POWER_KEYS;
    let keys = [create, power_levels, ("m.room.member", user.as_str())];
    // The rules only ask whether the room has exactly two members: count up to three.
    let (entries, joined) = db::state::current_state_for_keys_and_joined(pool, room_id.as_str(), &keys, 3).await?;
    let display_name = match entries.iter().find(|entry| entry.event_type == "m.room.member") {
        Some(entry) => Pdu::from_stored(&entry.event_id, &entry.json)?.content_value()["displayname"]
            .as_str()
            .map(str::to_owned)
            .filter(|name| !name.trim().is_empty()),
        None => None,
    };
    let member_count = match joined {
        Some(joined) => joined,
        None => db::unread::joined_count_up_to(pool, room_id.as_str(), 3).await?,
    };
    let context = Context {
        user_id: user.to_string(),
        localpart: user.localpart().to_owned(),
        display_name,
        member_count,
        power: PowerLevels::from_state(room_id, &entries)?,
    };
    for event in events {
        // A stored event that does not parse is not something to count (nor to fail on).
        let Ok(pdu) = Pdu::from_stored(&event.event_id, &event.json) else { continue };
        if ignored.contains(pdu.sender.as_str()) {
            continue;
        }
        let action = evaluate(&context, &pdu);
        match event.thread_root {
            Some(root) => unread.threads.entry(root).or_default().add(action),
            None => unread.main.add(action),
        }
    }
    Ok(unread)
}

/// Whose counts, and what is known of them before counting.
pub(super) struct Reader<'a> {
    pub user: &'a UserId,
    /// Where the user's reading stands in the room (`None`: no membership row, nothing unread).
    pub positions: Option<ReadPositions>,
    /// Ignored users, whose events do not count.
    pub ignored: &'a HashSet<String>,
    /// Per-thread counts (the filter's `unread_thread_notifications`).
    pub threaded: bool,
}

/// Adds `unread_notifications` to a joined room's entry, and with `threaded` (the filter's
/// `unread_thread_notifications`) `unread_thread_notifications` beside it, whose threads'
/// counts the main ones then leave out. The counts alone never make a room worth sending:
/// they change only with events or receipts, which bring the room in already.
pub(super) async fn attach(
    pool: &PgPool,
    reader: Reader<'_>,
    room_id: &RoomId,
    entry: Option<RoomEntry>,
    upto: i64,
) -> Result<Option<RoomEntry>> {
    let Some(mut entry) = entry else { return Ok(None) };
    let Reader { user, positions, ignored, threaded } = reader;
    let counts = counts(pool, user, room_id, positions, upto, ignored).await?;
    if threaded {
        entry.json["unread_notifications"] = counts.main.json();
        let threads: Map<String, Value> = counts
            .threads
            .iter()
            .filter(|(_, count)| count.notifications > 0)
            .map(|(root, count)| (root.clone(), count.json()))
            .collect();
        entry.json["unread_thread_notifications"] = Value::Object(threads);
    } else {
        entry.json["unread_notifications"] = counts.total().json();
    }
    Ok(Some(entry))
}

/// The default rules in the spec's order (override, content, underride; the room and sender
/// kinds have no defaults); the first that matches decides. The sender is never the user.
fn evaluate(context: &Context, pdu: &Pdu) -> Action {
    let kind = pdu.kind.to_string();
    let content = pdu.content_value();
    let body = content["body"].as_str();
    // Spec (`m.mentions`): an event that says whom it mentions is not searched for legacy
    // mentions in its body.
    let legacy = content.get("m.mentions").is_none();
    let can_notify_room = || {
        let needed = context.power.content["notifications"]["room"].as_i64().unwrap_or(DEFAULT_ROOM_NOTIFICATION_LEVEL);
        context.power.of(pdu.sender.as_str()) >= needed
    };

    // Override rules.
    if kind == "m.room.message" && content["msgtype"] == "m.notice" {
        return Action::None; // .m.rule.suppress_notices
    }
    if kind == "m.room.member" {
        // .m.rule.invite_for_me, then .m.rule.member_event
        let for_me = content["membership"] == "invite" && pdu.state_key.as_deref() == Some(context.user_id.as_str());
        return if for_me { Action::Notify } else { Action::None };
    }
    let mentioned = content["m.mentions"]["user_ids"]
        .as_array()
        .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(context.user_id.as_str())));
    if mentioned {
        return Action::Highlight; // .m.rule.is_user_mention
    }
    if legacy
        && let (Some(body), Some(name)) = (body, context.display_name.as_deref())
        && contains_word(body, name)
    {
        return Action::Highlight; // .m.rule.contains_display_name
    }
    if content["m.mentions"]["room"] == true && can_notify_room() {
        return Action::Highlight; // .m.rule.is_room_mention
    }
    if legacy && body.is_some_and(|body| contains_word(body, "@room")) && can_notify_room() {
        return Action::Highlight; // .m.rule.roomnotif
    }
    if kind == "m.room.tombstone" && pdu.state_key.as_deref() == Some("") {
        return Action::Highlight; // .m.rule.tombstone
    }
    if content["m.relates_to"]["rel_type"] == "m.replace" {
        return Action::None; // .m.rule.suppress_edits
    }

    // Content rules.
    if legacy && body.is_some_and(|body| contains_word(body, &context.localpart)) {
        return Action::Highlight; // .m.rule.contains_user_name
    }

    // Underride rules: .m.rule.call, the one-to-one rules and their general fallbacks
    // (.m.rule.message, .m.rule.encrypted, .m.rule.poll_start, .m.rule.poll_end) all notify,
    // so in a room of any size every message, encrypted event or poll of another user does;
    // the one-to-one rules (`room_member_count == 2`) differ only in adding a sound.
    if context.member_count == 2 && matches!(kind.as_str(), "m.room.message" | "m.room.encrypted") {
        return Action::Notify; // .m.rule.room_one_to_one, .m.rule.encrypted_room_one_to_one
    }
    match kind.as_str() {
        "m.call.invite" | "m.room.message" | "m.room.encrypted" | "m.poll.start" | "m.poll.end" => Action::Notify,
        _ => Action::None,
    }
}

/// The push rules' `event_match` on `content.body`: the pattern matches a whole word of the
/// body, case-insensitively. A pattern edge that is itself not a word character (`@room`)
/// needs no boundary on that side.
fn contains_word(haystack: &str, needle: &str) -> bool {
    let haystack = haystack.to_lowercase();
    let needle = needle.to_lowercase();
    if needle.is_empty() {
        return false;
    }
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let needs_start = needle.chars().next().is_some_and(is_word);
    let needs_end = needle.chars().next_back().is_some_and(is_word);
    haystack.match_indices(&needle).any(|(start, found)| {
        let before = haystack[..start].chars().next_back();
        let after = haystack[start + found.len()..].chars().next();
        (!needs_start || !before.is_some_and(is_word)) && (!needs_end || !after.is_some_and(is_word))
    })
}

#[cfg(test)]
mod tests {
    use super::contains_word;

    #[test]
    fn words_match_whole_and_case_insensitively() {
        assert!(contains_word("hi Alice!", "alice"));
        assert!(contains_word("Alice", "Alice"));
        assert!(!contains_word("malice", "alice"));
        assert!(!contains_word("alice_b", "alice"));
        assert!(contains_word("hey @room look", "@room"));
        assert!(contains_word("@room", "@room"));
        assert!(!contains_word("@roomy", "@room"));
        assert!(!contains_word("", "alice"));
    }
}
