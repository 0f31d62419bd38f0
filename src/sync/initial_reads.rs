//! An initial sync's reads of every joined room at once (issue #24, item 2). Built room by
//! room, a first initial sync of a hundred rooms cost six statements a room — the room's
//! version, its newest events, the history visibility of their snapshot, its state at the
//! timeline's start, its summary, its unread rows — and on a database filled moments before
//! (statistics not yet gathered) each one planned as if the tables were empty. Here each kind
//! is one statement for all the rooms, driven by the room list itself so that its plan does
//! not depend on statistics; each room's entry is then built from what was read.
//!
//! What is read ahead only spares a query: a room whose entry turns out to need something else
//! (a filter or an ignored sender moves its timeline's start, a lazy-loading filter wants
//! other members) asks for it as before, so the answer is the same either way.

use crate::db;
use crate::db::events::{PagedEvent, StoredEvent};
use crate::db::state::StateEntry;
use crate::db::unread::{ReadPositions, SummaryFacts};
use crate::error::Result;
use crate::store::Store;
use crate::sync::news::WindowRows;
use crate::sync::room::KnownPage;
use crate::sync::transaction_ids::KnownSent;
use crate::sync::types::SyncOptions;
use ruma::UserId;
use std::collections::{HashMap, HashSet};

/// What was read ahead for one room.
#[derive(Default)]
pub(super) struct RoomReads {
    /// The room's newest events from the window's end back to its start, as the timeline's
    /// first page reads them (newest first).
    pub first_page: Option<KnownPage>,
    /// The whole state of the snapshot the timeline is expected to start at.
    pub state: Option<(i64, Vec<StateEntry>)>,
    pub summary: Option<SummaryFacts>,
    /// The user's push action rows from their lowest read position on.
    pub unread: Option<WindowRows>,
}

/// What was read ahead for every room, by room id.
#[derive(Default)]
pub(super) struct InitialReads {
    rooms: HashMap<String, RoomReads>,
    /// The transaction ids of the device's events among the pages.
    sent: KnownSent,
}

impl InitialReads {
    /// Reads ahead for `rooms` (joined, each getting its whole recent history and state) in a
    /// window ending at `upto`, with the user's read positions in them.
    ///
    /// Reads that do not need each other's answers run side by side, each on a connection of
    /// its own: the summaries and the unread rows beside the timelines, the rooms' versions
    /// beside their pages, and the history visibility of the pages' snapshots beside the
    /// state the timelines start at (one after another they were a chain of six round trips,
    /// about 20 ms of a first sync of a hundred rooms).
    pub(super) async fn read(
        pool: &Store,
        user: &UserId,
        rooms: &[String],
        (upto, options): (i64, &SyncOptions),
        read_positions: &HashMap<String, ReadPositions>,
    ) -> Result<InitialReads> {
        let mut reads = InitialReads::default();
        if rooms.is_empty() {
            return Ok(reads);
        }
        let summaries = async {
            let summaries =
                db::initial_reads::summary_facts_of(pool, rooms, user.as_str(), crate::sync::summary::MAX_HEROES)
                    .await?;
            Ok::<_, crate::error::Error>(
                summaries.into_iter().map(|row| (row.room_id, row.facts)).collect::<HashMap<String, SummaryFacts>>(),
            )
        };
        let page = crate::sync::room::read_ahead_page_size(options);
        let ((mut pages, starts, states, sent), mut summaries, mut unread) = tokio::try_join!(
            timelines(pool, user, rooms, (upto, options), page),
            summaries,
            unread_rows(pool, user, rooms, upto, read_positions),
        )?;
        for room_id in rooms {
            let state =
                starts.get(room_id).map(|snapshot| (*snapshot, states.get(snapshot).cloned().unwrap_or_default()));
            let room = RoomReads {
                first_page: Some(KnownPage { events: pages.remove(room_id).unwrap_or_default(), asked: page }),
                state,
                summary: summaries.remove(room_id),
                unread: unread.remove(room_id),
            };
            reads.rooms.insert(room_id.clone(), room);
        }
        reads.sent = sent;
        Ok(reads)
    }

    /// What was read ahead for the room (nothing, if it was not).
    pub(super) fn take(&mut self, room_id: &str) -> RoomReads {
        self.rooms.remove(room_id).unwrap_or_default()
    }

