//! One room's entry in a `/sync` response (`rooms.join.{id}`, `rooms.leave.{id}`): its
//! timeline for the window, the state at the timeline's start, and its account data.

use crate::db;
use crate::db::events::StoredEvent;
use crate::db::state::StateEntry;
use crate::error::Result;
use crate::rooms::pdu::Pdu;
use crate::rooms::visibility;
use crate::rooms::visibility::Viewer;
use crate::store::Store;
use crate::sync::lazy_members::{self, LazyDevice, LazyLoad};
use crate::sync::response::{self, Events, SyncEvent, SyncRoom};
use crate::sync::types::{RoomEntry, SyncOptions};
use ruma::events::TimelineEventType;
use ruma::events::room::member::MembershipState;
use ruma::{RoomId, UserId};
use std::collections::HashSet;

/// Timeline events are read newest first in pages; a page holds at least this many so that a
/// strict filter does not cost one query per event.
const MIN_PAGE: usize = 20;

/// How many events the timeline's first page reads for a `timeline_limit`.
pub(super) fn first_page_size(limit: usize) -> usize {
    // One more than the limit tells whether the timeline is limited.
    (limit + 1).max(MIN_PAGE)
}

/// How many events an initial sync reads ahead for each room's first page: with a filter that
/// keeps every event, one more than the limit is all the timeline can use (events hidden by
/// history visibility or an ignore list make the room read on, as any page does); a stricter
/// filter reads a whole [`first_page_size`].
pub(super) fn read_ahead_page_size(options: &SyncOptions) -> usize {
    match options.timeline.keeps_every_event() {
        true => options.timeline_limit + 1,
        false => first_page_size(options.timeline_limit),
    }
}

/// A room's first page read before its entry is built: newest first, and how many events were
/// asked for (fewer came back when the page reached the window's start).
pub(super) struct KnownPage {
    pub events: Vec<StoredEvent>,
    pub asked: usize,
}

/// A filter may reject nearly everything in a long history: after examining this many events
/// the timeline stops and says `limited`, and the client paginates on with `prev_batch`.
const MAX_SCANNED: usize = 2000;

/// What `state.events` carries for a room.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum StateMode {
    /// The whole state before the timeline (initial syncs, new joins, `full_state`).
    Full,
    /// Only what changed between the window's start and the timeline's start.
    Changes,
    /// None: the user never joined the room (a rejected invite, a ban).
    Nothing,
}

/// One room's slice of the window: timeline events with `after < position <= upto`.
pub(super) struct RoomWindow {
    pub after: i64,
    pub upto: i64,
    /// Whether the user is joined at `upto` (history visibility).
    pub joined: bool,
    pub state: StateMode,
    /// The timeline's first page, when read already (an initial sync reads every room's at
    /// once): the room's newest events with `after < position <= upto`.
    pub first_page: Option<KnownPage>,
    /// A snapshot's whole state, when read already: used if the timeline starts there.
    pub start_state: Option<(i64, Vec<StateEntry>)>,
}

/// State event types the room summary is made of.
const SUMMARY_TYPES: [&str; 3] = ["m.room.member", "m.room.name", "m.room.canonical_alias"];

/// An event of the window, seen while reading the timeline (whether or not it was picked).
struct WindowEvent {
    position: i64,
    /// The event type, for state events.
    state_type: Option<String>,
}

impl WindowEvent {
    fn of(event: &StoredEvent, pdu: &Pdu) -> WindowEvent {
        WindowEvent {
            position: event.stream_position.unwrap_or_default(),
            state_type: pdu.state_key.as_ref().map(|_| pdu.kind.to_string()),
        }
    }
}

