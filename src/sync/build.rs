//! The `/sync` response body for one window of the global stream: every change with
//! `since < position <= upto`, and nothing else (DESIGN §3). The caller picks `upto` (a
//! position below which everything has committed), so the same window always yields the same
//! events, and consecutive windows deliver each event exactly once.
//!
//! Memberships are read *as of `upto`*, not as `room_memberships` holds them now: a join or
//! leave committed after `upto` belongs to the next window.

use crate::db;
use crate::db::sync::{MemberEvent, MembershipRow};
use crate::db::unread::ReadPositions;
use crate::error::{Error, Result};
use crate::push::rules::PUSH_RULES_TYPE;
use crate::rooms::pdu::Pdu;
use crate::rooms::served;
use crate::store::Store;
use crate::sync::initial_cache::{self, CacheAt, Reuse};
use crate::sync::initial_reads::{InitialReads, RoomReads};
use crate::sync::news::{News, Wanted};
use crate::sync::partial_state::PartialRooms;
use crate::sync::response::{Events, InvitedRoom, KnockedRoom, Rooms, SyncBody, SyncEvent, SyncRoom};
use crate::sync::room::{RoomWindow, StateMode, room_entry};
use crate::sync::sections::SectionFilters;
use crate::sync::transaction_ids::KnownSent;
use crate::sync::types::{SyncOptions, SyncWindow};
use crate::sync::unread::Reader;
use futures_util::{StreamExt, TryStreamExt};
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// State event types shown to users invited to (or knocking on) a room, so that clients can
/// say what the room is (spec: "Stripped state"), plus the member event itself.
pub const STRIPPED_STATE_TYPES: [&str; 7] = [
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// The body of `window` for the user (without the per-device sections: to-device, device
/// lists, key counts, and without presence), reading memberships and news itself.
pub async fn build(pool: &Store, user: &UserId, window: SyncWindow, options: &SyncOptions) -> Result<SyncBody> {
    let memberships = db::sync::memberships(pool, user.as_str()).await?;
    let news = News::of(pool, user, None, &memberships, window, Wanted::ALL).await?;
    let sections = SectionFilters::default();
    build_rooms(pool, user, window, (options, &sections), &memberships, (&news, None)).await
}

/// [`build`] with the user's memberships (as `room_memberships` holds them now) and the
/// window's news already read; with a cache, an initial sync takes from it the joined rooms
/// whose streams stood still since it was filled, and fills it.
pub async fn build_rooms(
    pool: &Store,
    user: &UserId,
    window: SyncWindow,
    (options, filters): (&SyncOptions, &SectionFilters),
    memberships: &[MembershipRow],
    (news, cache): (&News, Option<CacheAt<'_>>),
) -> Result<SyncBody> {
    let SyncWindow { since, upto } = window;
    if since.is_none()
        && let Some(device) = &options.device
    {
        // A new sync sequence: the client may have forgotten every member it was sent.
        crate::sync::lazy_members::LazyDevice { pool, user, device, include_redundant: false }.forget_all();
    }

    // The account data and the rooms' sections (with the cached entries and the ephemeral
    // events) need nothing of each other: read side by side.
    let account_data = async {
        match news.account_data() {
            true => account_data_events(pool, user, since, upto).await,
            false => Ok((Vec::new(), HashMap::new())),
        }
    };
    let rooms_ahead = rooms_ahead(pool, user, window, (options, filters), memberships, (news, cache));
    let ((global_account_data, mut room_account_data), ahead) = tokio::try_join!(account_data, rooms_ahead)?;
    let RoomsAhead { sections, partial, reuse, reused, mut ephemeral } = ahead;
    let mut rooms = Rooms::default();
    let active: HashSet<&str> = news.rooms_with_events().unwrap_or_default().iter().map(String::as_str).collect();
    let candidates: Vec<JoinedRoom> = sections
        .join
        .iter()
        .map(|room| JoinedRoom {
            room: RoomAt { room_id: room.room_id.clone(), position: room.position },
            account_data: room_account_data.remove(room.room_id.as_str()).unwrap_or_default(),
            ephemeral: ephemeral.remove(room.room_id.as_str()).unwrap_or_default(),
            active: active.contains(room.room_id.as_str()),
            full_state_arrived: partial.completed(room.room_id.as_str()),
            reads: RoomReads::default(),
        })
        .collect();
    let mut candidates: Vec<JoinedRoom> =
        candidates.into_iter().filter(|candidate| options.full_state || candidate.may_have_news(since)).collect();
    let nothing_to_build =
        candidates.is_empty() && sections.leave.is_empty() && sections.invite.is_empty() && sections.knock.is_empty();
    let ignored = async {
        match news.ignored_users() {
            _ if nothing_to_build => Ok(HashSet::new()),
            Some(ignored) => Ok(ignored),
            None => crate::users::ignore::ignored_users(pool, user).await,
        }
    };
    // Rooms are independent of one another: build several at once, so that a sync of many
    // rooms waits for the database's round trips side by side rather than one after another.
    // Where the user's reading stands, for the unread counts of every room built, at once (and
    // beside the ignore list).
    let built: Vec<String> = candidates.iter().map(|candidate| candidate.room.room_id.to_string()).collect();
    let (ignored, read_positions) =
        tokio::try_join!(ignored, crate::sync::unread::read_positions(pool, user, &built, news))?;
    let mut known_sent = KnownSent::default();
    if since.is_none() {
        // An initial sync builds every joined room whole: read what they need all at once.
        let mut reads = InitialReads::read(pool, user, &built, (upto, options), &read_positions).await?;
        for candidate in &mut candidates {
            candidate.reads = reads.take(candidate.room.room_id.as_str());
        }
        known_sent = reads.take_sent();
    }
    let context = JoinedContext {
        pool,
        user,
        window,
        options,
        filters,
        ignored: &ignored,
        read_positions: &read_positions,
        news,
    };
    let entries: Vec<Option<(String, SyncRoom)>> = futures_util::stream::iter(candidates)
        .map(|candidate| joined_entry(&context, candidate))
        .buffered(ROOMS_AT_ONCE)
        .try_collect()
        .await?;
    let mut built: Vec<(String, SyncRoom)> = entries.into_iter().flatten().collect();

    // Left rooms (incremental syncs only, see `classify`): the timeline up to the leave.
    for room in &sections.leave {
        let key = room.room_id.as_str();
        // A room left before the window (listed for `include_leave`) is shown like on an
        // initial sync: as it was up to the leave.
        let after = since.filter(|since| room.position > *since).unwrap_or(0);
        let state = if options.full_state {
            StateMode::Full
        } else if membership_at(pool, key, user, after).await? == Some(MembershipState::Join) {
            StateMode::Changes
        } else if joined_between(pool, key, user, after, room.position).await? {
            // Joined and left within the window: the client never learnt the room.
            StateMode::Full
        } else {
            // Never joined (a rejected invite, a ban): nothing of the room's state to show.
            StateMode::Nothing
        };
        let window =
            RoomWindow { after, upto: room.position, joined: false, state, first_page: None, start_state: None };
        let account_data = room_account_data.remove(key).unwrap_or_default();
        if let Some(mut entry) = room_entry(pool, user, &room.room_id, window, options, &ignored, account_data).await? {
            // A leave is news in itself: the entry stays, whatever the filters leave in it.
            filters.apply_to_room(&mut entry);
            rooms.leave.insert(key.to_owned(), entry.room);
        }
    }
    if let Some(device) = &options.device {
        // Before the entries are kept: the cache keeps them for this device, annotated.
        let timelines = built.iter_mut().map(|(_, room)| room).chain(rooms.leave.values_mut());
        crate::sync::transaction_ids::annotate_rooms(pool, user, device, timelines, known_sent).await?;
    }
    let built: Vec<(String, Arc<SyncRoom>)> = built.into_iter().map(|(id, room)| (id, Arc::new(room))).collect();
    if let Some(cache) = cache {
        cache.cache.store(reuse, upto, &reused, &built);
    }
    rooms.join = built.into_iter().chain(reused).collect();

    for room in &sections.invite {
        if let Some(events) = stripped_state(pool, &room.room_id, &room.event, &ignored).await? {
            let invite_state = Events { events: SyncEvent::all(&events)? };
            rooms.invite.insert(room.room_id.to_string(), InvitedRoom { invite_state });
        }
    }
    for room in &sections.knock {
        if let Some(events) = stripped_state(pool, &room.room_id, &room.event, &ignored).await? {
            let knock_state = Events { events: SyncEvent::all(&events)? };
            rooms.knock.insert(room.room_id.to_string(), KnockedRoom { knock_state });
        }
    }

    let global_account_data = filters.filter_account_data(global_account_data);
    Ok(SyncBody { rooms, account_data: Events::non_empty(global_account_data), ..SyncBody::empty() })
}

/// The window's room sections, and what the joined ones start from: the entries an initial
/// sync takes from the cache (taken out of `sections.join`), and the ephemeral events of those
/// left to build.
struct RoomsAhead {
    sections: Sections,
    partial: PartialRooms,
    reuse: Reuse,
    reused: Vec<(String, Arc<SyncRoom>)>,
    ephemeral: HashMap<String, Vec<SyncEvent>>,
}

async fn rooms_ahead(
    pool: &Store,
    user: &UserId,
    window: SyncWindow,
    (options, filters): (&SyncOptions, &SectionFilters),
    memberships: &[MembershipRow],
    (news, cache): (&News, Option<CacheAt<'_>>),
) -> Result<RoomsAhead> {
    let upto = window.upto;
    let mut sections = classify(pool, user, memberships, window, options).await?;
    let partial = PartialRooms::of(memberships, window, options);
    sections.join.retain(|room| !partial.leaves_out(room.room_id.as_str()));
    let mut reuse = match cache {
        Some(cache) => cache.reusable(pool, user, memberships, window, (options, filters)).await?,
        None => Reuse::none(),
    };
    let reused = take_reused(&mut sections.join, &mut reuse);
    if let Some(device) = options.device.as_deref().filter(|_| options.timeline.lazy_load_members) {
        // What the cached entries carry counts as sent, as if they had been built now.
        let lazy = crate::sync::lazy_members::LazyDevice { pool, user, device, include_redundant: false };
        for (room_id, entry) in &reused {
            if let Ok(room_id) = <&RoomId>::try_from(room_id.as_str()) {
                lazy.record(room_id, initial_cache::member_events(entry), upto);
            }
        }
    }
    let joined_ids: Vec<String> = sections.join.iter().map(|room| room.room_id.to_string()).collect();
    let ephemeral = crate::sync::ephemeral::events(pool, user, &joined_ids, window, news).await?;
    Ok(RoomsAhead { sections, partial, reuse, reused, ephemeral })
}

/// Takes out of `joined` the rooms whose cached entries `reuse` holds, and returns those
/// entries; `reuse` keeps nothing else.
fn take_reused(joined: &mut Vec<RoomAt>, reuse: &mut Reuse) -> Vec<(String, Arc<SyncRoom>)> {
    let mut reused = Vec::new();
    joined.retain(|room| match reuse.rooms.remove(room.room_id.as_str()) {
        Some(entry) => {
            reused.push((room.room_id.to_string(), entry));
            false
        }
        None => true,
    });
    reuse.rooms.clear();
    reused
}

/// The user's account data changed in `(since, upto]` (all of it when `since` is `None`):
/// global events, and per-room events by room id.
pub(super) async fn account_data_events(
    pool: &Store,
    user: &UserId,
    since: Option<i64>,
    upto: i64,
) -> Result<(Vec<SyncEvent>, HashMap<String, Vec<SyncEvent>>)> {
    let mut global = Vec::new();
    let mut by_room: HashMap<String, Vec<SyncEvent>> = HashMap::new();
    // An initial sync always has the push rules (clients such as matrix-js-sdk need them
    // before anything else); an incremental one when they changed. Their `m.push_rules`
    // row only marks changes: the content is rendered from the rules, so that the default
    // rules of a newer server version show too.
    let mut push_rules = since.is_none();
    for row in db::sync::account_data_between(pool, user.as_str(), since, upto).await? {
        if row.room_id.is_empty() && row.data_type == PUSH_RULES_TYPE {
            push_rules = true;
            continue;
        }
        let Some(content) = row.content.into_value() else { continue };
        let event = SyncEvent::new(&json!({ "type": row.data_type, "content": content }))?;
        if row.room_id.is_empty() {
            global.push(event);
        } else {
            by_room.entry(row.room_id).or_default().push(event);
        }
    }
    if push_rules {
        let content = crate::push::rules::account_data_content(pool, user).await?;
        global.push(SyncEvent::new(&json!({ "type": PUSH_RULES_TYPE, "content": content }))?);
    }
    Ok((global, by_room))
}

/// Rooms built at once (each takes a database connection at a time).
const ROOMS_AT_ONCE: usize = 8;

/// What every joined room's entry is built from.
struct JoinedContext<'a> {
    pool: &'a Store,
    user: &'a UserId,
    window: SyncWindow,
    options: &'a SyncOptions,
    filters: &'a SectionFilters,
    ignored: &'a HashSet<String>,
    read_positions: &'a HashMap<String, ReadPositions>,
    news: &'a News,
}

/// A joined room and what the window already holds for it.
struct JoinedRoom {
    room: RoomAt,
    account_data: Vec<SyncEvent>,
    ephemeral: Vec<SyncEvent>,
    /// Whether the room has events in the window.
    active: bool,
    /// Whether the room's full state came in the window, after syncs that left it out.
    full_state_arrived: bool,
    /// What an initial sync read ahead for it.
    reads: RoomReads,
}

impl JoinedRoom {
    /// Whether the room can have an entry at all: on an initial sync, when newly joined
    /// (its membership moved in the window), or when the window holds something for it.
    fn may_have_news(&self, since: Option<i64>) -> bool {
        since.is_none_or(|since| self.room.position > since)
            || self.active
            || self.full_state_arrived
            || !self.account_data.is_empty()
            || !self.ephemeral.is_empty()
    }
}

/// The `rooms.join` entry of one room, or `None` when an incremental sync has nothing for it.
async fn joined_entry(context: &JoinedContext<'_>, candidate: JoinedRoom) -> Result<Option<(String, SyncRoom)>> {
    let JoinedContext { pool, user, window, options, filters, ignored, read_positions, news } = *context;
    let SyncWindow { since, upto } = window;
    let room = &candidate.room;
    let key = room.room_id.as_str();
    let newly_joined = candidate.full_state_arrived
        || match since {
            None => true,
            Some(since) => {
                room.position > since && membership_at(pool, key, user, since).await? != Some(MembershipState::Join)
            }
        };
    let full = newly_joined || options.full_state;
    if !full && !candidate.active && candidate.account_data.is_empty() && candidate.ephemeral.is_empty() {
        return Ok(None);
    }
    let state = if full { StateMode::Full } else { StateMode::Changes };
    // A room joined since the last sync is new to the client: it comes as on an initial sync,
    // with recent history (what the history visibility shows), `limited` and `prev_batch`,
    // not only what happened since the token (spec, and Synapse's "newly joined" rooms).
    let window_after = if newly_joined { 0 } else { since.unwrap_or(0) };
    let RoomReads { first_page, state: start_state, summary, unread } = candidate.reads;
    // What was read ahead was read for a window from the room's start.
    let (first_page, start_state) = match window_after {
        0 => (first_page, start_state),
        _ => (None, None),
    };
    let room_window = RoomWindow { after: window_after, upto, joined: true, state, first_page, start_state };
    let entry = room_entry(pool, user, &room.room_id, room_window, options, ignored, candidate.account_data).await?;
    let mut entry = crate::sync::ephemeral::attach(entry, candidate.ephemeral);
    // What the section filters remove does not count: a room left with nothing is not news.
    if let Some(entry) = &mut entry {
        filters.apply_to_room(entry);
    }
    let known = (pool, user, room.room_id.as_ref());
    let entry = crate::sync::summary::attach(known, entry, (full, window_after, upto), summary).await?;
    let reader = Reader {
        user,
        positions: read_positions.get(key).cloned(),
        ignored,
        threaded: options.unread_thread_notifications,
        window_rows: news.unread_rows(key).or(unread),
    };
    let entry = crate::sync::unread::attach(pool, reader, &room.room_id, entry, upto).await?;
    Ok(entry.filter(|entry| full || !entry.is_quiet).map(|entry| (key.to_owned(), entry.room)))
}

/// A room the user was joined to, or left, at the end of the window.
struct RoomAt {
    room_id: OwnedRoomId,
    /// Position of the member event that set the membership.
    position: i64,
}

/// A room the user was invited to (or knocked on) within the window, with that event.
struct PendingRoom {
    room_id: OwnedRoomId,
    event: MemberEvent,
}

#[derive(Default)]
struct Sections {
    join: Vec<RoomAt>,
    leave: Vec<RoomAt>,
    invite: Vec<PendingRoom>,
    knock: Vec<PendingRoom>,
}

/// Sorts the user's rooms by their membership as of `upto`. Invites, knocks and leaves are
/// listed when their member event is in the window (every one on an initial sync, except
/// leaves: an initial sync leaves out rooms the user has left unless the filter's
/// `include_leave` asks for them). Forgotten rooms never appear.
async fn classify(
    pool: &Store,
    user: &UserId,
    memberships: &[MembershipRow],
    window: SyncWindow,
    options: &SyncOptions,
) -> Result<Sections> {
    let SyncWindow { since, upto } = window;
    let filter = &options.timeline;
    // Rooms left before the window: only where the filter asks for them, and only when the
    // client is (re)learning everything; an incremental sync told it of the leave already.
    let include_left_earlier = options.include_leave && (since.is_none() || options.full_state);
    let mut sections = Sections::default();
    for row in memberships {
        if row.forgotten {
            continue;
        }
        let Ok(room_id) = OwnedRoomId::try_from(row.room_id.as_str()) else { continue };
        if !filter.allows_room(&room_id) {
            continue;
        }
        // The row is the latest membership; when it is newer than the window, look back for
        // the membership the window ends with.
        let (membership, position, event) = if row.stream_position <= upto {
            (row.membership.clone(), row.stream_position, None)
        } else {
            let Some(event) = db::sync::member_event_at(pool, &row.room_id, user.as_str(), upto).await? else {
                continue;
            };
            (membership_of(&event)?, event.stream_position, Some(event))
        };
        let in_window = since.is_none_or(|since| position > since);
        match membership {
            MembershipState::Join => sections.join.push(RoomAt { room_id, position }),
            MembershipState::Leave | MembershipState::Ban if (since.is_some() && in_window) || include_left_earlier => {
                sections.leave.push(RoomAt { room_id, position })
            }
            MembershipState::Invite | MembershipState::Knock if in_window => {
                let event = match event {
                    Some(event) => event,
                    None => db::sync::member_event_at(pool, &row.room_id, user.as_str(), upto)
                        .await?
                        .ok_or_else(|| Error::internal(format!("no member event for {user} in {room_id}")))?,
                };
                let pending = PendingRoom { room_id, event };
                if membership == MembershipState::Invite {
                    sections.invite.push(pending);
                } else {
                    sections.knock.push(pending);
                }
            }
            _ => {}
        }
    }
    Ok(sections)
}

fn membership_of(event: &MemberEvent) -> Result<MembershipState> {
    let pdu = Pdu::from_stored(&event.event_id, &event.json)?;
    Ok(MembershipState::from(pdu.content_value()["membership"].as_str().unwrap_or_default()))
}

/// The user's membership in the room at a position of the stream.
async fn membership_at(pool: &Store, room_id: &str, user: &UserId, position: i64) -> Result<Option<MembershipState>> {
    match db::sync::member_event_at(pool, room_id, user.as_str(), position).await? {
        Some(event) => Ok(Some(membership_of(&event)?)),
        None => Ok(None),
    }
}

/// Whether the user joined the room with `after < position <= upto`.
async fn joined_between(pool: &Store, room_id: &str, user: &UserId, after: i64, upto: i64) -> Result<bool> {
    for event in db::sync::member_events_between(pool, room_id, user.as_str(), after, upto).await? {
        if membership_of(&event)? == MembershipState::Join {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `invite_state` / `knock_state`: stripped state of the room as the member event found it,
/// then the member event itself. `None` for invites from ignored users.
pub(super) async fn stripped_state(
    pool: &Store,
    room_id: &RoomId,
    member: &MemberEvent,
    ignored: &HashSet<String>,
) -> Result<Option<Vec<Value>>> {
    let pdu = Pdu::from_stored(&member.event_id, &member.json)?;
    if pdu.content_value()["membership"] == "invite" && ignored.contains(pdu.sender.as_str()) {
        return Ok(None);
    }
    let keys: Vec<(String, String)> =
        STRIPPED_STATE_TYPES.iter().map(|kind| ((*kind).to_owned(), String::new())).collect();
    let entries = match member.state_after {
        Some(snapshot) => db::state::snapshot_state_for_keys(pool, snapshot, &keys).await?,
        None => {
            // A room this server is not in: what the inviting (or knocked-on) server told of it.
            let mut events = match db::outside_room_state::of_event(pool, member.event_nid).await? {
                Some(Value::Array(events)) => events,
                _ => Vec::new(),
            };
            events.push(stripped(&pdu));
            return Ok(Some(events));
        }
    };
    let mut events: Vec<Pdu> = match crate::rooms::facts::version(pool, room_id).await? {
        // Redacted state shows only what redaction left of it.
        Some(version) => {
            let rules = crate::rooms::rules_for(&version)?;
            served::apply_to_state(pool, &rules.redaction, &entries).await?.into_iter().map(|s| s.pdu).collect()
        }
        None => {
            entries.iter().map(|entry| Pdu::from_stored(&entry.event_id, &entry.json)).collect::<Result<Vec<_>>>()?
        }
    };
    events.sort_by_key(|event| STRIPPED_STATE_TYPES.iter().position(|kind| event.kind.to_string() == *kind));
    events.push(pdu);
    Ok(Some(events.iter().map(stripped).collect()))
}

fn stripped(pdu: &Pdu) -> Value {
    json!({
        "type": pdu.kind.to_string(),
        "state_key": pdu.state_key.clone().unwrap_or_default(),
        "content": pdu.content_value(),
        "sender": pdu.sender,
    })
}
