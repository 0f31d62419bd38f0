//! `send_join`, `send_leave` and `send_knock`, served: the signed membership event a remote
//! server built from our template comes back. It must be what its path says (the member event
//! of a user of the sending server, with the membership the endpoint is for), pass the inbound
//! checks (signatures, hashes, auth against its auth events, the state before it and the current
//! state), and is then appended like any event another server sends. A restricted join that
//! names one of our users as its authoriser is signed by us first, as the auth rules require.
//! A join is answered with the room's state before it and the auth chain of that state, which
//! the joining server checks and builds its copy of the room from.

use crate::db;
use crate::error::{Error, Result};
use crate::federation::inbound::{Accepted, parse_pdu, signing_keys_wanted, verify_pdu};
use crate::federation::membership::keys::KeySource;
use crate::federation::membership::template::RemoteMembership;
use crate::rooms::build::cosign_event;
use crate::rooms::{RoomCtx, rules_for};
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::{EventId, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::value::RawValue as RawJsonValue;

/// What a join is answered with (`send_join` v2's `room_state`).
#[derive(Debug, Default)]
pub struct JoinedRoomState {
    /// The room's state before the join.
    pub state: Vec<Box<RawJsonValue>>,
    /// Every event those and the join cite as auth events, recursively.
    pub auth_chain: Vec<Box<RawJsonValue>>,
    /// The join as we signed it too (restricted joins), which the joining server must use.
    pub event: Option<Box<RawJsonValue>>,
    pub servers_in_room: Vec<String>,
    /// Member events were left out of `state` (the joiner asked for a partial state).
    pub members_omitted: bool,
}

/// Accepts the membership event `origin` sends for `room_id` as `event_id`; a join is
/// answered with the room's full state.
pub async fn send_membership(
    ctx: RoomCtx<'_>,
    keys: &impl KeySource,
    origin: &ServerName,
    ids: (&RoomId, &EventId),
    raw: &RawJsonValue,
    membership: RemoteMembership,
) -> Result<JoinedRoomState> {
    accept_membership(ctx, keys, origin, ids, raw, membership, false).await
}

/// `send_join`: accepts the join; with `omit_members` (the joining server takes a partial
/// state, "faster joins"), the answer leaves out the member events the joiner can do without.
pub async fn send_join(
    ctx: RoomCtx<'_>,
    keys: &impl KeySource,
    origin: &ServerName,
    ids: (&RoomId, &EventId),
    raw: &RawJsonValue,
    omit_members: bool,
) -> Result<JoinedRoomState> {
    accept_membership(ctx, keys, origin, ids, raw, RemoteMembership::Join, omit_members).await
}

async fn accept_membership(
    ctx: RoomCtx<'_>,
    keys: &impl KeySource,
    origin: &ServerName,
    (room_id, event_id): (&RoomId, &EventId),
    raw: &RawJsonValue,
    membership: RemoteMembership,
    omit_members: bool,
) -> Result<JoinedRoomState> {
    let version = db::rooms::version(ctx.pool, room_id.as_str())
        .await?
        .ok_or_else(|| Error::not_found(format!("This server does not know room {room_id}")))?;
    let room_version =
        RoomVersionId::try_from(version.as_str()).map_err(|e| Error::internal(format!("stored room version: {e}")))?;
    let rules = rules_for(&room_version)?;
    let mut object = parse_pdu(&room_version, raw)?;
    let authoriser = check_shape(&object, origin, room_id, membership)?;
    let cosigned = match &authoriser {
        Some(authoriser) if authoriser.server_name() == ctx.server_name => {
            cosign_event(&mut object, &rules, ctx.server_name, ctx.key)?;
            true
        }
        _ => false,
    };
    let wanted = signing_keys_wanted(&object);
    let public_keys = keys.public_keys(&wanted).await;
    let checked = verify_pdu(&room_version, object, &public_keys)?;
    if checked.pdu.event_id != event_id {
        return Err(Error::bad_json(format!("The event's id is {}, not {event_id}", checked.pdu.event_id)));
    }
    if checked.redacted {
        // A membership event whose content does not match its hash would be accepted as a bare
        // membership without what the user meant by it: refuse it, the sender can try again.
        return Err(Error::bad_json("The event's content does not match its hash"));
    }
    match crate::federation::inbound::accept_with_known_parents(ctx, origin, &checked).await? {
        Ok(Accepted::Timeline { .. } | Accepted::AlreadyKnown(_)) => {}
        Ok(Accepted::SoftFailed(_)) => {
            return Err(Error::forbidden("The room's current state does not allow this membership"));
        }
        Err(missing) => {
            return Err(Error::bad_json(format!(
                "The event's prev_events are unknown here ({} of them); ask for a fresh template",
                missing.0.len()
            )));
        }
    }
    if membership != RemoteMembership::Join {
        return Ok(JoinedRoomState::default());
    }
    let members_kept = match omit_members {
        true => Some(KeptMembers {
            joiner: checked.pdu.sender.as_str(),
            authoriser: authoriser.as_ref().map(|user| user.as_str()),
        }),
        false => None,
    };
    let mut answer = state_before(ctx, &checked.pdu.event_id, &checked.pdu.auth_events, members_kept).await?;
    if cosigned {
        answer.event =
            Some(raw_json(&CanonicalJsonValue::Object(ruma::CanonicalJsonObject::clone(checked.pdu.object()?)))?);
    }
    Ok(answer)
}

/// What a membership event must be for the endpoint that received it; the user named by
/// `join_authorised_via_users_server`, if any.
fn check_shape(
    object: &CanonicalJsonObject,
    origin: &ServerName,
    room_id: &RoomId,
    membership: RemoteMembership,
) -> Result<Option<ruma::OwnedUserId>> {
    let text = |key: &str| match object.get(key) {
        Some(CanonicalJsonValue::String(value)) => Some(value.as_str()),
        _ => None,
    };
    if text("type") != Some("m.room.member") {
        return Err(Error::bad_json("The event is not an m.room.member event"));
    }
    if text("room_id") != Some(room_id.as_str()) {
        return Err(Error::bad_json(format!("The event is not for room {room_id}")));
    }
    let sender = text("sender").and_then(|sender| UserId::parse(sender).ok());
    let Some(sender) = sender.filter(|sender| text("state_key") == Some(sender.as_str())) else {
        return Err(Error::bad_json("The member event's state_key must be its sender"));
    };
    if sender.server_name() != origin {
        return Err(Error::forbidden(format!("{origin} may not send a membership event of {sender}")));
    }
    let Some(CanonicalJsonValue::Object(content)) = object.get("content") else {
        return Err(Error::bad_json("The event has no content"));
    };
    if content.get("membership") != Some(&CanonicalJsonValue::String(membership.as_str().to_owned())) {
        return Err(Error::bad_json(format!("The event's membership must be {}", membership.as_str())));
    }
    Ok(match content.get("join_authorised_via_users_server") {
        Some(CanonicalJsonValue::String(user)) => Some(
            UserId::parse(user.as_str())
                .map_err(|_| Error::bad_json("join_authorised_via_users_server is not a user id"))?,
        ),
        _ => None,
    })
}

/// The members whose events a partial-state answer keeps (the spec's `omit_members`).
struct KeptMembers<'a> {
    /// The joining user: an earlier membership of theirs (an invite) authorises the join.
    joiner: &'a str,
    /// The user who authorised a restricted join: their membership is among its auth events.
    authoriser: Option<&'a str>,
}

