//! Serving the room DAG to other servers: single events, the state at an event (whole or as
//! ids), auth chains, backfill, missing events and the event closest to a time. Each only to a
//! server the room's ACL admits and that is in the room now (or the room is world-readable),
//! and each event as the server may see it (spec: "history visibility" for servers, as
//! Synapse's `filter_events_for_server`): one whose visibility at it was `joined` or `invited`
//! is served redacted to a server none of whose users was joined (or invited) then.

use crate::db;
use crate::db::federation_inbound::ServableEvent;
use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use crate::rooms::{facts, served};
use crate::store::Store;
use ruma::events::room::history_visibility::HistoryVisibility;
use ruma::events::room::member::MembershipState;
use ruma::{RoomId, ServerName};
use serde_json::value::RawValue as RawJsonValue;
use std::collections::{HashMap, HashSet};

/// Events one backfill or missing-events request answers with at most.
const MAX_EVENTS: usize = 100;

/// A server asking about a room: what it may be told.
pub struct ServerView<'a> {
    pool: &'a Store,
    server: &'a ServerName,
    room_id: &'a RoomId,
    /// Per state snapshot: whether the server may see the events at it.
    seen_at: HashMap<i64, bool>,
}

impl<'a> ServerView<'a> {
    /// Refuses (`M_FORBIDDEN`) a server the ACL denies, or that has no user in the room when
    /// the room is not world-readable.
    pub async fn new(pool: &'a Store, server: &'a ServerName, room_id: &'a RoomId) -> Result<ServerView<'a>> {
        crate::federation::acl::check(pool, room_id, server).await?;
        if db::rooms::version(pool, room_id.as_str()).await?.is_none() {
            return Err(Error::not_found(format!("Room {room_id} is not known here")));
        }
        if !db::federation_inbound::server_joined(pool, room_id.as_str(), server.as_str()).await?
            && !crate::rooms::visibility::world_readable(pool, room_id).await?
        {
            return Err(Error::forbidden(format!("{server} is not in room {room_id}")));
        }
        Ok(ServerView { pool, server, room_id, seen_at: HashMap::new() })
    }

    /// Whether the server may see the events whose state (after them) is `snapshot` whole.
    async fn sees(&mut self, snapshot: i64) -> Result<bool> {
        if let Some(known) = self.seen_at.get(&snapshot) {
            return Ok(*known);
        }
        let visibility = facts::history_visibility(self.pool, snapshot).await?;
        let seen = match visibility {
            HistoryVisibility::Joined | HistoryVisibility::Invited => {
                let suffix = format!(":{}", self.server);
                let state = db::state::snapshot_state(self.pool, snapshot).await?;
                let memberships = state
                    .iter()
                    .filter(|entry| entry.event_type == "m.room.member" && entry.state_key.ends_with(&suffix))
                    .filter_map(|entry| Pdu::from_stored(&entry.event_id, &entry.json).ok())
                    .map(|pdu| MembershipState::from(pdu.content_value()["membership"].as_str().unwrap_or_default()));
                let admitted: &[MembershipState] = if visibility == HistoryVisibility::Invited {
                    &[MembershipState::Join, MembershipState::Invite]
                } else {
                    &[MembershipState::Join]
                };
                memberships.into_iter().any(|membership| admitted.contains(&membership))
            }
            _ => true,
        };
        self.seen_at.insert(snapshot, seen);
        Ok(seen)
    }

    /// The events as the server may see them, as PDUs (redacted where it may not).
    async fn pdus(&mut self, events: Vec<ServableEvent>) -> Result<Vec<Box<RawJsonValue>>> {
        let rules = facts::rules(self.pool, self.room_id).await?;
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            if event.room_id != self.room_id.as_str() {
                continue;
            }
            // Outliers have no known state: they are auth and state events, served as they are.
            let whole = match event.state_after {
                Some(snapshot) => self.sees(snapshot).await?,
                None => true,
            };
            let json = if whole {
                event.json
            } else {
                served::redacted(&Pdu::from_stored(&event.event_id, &event.json)?, &rules.redaction)?.canonical_json()
            };
            out.push(RawJsonValue::from_string(json).map_err(|e| Error::internal(format!("stored event: {e}")))?);
        }
        Ok(out)
    }

