//! `rooms.join.{id}.unread_notifications`: how many events after the user's read receipt
//! notify them, and how many of those highlight, as their push rules decided when each event
//! arrived (`event_push_actions`, written by `push::evaluate`). Per-thread counts come from
//! the same rows, by their thread.

use crate::db;
use crate::db::push_actions::UnreadRow;
use crate::db::unread::ReadPositions;
use crate::error::Result;
use crate::push::evaluate::MAIN_TIMELINE;
use crate::push::notifications::read_up_to;
use crate::store::Store;
use crate::sync::news::{News, WindowRows};
use crate::sync::response::UnreadCount;
use crate::sync::types::RoomEntry;
use crate::sync::unread_cache::{self as cache, CacheKey};
use ruma::{RoomId, UserId};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Counting is bounded: beyond this many unread events a client shows "lots" anyway, and a
/// sync must not scan a room's whole history.
pub(super) const MAX_COUNTED: i64 = 1000;

/// Notifying and highlighting events, for the main timeline or one thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Count {
    notifications: u64,
    highlights: u64,
}

impl Count {
    fn add(&mut self, row: &UnreadRow) {
        self.notifications += u64::from(row.notify);
        self.highlights += u64::from(row.highlight);
    }

    fn plus(self, other: Count) -> Count {
        Count {
            notifications: self.notifications + other.notifications,
            highlights: self.highlights + other.highlights,
        }
    }

    fn shown(self) -> UnreadCount {
        UnreadCount { notification_count: self.notifications, highlight_count: self.highlights }
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

/// The counts for the user in the room over the events up to `upto`, each event judged
/// against the read position of its own thread. Events of ignored users are left out, as
/// they are from the timeline. Counts already made for an earlier `upto` with the same read
/// positions are carried forward (`unread_cache`), so only newer events are looked at.
async fn counts(pool: &Store, reader: &Reader<'_>, room_id: &RoomId, upto: i64) -> Result<UnreadCounts> {
    let Reader { user, ignored, .. } = *reader;
    let positions = reader.positions.clone();
    let Some(positions) = positions else {
        return Ok(UnreadCounts::default());
    };
    let key = CacheKey::new(user, room_id);
    let (after, mut unread) = match cache::lookup(pool, &key, &positions, ignored, upto) {
        Some(earlier) => earlier,
        // Every thread's read position is at least the lowest of these.
        None => (lowest_read(&positions), UnreadCounts::default()),
    };
    let newer = match &reader.window_rows {
        // The news read every row of the window this count starts at: nothing to ask.
        Some(window) if window.since == after => count_rows(window.rows.iter(), &positions, ignored),
        _ => count_between(pool, user, room_id, &positions, after, upto, ignored).await?,
    };
    unread.add(&newer);
    cache::store(pool, key, positions, ignored, upto, unread.clone());
    Ok(unread)
}

/// Every thread's read position is at least this: where counting starts with nothing counted.
pub(super) fn lowest_read(positions: &ReadPositions) -> i64 {
    positions.receipts.iter().map(|(_, position)| *position).fold(positions.joined, i64::min)
}

/// Counts of the events with `after < position <= upto` that are past their thread's read
/// position.
async fn count_between(
    pool: &Store,
    user: &UserId,
    room_id: &RoomId,
    positions: &ReadPositions,
    after: i64,
    upto: i64,
    ignored: &HashSet<String>,
) -> Result<UnreadCounts> {
    if after >= upto {
        return Ok(UnreadCounts::default());
    }
    let rows =
        db::push_actions::unread_between(pool, user.as_str(), room_id.as_str(), after, upto, MAX_COUNTED).await?;
    Ok(count_rows(rows.iter(), positions, ignored))
}

/// Counts of `rows` (newest first; the newest [`MAX_COUNTED`] count) past their thread's read
/// position.
fn count_rows<'r>(
    rows: impl Iterator<Item = &'r UnreadRow>,
    positions: &ReadPositions,
    ignored: &HashSet<String>,
) -> UnreadCounts {
    let mut unread = UnreadCounts::default();
    for row in rows.take(usize::try_from(MAX_COUNTED).unwrap_or(usize::MAX)) {
        if row.stream_position <= read_up_to(positions, &row.thread_id) || ignored.contains(&row.sender) {
            continue;
        }
        match row.thread_id.as_str() {
            MAIN_TIMELINE => unread.main.add(row),
            thread => unread.threads.entry(thread.to_owned()).or_default().add(row),
        }
    }
    unread
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
    /// The user's rows of the room in the sync's window, when the window's news read them.
    pub window_rows: Option<WindowRows>,
}

/// The user's read positions in each of `rooms`: those the window's news read, and the
/// others in one statement (none when the news covered every room).
pub(super) async fn read_positions(
    pool: &Store,
    user: &UserId,
    rooms: &[String],
    news: &News,
) -> Result<HashMap<String, ReadPositions>> {
    let mut known = HashMap::new();
    let mut unknown = Vec::new();
    for room in rooms {
        match news.read_positions(room) {
            Some(Some(positions)) => {
                known.insert(room.clone(), positions.clone());
            }
            // The news read the room and found no membership row: nothing unread there.
            Some(None) => {}
            None => unknown.push(room.clone()),
        }
    }
    if !unknown.is_empty() {
        known.extend(db::unread::read_positions_in(pool, &unknown, user.as_str()).await?);
    }
    Ok(known)
}

/// Adds `unread_notifications` to a joined room's entry, and with `threaded` (the filter's
/// `unread_thread_notifications`) `unread_thread_notifications` beside it, whose threads'
/// counts the main ones then leave out. The counts alone never make a room worth sending:
/// they change only with events or receipts, which bring the room in already.
pub(super) async fn attach(
    pool: &Store,
    reader: Reader<'_>,
    room_id: &RoomId,
    entry: Option<RoomEntry>,
    upto: i64,
) -> Result<Option<RoomEntry>> {
    let Some(mut entry) = entry else { return Ok(None) };
    let counts = counts(pool, &reader, room_id, upto).await?;
    let threaded = reader.threaded;
    if threaded {
        entry.room.unread_notifications = Some(counts.main.shown());
        let threads = counts
            .threads
            .iter()
            .filter(|(_, count)| count.notifications > 0)
            .map(|(root, count)| (root.clone(), count.shown()))
            .collect();
        entry.room.unread_thread_notifications = Some(threads);
    } else {
        entry.room.unread_notifications = Some(counts.total().shown());
    }
    Ok(Some(entry))
}

/// The room's notification and highlight counts for the user up to `upto`, threads included
/// (what sliding sync's `notification_count` and `highlight_count` say).
pub(super) async fn totals(pool: &Store, reader: Reader<'_>, room_id: &RoomId, upto: i64) -> Result<(u64, u64)> {
    let total = counts(pool, &reader, room_id, upto).await?.total();
    Ok((total.notifications, total.highlights))
}