/// How many members a nameless room's summary names (`m.heroes`), whose member events the
/// joining server needs to name the room.
const HEROES: usize = 5;

impl KeptMembers<'_> {
    /// The state without the member events the joiner can do without: all but the joiner's,
    /// the authoriser's and, in a room with neither name nor canonical alias, the heroes'
    /// (the first few other joined or invited members), as the spec asks.
    fn reduce(&self, state: Vec<db::state::StateEntry>) -> Vec<db::state::StateEntry> {
        let named = state.iter().any(|entry| {
            entry.state_key.is_empty() && matches!(entry.event_type.as_str(), "m.room.name" | "m.room.canonical_alias")
        });
        let mut members: Vec<&db::state::StateEntry> =
            state.iter().filter(|entry| entry.event_type == "m.room.member").collect();
        members.sort_by_key(|entry| entry.event_nid);
        let heroes: Vec<String> = match named {
            true => Vec::new(),
            false => members
                .into_iter()
                .filter(|entry| entry.state_key != self.joiner && is_joined_or_invited(&entry.json))
                .take(HEROES)
                .map(|entry| entry.state_key.clone())
                .collect(),
        };
        state
            .into_iter()
            .filter(|entry| {
                entry.event_type != "m.room.member"
                    || entry.state_key == self.joiner
                    || Some(entry.state_key.as_str()) == self.authoriser
                    || heroes.contains(&entry.state_key)
            })
            .collect()
    }
}