    /// One event of the room, stored and not rejected, that the server may see whole.
    async fn visible_event(&mut self, event_id: &str) -> Result<ServableEvent> {
        let event = db::federation_inbound::servable_events(self.pool, &[event_id.to_owned()])
            .await?
            .pop()
            .filter(|event| event.room_id == self.room_id.as_str())
            .ok_or_else(|| Error::not_found(format!("Event {event_id} is not known in {}", self.room_id)))?;
        if let Some(snapshot) = event.state_after
            && !self.sees(snapshot).await?
        {
            return Err(Error::forbidden(format!("{} may not see {event_id}", self.server)));
        }
        Ok(event)
    }
}

/// `GET /event/{eventId}`: the event as `server` may see it.
pub async fn event(pool: &Store, server: &ServerName, event_id: &str) -> Result<Box<RawJsonValue>> {
    let event = db::federation_inbound::servable_events(pool, &[event_id.to_owned()])
        .await?
        .pop()
        .ok_or_else(|| Error::not_found(format!("Event {event_id} is not known here")))?;
    let room_id = RoomId::parse(&event.room_id).map_err(|e| Error::internal(format!("stored room id: {e}")))?;
    let mut view = ServerView::new(pool, server, &room_id).await?;
    view.pdus(vec![event]).await?.pop().ok_or_else(|| Error::not_found(format!("Event {event_id} is not known here")))
}

/// The state before an event and the auth chain of that state, as ids.
pub struct StateAt {
    pub state: Vec<String>,
    pub auth_chain: Vec<String>,
}

/// `GET /state_ids/{roomId}?event_id=`: the state before the event, and its auth chain.
pub async fn state_ids(pool: &Store, server: &ServerName, room_id: &RoomId, event_id: &str) -> Result<StateAt> {
    crate::federation::partial_state::refuse_while_partial(pool, room_id).await?;
    let mut view = ServerView::new(pool, server, room_id).await?;
    let event = view.visible_event(event_id).await?;
    let snapshot =
        event.state_before.ok_or_else(|| Error::not_found(format!("The state at {event_id} is not known here")))?;
    let state: Vec<String> =
        db::state::snapshot_state(pool, snapshot).await?.into_iter().map(|entry| entry.event_id).collect();
    let auth_chain = auth_ancestors(pool, room_id, &state).await?;
    Ok(StateAt { state, auth_chain })
}

/// `GET /state/{roomId}?event_id=`: as [`state_ids`], the events themselves.
pub async fn state(
    pool: &Store,
    server: &ServerName,
    room_id: &RoomId,
    event_id: &str,
) -> Result<(Vec<Box<RawJsonValue>>, Vec<Box<RawJsonValue>>)> {
    let ids = state_ids(pool, server, room_id, event_id).await?;
    let mut view = ServerView::new(pool, server, room_id).await?;
    let state = view.pdus(db::federation_inbound::servable_events(pool, &ids.state).await?).await?;
    let auth_chain = view.pdus(db::federation_inbound::servable_events(pool, &ids.auth_chain).await?).await?;
    Ok((state, auth_chain))
}

/// `GET /event_auth/{roomId}/{eventId}`: the event's auth chain.
pub async fn event_auth(
    pool: &Store,
    server: &ServerName,
    room_id: &RoomId,
    event_id: &str,
) -> Result<Vec<Box<RawJsonValue>>> {
    let mut view = ServerView::new(pool, server, room_id).await?;
    view.visible_event(event_id).await?;
    let chain = auth_ancestors(pool, room_id, &[event_id.to_owned()]).await?;
    view.pdus(db::federation_inbound::servable_events(pool, &chain).await?).await
}