/// A `rooms.join` / `rooms.leave` entry.
pub(super) async fn room_entry(
    pool: &Store,
    user: &UserId,
    room_id: &RoomId,
    window: RoomWindow,
    options: &SyncOptions,
    ignored: &HashSet<String>,
    account_data: Vec<SyncEvent>,
) -> Result<Option<RoomEntry>> {
    let mut window = window;
    let first_page = window.first_page.take();
    let known_state = window.start_state.take();
    if crate::rooms::facts::version(pool, room_id).await?.is_none() {
        // A membership in a room whose events this server does not have (e.g. an invite
        // over federation that was rejected): nothing to show.
        return Ok(None);
    }
    let membership = window.joined.then_some(MembershipState::Join);
    let viewer = Viewer::knowing_membership(pool, user, room_id, membership).await?;
    let timeline = timeline(pool, user, room_id, (&window, first_page), options, ignored).await?;

    // The state at the start of the timeline: before its first event, else at its end.
    let (start_snapshot, start_position) = match timeline.events.first() {
        Some((first, _)) => (first.state_before, first.stream_position.map_or(window.upto, |p| p - 1)),
        None => (db::rooms::state_at_position(pool, room_id.as_str(), window.upto).await?, window.upto),
    };
    let state_changed = async || match &timeline.whole_window {
        Some(events) => Ok(events.iter().any(|event| event.state_type.is_some() && event.position <= start_position)),
        None => db::sync::state_changed(pool, room_id.as_str(), window.after, start_position).await,
    };
    // Lazy loading keeps only the senders' and the user's member events: the others are not
    // read (a new member of a big room skips the member list, a catching-up one the joins).
    let lazy = options.timeline.lazy_load_members;
    let members = lazy.then(|| lazy_members::wanted_members(user, &timeline.events));
    // A limited sync sends the member events of its gap whoever they are of (spec), so that
    // joins and profile changes there are not lost.
    let gappy = timeline.limited && window.state == StateMode::Changes;
    let mut state = match (window.state, start_snapshot) {
        (StateMode::Full, Some(snapshot)) => match known_state {
            Some((known, state)) if known == snapshot && members.is_none() => state,
            _ => db::state::snapshot_state_with_members(pool, snapshot, members.as_deref()).await?,
        },
        (StateMode::Changes, Some(snapshot)) if state_changed().await? => {
            let members = if gappy { None } else { members.as_deref() };
            match db::rooms::state_at_position(pool, room_id.as_str(), window.after).await? {
                Some(before) => db::state::snapshot_changes(pool, before, snapshot, members).await?,
                None => db::state::snapshot_state_with_members(pool, snapshot, members).await?,
            }
        }
        _ => Vec::new(),
    };
    let device = options.device.as_deref().filter(|_| lazy).map(|device| LazyDevice {
        pool,
        user,
        device,
        include_redundant: options.timeline.include_redundant_members,
    });
    if lazy && window.state != StateMode::Nothing {
        let gap: HashSet<i64> = match gappy {
            true => {
                state.iter().filter(|entry| entry.event_type == "m.room.member").map(|entry| entry.event_nid).collect()
            }
            false => HashSet::new(),
        };
        // Only an incremental sync's device has anything it can be spared (`after` is its token).
        let device = device.filter(|_| window.state == StateMode::Changes).map(|device| (device, window.after));
        let load = LazyLoad { room_id, user, timeline: &timeline.events, start_snapshot, keep: &gap, device };
        lazy_members::load(pool, load, &mut state).await?;
    }
    let in_timeline: HashSet<i64> = timeline.events.iter().map(|(event, _)| event.event_nid).collect();
    if timeline.hidden_state_after_start && window.state != StateMode::Nothing {
        // What changed after the timeline's start while hidden from the user (a join while they
        // were away from a `joined`-visibility room) would otherwise never reach the client:
        // it comes with the state, as in Synapse's state calculation.
        let later = state_not_in_timeline(pool, room_id, start_snapshot, window.upto, members.as_deref(), &in_timeline);
        let later = later.await?;
        let replaced: HashSet<(&str, &str)> =
            later.iter().map(|entry| (entry.event_type.as_str(), entry.state_key.as_str())).collect();
        state.retain(|entry| !replaced.contains(&(entry.event_type.as_str(), entry.state_key.as_str())));
        state.extend(later);
    }
    state.retain(|entry| !in_timeline.contains(&entry.event_nid));
    state.sort_by(|a, b| (&a.event_type, &a.state_key).cmp(&(&b.event_type, &b.state_key)));

    let rules = &viewer.rules().redaction;
    let state_events: Vec<SyncEvent> = crate::sync::state_redactions::served_state(pool, rules, &state, window.upto)
        .await?
        .iter()
        .map(|served| SyncEvent::of_served(served, room_id, None))
        .collect::<Result<_>>()?;
    let prev_batch = timeline.prev_batch;
    let summary_changed = timeline.whole_window.as_ref().map(|events| {
        events.iter().any(|event| event.state_type.as_deref().is_some_and(|kind| SUMMARY_TYPES.contains(&kind)))
    });
    if let Some(device) = device {
        let in_state = state.iter().filter(|entry| entry.event_type == "m.room.member");
        let in_state = in_state.map(|entry| (entry.state_key.as_str(), entry.event_id.as_str()));
        let in_timeline = timeline.events.iter().filter(|(_, pdu)| pdu.kind == TimelineEventType::RoomMember);
        let in_timeline =
            in_timeline.filter_map(|(event, pdu)| Some((pdu.state_key.as_deref()?, event.event_id.as_str())));
        device.record(room_id, in_state.chain(in_timeline), window.upto);
    }
    let (served, mut bundles) = viewer.served_with_bundles(timeline.events).await?;
    let timeline_events: Vec<SyncEvent> = served
        .iter()
        .map(|event| SyncEvent::of_served(event, room_id, bundles.remove(&event.event_nid)))
        .collect::<Result<_>>()?;
    let is_quiet = timeline_events.is_empty() && state_events.is_empty() && account_data.is_empty();
    let room = SyncRoom {
        timeline: response::Timeline {
            events: timeline_events,
            limited: timeline.limited,
            prev_batch: crate::streams::token::encode_page(prev_batch),
        },
        state: Events { events: state_events },
        account_data: Events::non_empty(account_data),
        ..SyncRoom::default()
    };
    Ok(Some(RoomEntry { room, is_quiet, summary_changed }))
}