fn is_joined_or_invited(json: &str) -> bool {
    let event: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    matches!(event["content"]["membership"].as_str(), Some("join" | "invite"))
}

/// The state before the event (stored as accepted a moment ago), its auth chain, and the
/// servers of the room's joined members. With `members_kept`, a partial state: member events
/// only of those members, and an auth chain without the events the state already carries.
async fn state_before(
    ctx: RoomCtx<'_>,
    event_id: &EventId,
    auth_events: &[ruma::OwnedEventId],
    members_kept: Option<KeptMembers<'_>>,
) -> Result<JoinedRoomState> {
    let stored = db::events::by_id(ctx.pool, event_id.as_str())
        .await?
        .ok_or_else(|| Error::internal(format!("{event_id} was accepted but is not stored")))?;
    let snapshot = stored.state_before.ok_or_else(|| Error::internal(format!("{event_id} has no state")))?;
    let mut state = db::state::snapshot_state(ctx.pool, snapshot).await?;
    if let Some(kept) = &members_kept {
        state = kept.reduce(state);
    }
    let state_ids: std::collections::HashSet<&str> = state.iter().map(|entry| entry.event_id.as_str()).collect();
    let mut chain_from: Vec<String> = state_ids.iter().map(|id| (*id).to_owned()).collect();
    chain_from.extend(auth_events.iter().map(ToString::to_string));
    let chain_ids: Vec<String> = db::state::auth_graph(ctx.pool, &chain_from)
        .await?
        .into_iter()
        .map(|(event_id, _)| event_id)
        .filter(|event_id| members_kept.is_none() || !state_ids.contains(event_id.as_str()))
        .collect();
    let auth_chain = db::state::event_json(ctx.pool, &chain_ids).await?;
    let room_id = RoomId::parse(&stored.room_id).map_err(|e| Error::internal(format!("stored room id: {e}")))?;
    let servers = crate::federation::query::servers_in_room(ctx.pool, ctx.server_name, &room_id).await?;
    Ok(JoinedRoomState {
        state: state.iter().map(|entry| raw_text(&entry.json)).collect::<Result<_>>()?,
        auth_chain: auth_chain.iter().map(|(_, _, json)| raw_text(json)).collect::<Result<_>>()?,
        event: None,
        servers_in_room: servers.iter().map(ToString::to_string).collect(),
        members_omitted: members_kept.is_some(),
    })
}

fn raw_text(json: &str) -> Result<Box<RawJsonValue>> {
    RawJsonValue::from_string(json.to_owned()).map_err(|e| Error::internal(format!("stored event JSON: {e}")))
}

fn raw_json(value: &CanonicalJsonValue) -> Result<Box<RawJsonValue>> {
    serde_json::value::to_raw_value(value).map_err(|e| Error::internal(format!("serialising an event: {e}")))
}
