//! Reading rooms: single events, state, history pages, membership lists — each through the
//! history-visibility rules, so a user never sees an event the rules hide from them.

use crate::db;
use crate::db::events::StoredEvent;
use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use ruma::{RoomId, UserId};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;

/// What the history-visibility rules need to know about one state snapshot.
struct VisibilityAt {
    visibility: String,
    membership: Option<String>,
}

async fn visibility_at(pool: &PgPool, snapshot: i64, user: &UserId) -> Result<VisibilityAt> {
    let keys =
        vec![("m.room.history_visibility".to_owned(), String::new()), ("m.room.member".to_owned(), user.to_string())];
    let entries = db::state::snapshot_state_for_keys(pool, snapshot, &keys).await?;
    let mut visibility = "shared".to_owned();
    let mut membership = None;
    for entry in entries {
        let content = Pdu::from_stored(&entry.event_id, &entry.json)?.content_value();
        if entry.event_type == "m.room.history_visibility" {
            if let Some(value) = content["history_visibility"].as_str() {
                visibility = value.to_owned();
            }
        } else {
            membership = content["membership"].as_str().map(str::to_owned);
        }
    }
    Ok(VisibilityAt { visibility, membership })
}

/// Filters events down to those `user` may see (spec: "History visibility"). `currently_joined`
/// is the user's membership now, which the `shared` setting consults.
async fn visible(
    pool: &PgPool,
    user: &UserId,
    currently_joined: bool,
    events: Vec<StoredEvent>,
) -> Result<Vec<(StoredEvent, Pdu)>> {
    let mut cache: HashMap<i64, VisibilityAt> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let pdu = Pdu::from_stored(&event.event_id, &event.json)?;
        let Some(snapshot) = event.state_before else { continue };
        let at = match cache.entry(snapshot) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(visibility_at(pool, snapshot, user).await?)
            }
        };
        // A user's own membership event shows their membership as it becomes.
        let membership = if pdu.kind.to_string() == "m.room.member" && pdu.state_key.as_deref() == Some(user.as_str()) {
            pdu.content_value()["membership"].as_str().map(str::to_owned)
        } else {
            at.membership.clone()
        };
        let allowed = match at.visibility.as_str() {
            "world_readable" => true,
            _ if membership.as_deref() == Some("join") => true,
            "shared" => currently_joined,
            "invited" => membership.as_deref() == Some("invite"),
            _ => false,
        };
        if allowed {
            out.push((event, pdu));
        }
    }
    Ok(out)
}

async fn current_membership(pool: &PgPool, room_id: &RoomId, user: &UserId) -> Result<Option<String>> {
    Ok(db::rooms::membership(pool, room_id.as_str(), user.as_str()).await?.map(|m| m.membership))
}

async fn ensure_room(pool: &PgPool, room_id: &RoomId) -> Result<()> {
    if db::rooms::version(pool, room_id.as_str()).await?.is_none() {
        return Err(Error::not_found(format!("Unknown room {room_id}")));
    }
    Ok(())
}

/// `GET /rooms/{roomId}/event/{eventId}`.
pub async fn event(pool: &PgPool, user: &UserId, room_id: &RoomId, event_id: &str) -> Result<Value> {
    let not_found = || Error::not_found("Event not found");
    let stored = db::events::by_id(pool, event_id).await?.ok_or_else(not_found)?;
    if stored.room_id != room_id.as_str() {
        return Err(not_found());
    }
    let joined = current_membership(pool, room_id, user).await?.as_deref() == Some("join");
    let mut visible = visible(pool, user, joined, vec![stored]).await?;
    let (_, pdu) = visible.pop().ok_or_else(not_found)?;
    Ok(pdu.to_client_event(room_id))
}