/// The state changes between the timeline's start and the window's end that the timeline does
/// not carry.
async fn state_not_in_timeline(
    pool: &Store,
    room_id: &RoomId,
    start_snapshot: Option<i64>,
    upto: i64,
    members: Option<&[String]>,
    in_timeline: &HashSet<i64>,
) -> Result<Vec<StateEntry>> {
    let Some(start) = start_snapshot else { return Ok(Vec::new()) };
    let Some(end) = db::rooms::state_at_position(pool, room_id.as_str(), upto).await? else { return Ok(Vec::new()) };
    if end == start {
        return Ok(Vec::new());
    }
    let mut changes = db::state::snapshot_changes(pool, start, end, members).await?;
    changes.retain(|entry| !in_timeline.contains(&entry.event_nid));
    Ok(changes)
}

struct Timeline {
    /// Oldest first.
    events: Vec<(StoredEvent, Pdu)>,
    limited: bool,
    /// `/messages` from here, backwards, continues just before the first event.
    prev_batch: i64,
    /// Every event of the window, picked or not, when reading reached the window's start:
    /// then whether state changed in it needs no query.
    whole_window: Option<Vec<WindowEvent>>,
    /// Whether the history visibility hid a state event after the timeline's start from the
    /// user (a join while they were away from a `joined` room): the state section must then
    /// carry it. (Events the client's filter leaves out are its choice, and stay out.)
    hidden_state_after_start: bool,
}

