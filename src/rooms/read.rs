//! Reading rooms: single events, state, history pages, membership lists — each through the
//! history-visibility rules, so a user never sees an event the rules hide from them.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::facts;
use crate::rooms::filter::EventFilter;
use crate::rooms::pagination::{page_token, parse_token};
use crate::rooms::pdu::Pdu;
use crate::rooms::served;
use crate::rooms::visibility::{Viewer, visible, world_readable};
use crate::store::Store;
use crate::users::ignore;
use ruma::events::room::member::MembershipState;
use ruma::{RoomId, UserId};
use serde_json::Value;
use std::collections::HashMap;

async fn current_membership(pool: &Store, room_id: &RoomId, user: &UserId) -> Result<Option<MembershipState>> {
    Ok(db::rooms::membership(pool, room_id.as_str(), user.as_str()).await?.map(|m| m.membership))
}

async fn ensure_room(pool: &Store, room_id: &RoomId) -> Result<()> {
    if facts::version(pool, room_id).await?.is_none() {
        return Err(Error::not_found(format!("Unknown room {room_id}")));
    }
    Ok(())
}

/// `GET /rooms/{roomId}/event/{eventId}`.
pub(crate) async fn event(pool: &Store, user: &UserId, room_id: &RoomId, event_id: &str) -> Result<Value> {
    let not_found = || Error::not_found("Event not found");
    let stored = db::events::by_id(pool, event_id).await?.ok_or_else(not_found)?;
    if stored.room_id != room_id.as_str() {
        return Err(not_found());
    }
    let viewer = Viewer::new(pool, user, room_id).await?;
    let visible = viewer.visible(vec![stored]).await?;
    if visible.is_empty() {
        return Err(not_found());
    }
    // Redacted if redacted, with bundled aggregations.
    viewer.serve(visible).await?.pop().ok_or_else(not_found)
}

/// The state a user may see: the current state while joined; the state when they left for
/// former members; the current state of a world-readable room for anyone.
pub(crate) async fn readable_state(
    pool: &Store,
    user: &UserId,
    room_id: &RoomId,
) -> Result<Vec<db::state::StateEntry>> {
    ensure_room(pool, room_id).await?;
    let membership = db::rooms::membership(pool, room_id.as_str(), user.as_str()).await?;
    if membership.as_ref().is_some_and(|m| m.membership == MembershipState::Join) {
        return Ok(db::state::current_state(pool, room_id.as_str()).await?);
    }
    let world_readable = world_readable(pool, room_id).await?;
    if world_readable {
        return Ok(db::state::current_state(pool, room_id.as_str()).await?);
    }
    if let Some(m) =
        membership.filter(|m| m.membership == MembershipState::Leave || m.membership == MembershipState::Ban)
    {
        // Former members see the room as it was when they left.
        let left = db::rooms::membership_event_state_after(pool, room_id.as_str(), user.as_str()).await?;
        if let Some(snapshot) = left {
            let _ = m;
            return Ok(db::state::snapshot_state(pool, snapshot).await?);
        }
    }
    Err(Error::forbidden("You are not a member of this room"))
}

/// `GET /rooms/{roomId}/state`.
pub(crate) async fn state(pool: &Store, user: &UserId, room_id: &RoomId) -> Result<Vec<Value>> {
    let entries = readable_state(pool, user, room_id).await?;
    let rules = facts::rules(pool, room_id).await?;
    let served = served::apply_to_state(pool, &rules.redaction, &entries).await?;
    Ok(served.iter().map(|event| event.client_event(room_id)).collect())
}

/// `GET /rooms/{roomId}/state/{eventType}/{stateKey}`: the event's content.
pub(crate) async fn state_event(
    pool: &Store,
    user: &UserId,
    room_id: &RoomId,
    event_type: &str,
    state_key: &str,
) -> Result<Value> {
    let entries = readable_state(pool, user, room_id).await?;
    let entry = entries
        .into_iter()
        .find(|entry| entry.event_type == event_type && entry.state_key == state_key)
        .ok_or_else(|| Error::not_found(format!("No {event_type} state with key {state_key:?}")))?;
    // A redacted state event stays in the state, with what redaction left of its content.
    let rules = facts::rules(pool, room_id).await?;
    let served = served::apply_to_state(pool, &rules.redaction, std::slice::from_ref(&entry)).await?;
    let pdu = served.into_iter().next().ok_or_else(|| Error::internal("state entry vanished"))?.pdu;
    Ok(pdu.content_value())
}