    /// The transaction ids read ahead (see [`KnownSent`]).
    pub(super) fn take_sent(&mut self) -> KnownSent {
        std::mem::take(&mut self.sent)
    }
}

/// Each room's first page of events (newest first), the snapshot its timeline is expected to
/// start at, the whole state of those snapshots and the transaction ids of the device's events
/// in the pages; with the rooms' versions and the history visibility of the pages' snapshots
/// learnt (`rooms::facts`) for building the entries.
async fn timelines(
    pool: &Store,
    user: &UserId,
    rooms: &[String],
    (upto, options): (i64, &SyncOptions),
    page: usize,
) -> Result<(HashMap<String, Vec<StoredEvent>>, HashMap<String, i64>, HashMap<i64, Vec<StateEntry>>, KnownSent)> {
    // The timeline starts at the oldest of the newest `limit` events when nothing is left out
    // of it; its state is what the entry shows, read beside the pages (the statement finds the
    // same events the pages hold). Lazy loading wants only some members: those rooms read
    // their own.
    let lazy = options.timeline.lazy_load_members;
    let states = async {
        let mut states: HashMap<i64, Vec<StateEntry>> = HashMap::new();
        if !lazy {
            let limit = options.timeline_limit as i64;
            for row in db::initial_reads::states_at_timeline_starts(pool, rooms, upto, limit).await? {
                states.entry(row.origin).or_default().push(row.entry);
            }
        }
        Ok::<_, crate::error::Error>(states)
    };
    // The device's transaction ids come with the pages (the answer's events are among them).
    let device = options.device.as_deref().map(|device| (user.as_str(), device.as_str()));
    let (_, newest, states) = tokio::try_join!(
        crate::rooms::facts::learn_versions(pool, rooms),
        async { Ok(db::events::newest_pages(pool, rooms, upto, page as i64, device).await?) },
        states,
    )?;
    let mut sent = KnownSent::default();
    let mut pages: HashMap<String, Vec<StoredEvent>> = HashMap::new();
    for PagedEvent { event, transaction_id } in newest {
        if device.is_some() {
            if let Some(transaction_id) = transaction_id {
                sent.sent.insert(event.event_id.clone(), transaction_id);
            }
            sent.asked.insert(event.event_id.clone());
        }
        pages.entry(event.room_id.clone()).or_default().push(event);
    }
    let mut starts: HashMap<String, i64> = HashMap::new();
    if !lazy {
        for (room_id, page) in &pages {
            let start = page.get(options.timeline_limit.min(page.len()).saturating_sub(1));
            if let Some(snapshot) = start.and_then(|event| event.state_before) {
                starts.insert(room_id.clone(), snapshot);
            }
        }
    }
    let snapshots: HashSet<i64> = pages.values().flatten().filter_map(|event| event.state_before).collect();
    let snapshots: Vec<i64> = snapshots.into_iter().collect();
    crate::rooms::facts::learn_snapshots(pool, user, &snapshots).await?;
    Ok((pages, starts, states, sent))
}

/// The user's push action rows of each room from their lowest read position there on (as
/// `unread` counts them), for the rooms with read positions.
async fn unread_rows(
    pool: &Store,
    user: &UserId,
    rooms: &[String],
    upto: i64,
    read_positions: &HashMap<String, ReadPositions>,
) -> Result<HashMap<String, WindowRows>> {
    let (counted, afters): (Vec<String>, Vec<i64>) = rooms
        .iter()
        .filter_map(|room| Some((room.clone(), crate::sync::unread::lowest_read(read_positions.get(room)?))))
        .unzip();
    let mut unread: HashMap<String, WindowRows> = afters
        .iter()
        .zip(&counted)
        .map(|(after, room)| (room.clone(), WindowRows { since: *after, rows: Vec::new() }))
        .collect();
    if !counted.is_empty() {
        let limit = crate::sync::unread::MAX_COUNTED;
        for row in db::initial_reads::unread_rows_of(pool, user.as_str(), (&counted, &afters), upto, limit).await? {
            if let Some(rows) = unread.get_mut(&row.room_id) {
                rows.rows.push(row.row);
            }
        }
    }
    Ok(unread)
}