/// The auth ancestors of the given events of `room_id` (not the events themselves, unless
/// one is an ancestor of another).
async fn auth_ancestors(pool: &Store, room_id: &RoomId, event_ids: &[String]) -> Result<Vec<String>> {
    let graph = db::state::auth_graph(pool, event_ids).await?;
    let mut ancestors: HashSet<String> = graph.into_iter().flat_map(|(_, auth)| auth).collect();
    // Since room version 12 no event names the create event among its auth events, yet every
    // auth check needs it: the chain carries it (its id is the room id's).
    if facts::rules(pool, room_id).await?.authorization.room_create_event_id_as_room_id {
        ancestors.insert(format!("${}", &room_id.as_str()[1..]));
    }
    Ok(ancestors.into_iter().collect())
}

/// `GET /backfill/{roomId}?v=&limit=`: the events `from` and before them (following
/// `prev_events`), newest first, at most `limit` (capped at 100).
pub async fn backfill(
    pool: &Store,
    server: &ServerName,
    room_id: &RoomId,
    from: &[String],
    limit: usize,
) -> Result<Vec<Box<RawJsonValue>>> {
    crate::federation::partial_state::refuse_while_partial(pool, room_id).await?;
    let mut view = ServerView::new(pool, server, room_id).await?;
    let limit = limit.clamp(1, MAX_EVENTS);
    let start = db::federation_inbound::servable_events(pool, from).await?;
    let events = walk_back(pool, room_id, start, &HashSet::new(), limit).await?;
    view.pdus(events).await
}

/// `POST /get_missing_events/{roomId}`: the events before `latest` (not including them) back
/// to `earliest` (excluded), at least `min_depth` deep, at most `limit` (capped at 100),
/// oldest first.
pub async fn missing_events(
    pool: &Store,
    server: &ServerName,
    room_id: &RoomId,
    earliest: &[String],
    latest: &[String],
    limit: usize,
    min_depth: i64,
) -> Result<Vec<Box<RawJsonValue>>> {
    let mut view = ServerView::new(pool, server, room_id).await?;
    let limit = limit.clamp(1, MAX_EVENTS);
    let latest = db::federation_inbound::servable_events(pool, latest).await?;
    let latest_nids: Vec<i64> = latest.iter().filter(|e| e.room_id == room_id.as_str()).map(|e| e.event_nid).collect();
    let start = db::federation_inbound::servable_parents(pool, &latest_nids).await?;
    let stop: HashSet<String> = earliest.iter().cloned().collect();
    let mut events = walk_back(pool, room_id, start, &stop, limit).await?;
    events.retain(|event| event.depth >= min_depth);
    events.reverse();
    view.pdus(events).await
}

/// Breadth-first along `prev_events` from `start` (included), skipping `stop`, deepest
/// first, until `limit` events are found.
async fn walk_back(
    pool: &Store,
    room_id: &RoomId,
    start: Vec<ServableEvent>,
    stop: &HashSet<String>,
    limit: usize,
) -> Result<Vec<ServableEvent>> {
    let mut seen: HashSet<i64> = HashSet::new();
    let mut found: Vec<ServableEvent> = Vec::new();
    let mut frontier: Vec<ServableEvent> = start;
    while !frontier.is_empty() && found.len() < limit {
        frontier.retain(|event| event.room_id == room_id.as_str() && !stop.contains(&event.event_id));
        frontier.retain(|event| seen.insert(event.event_nid));
        frontier.sort_by_key(|event| std::cmp::Reverse(event.depth));
        let nids: Vec<i64> = frontier.iter().map(|event| event.event_nid).collect();
        found.extend(frontier.into_iter().take(limit - found.len()));
        if found.len() >= limit || nids.is_empty() {
            break;
        }
        frontier = db::federation_inbound::servable_parents(pool, &nids).await?;
    }
    found.sort_by_key(|event| std::cmp::Reverse(event.depth));
    Ok(found)
}

/// `GET /timestamp_to_event/{roomId}?ts=&dir=`: the room's event closest to `ts` that way.
pub async fn timestamp_to_event(
    pool: &Store,
    server: &ServerName,
    room_id: &RoomId,
    ts: i64,
    forwards: bool,
) -> Result<(String, i64)> {
    ServerView::new(pool, server, room_id).await?;
    db::federation_inbound::closest_to_ts(pool, room_id.as_str(), ts, forwards)
        .await?
        .ok_or_else(|| Error::not_found(format!("No event of {room_id} is on that side of {ts}")))
}