/// A page of history.
pub(crate) struct Page {
    pub chunk: Vec<Value>,
    pub start: String,
    pub end: Option<String>,
    /// Member events of the chunk's senders, when the filter lazy-loads members.
    pub state: Vec<Value>,
}

/// What a `/messages` request asks for.
#[derive(Clone, Copy)]
pub(crate) struct HistoryRequest<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub backwards: bool,
    pub limit: usize,
    pub filter: &'a EventFilter,
}

/// `GET /rooms/{roomId}/messages`.
pub(crate) async fn messages(
    pool: &Store,
    user: &UserId,
    room_id: &RoomId,
    request: HistoryRequest<'_>,
) -> Result<Page> {
    history_page(pool, user, room_id, request, Access::Member).await
}

/// `GET /_synapse/admin/v1/rooms/{roomId}/messages`: a page of history as `/messages` serves
/// it, for a server admin, whatever their membership and the room's history visibility.
pub(crate) async fn messages_as_admin(
    pool: &Store,
    admin: &UserId,
    room_id: &RoomId,
    request: HistoryRequest<'_>,
) -> Result<Page> {
    history_page(pool, admin, room_id, request, Access::Admin).await
}

/// Who reads a history page: a user, through membership, history visibility and their
/// ignore list; or a server admin, who sees every event.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Access {
    Member,
    Admin,
}

async fn history_page(
    pool: &Store,
    user: &UserId,
    room_id: &RoomId,
    request: HistoryRequest<'_>,
    access: Access,
) -> Result<Page> {
    let HistoryRequest { from, to, backwards, limit, filter } = request;
    ensure_room(pool, room_id).await?;
    let membership = current_membership(pool, room_id, user).await?;
    if access == Access::Member && membership.is_none() && !world_readable(pool, room_id).await? {
        return Err(Error::forbidden("You are not a member of this room"));
    }
    let joined = membership == Some(MembershipState::Join);
    let from = match from {
        Some(token) => parse_token(token)?,
        None if backwards => db::events::max_stream_position(pool).await?,
        None => 0,
    };
    let to = to.map(parse_token).transpose()?;
    let limit = limit.clamp(1, 1000);
    let only = filter.type_and_sender_match().unwrap_or_default();
    let events =
        db::events::timeline_page_matching(pool, room_id.as_str(), from, backwards, to, limit as i64, &only).await?;
    let fetched = events.len();
    let last_position = events.last().and_then(|event| event.stream_position);
    let visible = match access {
        Access::Member => visible(pool, user, joined, events).await?,
        Access::Admin => crate::rooms::visibility::unfiltered(pool, events)?,
    };
    // A filtered page may hold fewer than `limit` events; `end` still continues after the
    // last event examined, so clients page on.
    // Ignored users' events go too, read afresh per request so (un)ignoring applies at once.
    let ignored = match access {
        Access::Member => ignore::ignored_users(pool, user).await?,
        Access::Admin => Default::default(),
    };
    let visible: Vec<_> = visible
        .into_iter()
        .filter(|(_, pdu)| filter.allows(pdu) && !crate::rooms::visibility::hidden_by_ignore(&ignored, pdu))
        .collect();
    let senders: Vec<String> = visible.iter().map(|(_, pdu)| pdu.sender.to_string()).collect();
    let chunk = Viewer::new(pool, user, room_id).await?.serve(visible).await?;
    let end = match last_position {
        Some(position) if fetched == limit => Some(if backwards { position - 1 } else { position }),
        _ => None,
    };
    let state = if filter.lazy_load_members { member_events(pool, room_id, senders).await? } else { Vec::new() };
    Ok(Page { chunk, start: page_token(from), end: end.map(page_token), state })
}