/// The last `timeline_limit` events of the room's window the user may see and the filter
/// lets through (events of ignored users left out).
async fn timeline(
    pool: &Store,
    user: &UserId,
    room_id: &RoomId,
    (window, mut known_page): (&RoomWindow, Option<KnownPage>),
    options: &SyncOptions,
    ignored: &HashSet<String>,
) -> Result<Timeline> {
    let limit = options.timeline_limit;
    let page = first_page_size(limit);
    let mut picked = Vec::new();
    let mut from = window.upto;
    let mut scanned = 0;
    let mut limited = false;
    let mut lowest_examined = window.upto;
    let mut examined = Vec::new();
    let mut reached_start;
    // The first page is read whole: in a live sync it usually holds the whole window, whose
    // state changes it then shows without a query. Past it, a filter's type and sender
    // conditions are left to the database (a member catching up on a thousand joins with a
    // messages-only filter would otherwise read fifty pages only to drop them).
    let matching = options.timeline.type_and_sender_match();
    let mut examined_all = true;
    let mut visible = HashSet::new();
    let mut first_page = true;
    loop {
        let only = if first_page { None } else { matching.as_ref() };
        first_page = false;
        let after = Some(window.after);
        let (batch, asked) = match (only, known_page.take()) {
            (None, Some(known)) => (known.events, known.asked),
            (None, None) => {
                (crate::sync::shared_pages::newest_page(pool, room_id.as_str(), from, window.after, page).await?, page)
            }
            (Some(only), _) => {
                examined_all = false;
                let matching =
                    db::events::timeline_page_matching(pool, room_id.as_str(), from, true, after, page as i64, only);
                (matching.await?, page)
            }
        };
        let fetched = batch.len();
        scanned += fetched;
        reached_start = fetched < asked;
        // Parsed once per process (`rooms::parsed`): a woken member's copy is shared.
        let batch = batch
            .into_iter()
            .map(|event| Ok((crate::rooms::parsed::pdu_of(pool, &event)?, event)))
            .collect::<Result<Vec<_>>>()?;
        examined.extend(batch.iter().map(|(pdu, event)| WindowEvent::of(event, pdu)));
        let lowest = batch.last().and_then(|(_, event)| event.stream_position);
        for (event, pdu) in visible_with_own_membership(pool, user, window.joined, batch).await? {
            visible.extend(event.stream_position);
            // Ignored users' messages are hidden; their state changes still shape the room.
            if !options.timeline.allows(&pdu) || (!pdu.is_state() && ignored.contains(pdu.sender.as_str())) {
                continue;
            }
            picked.push((event, pdu));
        }
        if picked.len() > limit {
            limited = true;
            break;
        }
        let Some(lowest) = lowest.filter(|_| fetched == asked) else { break };
        lowest_examined = lowest;
        if scanned >= MAX_SCANNED {
            limited = true;
            break;
        }
        from = lowest - 1;
    }
    picked.truncate(limit);
    picked.reverse();
    // An empty timeline starts at the window's end: the state section covers all of it.
    let hidden_state_after_start = picked.first().and_then(|(event, _)| event.stream_position).is_some_and(|start| {
        examined
            .iter()
            .any(|event| event.state_type.is_some() && event.position > start && !visible.contains(&event.position))
    });
    let prev_batch = match picked.first().and_then(|(event, _)| event.stream_position) {
        Some(first) => first - 1,
        None if limited => lowest_examined - 1,
        None => window.upto,
    };
    let whole_window = (reached_start && examined_all).then_some(examined);
    Ok(Timeline { events: picked, limited, prev_batch, whole_window, hidden_state_after_start })
}

/// The events the user may see (history visibility), and in any case their own member
/// events: a rejected invite or a ban must reach the client's `leave` section even where the
/// history visibility hides the room's events from non-members. Newest first, as given.
async fn visible_with_own_membership(
    pool: &Store,
    user: &UserId,
    joined: bool,
    batch: Vec<(Pdu, StoredEvent)>,
) -> Result<Vec<(StoredEvent, Pdu)>> {
    let mut own = Vec::new();
    let mut others = Vec::with_capacity(batch.len());
    for (pdu, event) in batch {
        if pdu.kind == TimelineEventType::RoomMember && pdu.state_key.as_deref() == Some(user.as_str()) {
            own.push((event, pdu));
        } else {
            others.push((event, pdu));
        }
    }
    let mut events = visibility::visible_parsed(pool, user, joined, others).await?;
    if !own.is_empty() {
        events.extend(own);
        events.sort_by_key(|(event, _)| std::cmp::Reverse(event.stream_position));
    }
    Ok(events)
}