/// The state a user may see: the current state while joined; the state when they left for
/// former members; the current state of a world-readable room for anyone.
async fn readable_state(pool: &PgPool, user: &UserId, room_id: &RoomId) -> Result<Vec<db::state::StateEntry>> {
    ensure_room(pool, room_id).await?;
    let membership = db::rooms::membership(pool, room_id.as_str(), user.as_str()).await?;
    if membership.as_ref().is_some_and(|m| m.membership == "join") {
        return Ok(db::state::current_state(pool, room_id.as_str()).await?);
    }
    let world_readable = db::state::current_state_event(pool, room_id.as_str(), "m.room.history_visibility", "")
        .await?
        .map(|entry| Pdu::from_stored(&entry.event_id, &entry.json).map(|pdu| pdu.content_value()))
        .transpose()?
        .is_some_and(|content| content["history_visibility"] == "world_readable");
    if world_readable {
        return Ok(db::state::current_state(pool, room_id.as_str()).await?);
    }
    if let Some(m) = membership.filter(|m| m.membership == "leave" || m.membership == "ban") {
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
pub async fn state(pool: &PgPool, user: &UserId, room_id: &RoomId) -> Result<Vec<Value>> {
    let entries = readable_state(pool, user, room_id).await?;
    entries
        .into_iter()
        .map(|entry| Pdu::from_stored(&entry.event_id, &entry.json).map(|pdu| pdu.to_client_event(room_id)))
        .collect()
}

/// `GET /rooms/{roomId}/state/{eventType}/{stateKey}`: the event's content.
pub async fn state_event(
    pool: &PgPool,
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
    Ok(Pdu::from_stored(&entry.event_id, &entry.json)?.content_value())
}

/// A page of history.
pub struct Page {
    pub chunk: Vec<Value>,
    pub start: String,
    pub end: Option<String>,
}

/// Pagination tokens are stream positions: `s{N}` is the point just after the event at N.
pub fn parse_token(token: &str) -> Result<i64> {
    token
        .strip_prefix('s')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| Error::invalid_param(format!("Invalid pagination token {token:?}")))
}

/// `GET /rooms/{roomId}/messages`.
pub async fn messages(
    pool: &PgPool,
    user: &UserId,
    room_id: &RoomId,
    from: Option<&str>,
    to: Option<&str>,
    backwards: bool,
    limit: usize,
) -> Result<Page> {
    ensure_room(pool, room_id).await?;
    let membership = current_membership(pool, room_id, user).await?;
    let world_readable = db::state::current_state_event(pool, room_id.as_str(), "m.room.history_visibility", "")
        .await?
        .map(|entry| Pdu::from_stored(&entry.event_id, &entry.json).map(|pdu| pdu.content_value()))
        .transpose()?
        .is_some_and(|content| content["history_visibility"] == "world_readable");
    if membership.is_none() && !world_readable {
        return Err(Error::forbidden("You are not a member of this room"));
    }
    let joined = membership.as_deref() == Some("join");
    let from = match from {
        Some(token) => parse_token(token)?,
        None if backwards => db::events::max_stream_position(pool).await?,
        None => 0,
    };
    let to = to.map(parse_token).transpose()?;
    let limit = limit.clamp(1, 1000);
    let events = db::events::timeline_page(pool, room_id.as_str(), from, backwards, to, limit as i64).await?;
    let fetched = events.len();
    let last_position = events.last().and_then(|event| event.stream_position);
    let visible = visible(pool, user, joined, events).await?;
    let chunk = visible.iter().map(|(_, pdu)| pdu.to_client_event(room_id)).collect();
    let end = match last_position {
        Some(position) if fetched == limit => Some(if backwards { position - 1 } else { position }),
        _ => None,
    };
    Ok(Page { chunk, start: format!("s{from}"), end: end.map(|n| format!("s{n}")) })
}

/// `GET /joined_rooms`.
pub async fn joined_rooms(pool: &PgPool, user: &UserId) -> Result<Vec<String>> {
    Ok(db::rooms::joined_rooms(pool, user.as_str()).await?)
}

/// `GET /rooms/{roomId}/joined_members`: for members only.
pub async fn joined_members(pool: &PgPool, user: &UserId, room_id: &RoomId) -> Result<Vec<(String, Value)>> {
    ensure_room(pool, room_id).await?;
    if current_membership(pool, room_id, user).await?.as_deref() != Some("join") {
        return Err(Error::forbidden("You are not a member of this room"));
    }
    let state = db::state::current_state(pool, room_id.as_str()).await?;
    let mut members = Vec::new();
    for entry in state.into_iter().filter(|entry| entry.event_type == "m.room.member") {
        let content = Pdu::from_stored(&entry.event_id, &entry.json)?.content_value();
        if content["membership"] == "join" {
            members.push((entry.state_key, content));
        }
    }
    members.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(members)
}