/// The current member events of `users` (lazy-loaded members). Every page carries them in
/// full: the spec lets servers ignore `include_redundant_members: false`.
async fn member_events(pool: &Store, room_id: &RoomId, mut users: Vec<String>) -> Result<Vec<Value>> {
    users.sort_unstable();
    users.dedup();
    let mut entries = Vec::new();
    for user in users {
        if let Some(entry) = db::state::current_state_event(pool, room_id.as_str(), "m.room.member", &user).await? {
            entries.push(entry);
        }
    }
    let rules = facts::rules(pool, room_id).await?;
    let served = served::apply_to_state(pool, &rules.redaction, &entries).await?;
    Ok(served.iter().map(|served| served.client_event(room_id)).collect())
}

/// The events of `types` in `rooms` that reached the timeline in `(after, upto]`, oldest
/// first: what a live reader that is not `/sync` (the XMPP edge) delivers next.
pub(crate) async fn timeline_between(
    pool: &Store,
    rooms: &[String],
    types: &[&str],
    after: i64,
    upto: i64,
) -> Result<Vec<db::events::StoredEvent>> {
    if rooms.is_empty() || after >= upto {
        return Ok(Vec::new());
    }
    Ok(db::events::timeline_between(pool, rooms, types, after, upto).await?)
}

/// The stream position of `event_id` in `room_id`: where an edge that pages by event (XMPP's
/// MAM, whose page bounds are archive ids) continues from. What the page then shows is
/// decided by [`messages`], which checks the reader.
pub(crate) async fn event_position(pool: &Store, room_id: &RoomId, event_id: &str) -> Result<i64> {
    let event = db::events::by_id(pool, event_id).await?.filter(|event| event.room_id == room_id.as_str());
    event.and_then(|event| event.stream_position).ok_or_else(|| Error::not_found("No such event in this room"))
}

/// `GET /joined_rooms`.
pub(crate) async fn joined_rooms(pool: &Store, user: &UserId) -> Result<Vec<String>> {
    Ok(db::rooms::joined_rooms(pool, user.as_str()).await?)
}

/// `GET /rooms/{roomId}/joined_members`: for members only.
pub(crate) async fn joined_members(pool: &Store, user: &UserId, room_id: &RoomId) -> Result<Vec<(String, Value)>> {
    ensure_room(pool, room_id).await?;
    if current_membership(pool, room_id, user).await? != Some(MembershipState::Join) {
        return Err(Error::forbidden("You are not a member of this room"));
    }
    let state = db::state::current_state(pool, room_id.as_str()).await?;
    let member_events: Vec<_> = state.into_iter().filter(|entry| entry.event_type == "m.room.member").collect();
    // A redacted member event keeps the membership but no longer shows a profile.
    let rules = facts::rules(pool, room_id).await?;
    let served = served::apply_to_state(pool, &rules.redaction, &member_events).await?;
    let mut members = Vec::new();
    for (entry, served) in member_events.into_iter().zip(served) {
        let content = served.pdu.content_value();
        if content["membership"] == "join" {
            members.push((entry.state_key, content));
        }
    }
    members.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(members)
}

/// Events by number in the client format (redacted where a redaction applies), for readers
/// that already know the user may see them (the user's own notifications). Events not found
/// are left out.
pub(crate) async fn client_events_by_nid(pool: &Store, nids: &[i64]) -> Result<HashMap<i64, Value>> {
    let mut by_room: HashMap<String, Vec<(i64, Pdu)>> = HashMap::new();
    for event in db::events::by_nids(pool, nids).await? {
        let pdu = Pdu::from_stored(&event.event_id, &event.json)?;
        by_room.entry(event.room_id).or_default().push((event.event_nid, pdu));
    }
    let mut client_events = HashMap::new();
    for (room_id, events) in by_room {
        let room_id = RoomId::parse(&room_id).map_err(|e| Error::internal(format!("stored room id: {e}")))?;
        let rules = facts::rules(pool, &room_id).await?;
        for event in served::apply(pool, &rules.redaction, events).await? {
            client_events.insert(event.event_nid, event.client_event(&room_id));
        }
    }
    Ok(client_events)
}
