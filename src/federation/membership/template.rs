//! `make_join`, `make_leave` and `make_knock`, served: a server whose user wants to change
//! their membership in one of our rooms asks for the event to sign. The template is built as a
//! local event would be (the room's forward extremities as parents, the auth events the room
//! version asks for from the state before it) and checked against the auth rules first, so a
//! user who may not join (banned, not invited, not allowed by a restricted room) learns it
//! before signing anything.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::build::{EventTemplate, Placement, build_unsigned, event_id_of};
use crate::rooms::pdu::Pdu;
use crate::rooms::send::AuthState;
use crate::rooms::{RoomCtx, membership::member_content, restricted, rules_for};
use ruma::api::error::{ErrorKind, IncompatibleRoomVersionErrorData};
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::events::room::member::MembershipState;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, OwnedEventId, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::json;
use serde_json::value::RawValue as RawJsonValue;

/// The spec allows at most this many `prev_events`.
const MAX_PREV_EVENTS: usize = 10;

/// The membership a remote server asks a template for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteMembership {
    Join,
    Leave,
    Knock,
}

impl RemoteMembership {
    pub fn state(self) -> MembershipState {
        match self {
            RemoteMembership::Join => MembershipState::Join,
            RemoteMembership::Leave => MembershipState::Leave,
            RemoteMembership::Knock => MembershipState::Knock,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RemoteMembership::Join => "join",
            RemoteMembership::Leave => "leave",
            RemoteMembership::Knock => "knock",
        }
    }
}

/// What `make_*` answers: the room's version and the event to sign.
pub struct MembershipTemplate {
    pub room_version: RoomVersionId,
    pub event: Box<RawJsonValue>,
}

/// Builds the `membership` event of `user` (a user of `origin`) in `room_id`. `supported` is
/// the `ver` list of `make_join`/`make_knock` (`None` for `make_leave`, which has none).
pub async fn make_membership(
    ctx: RoomCtx<'_>,
    origin: &ServerName,
    room_id: &RoomId,
    user: &UserId,
    membership: RemoteMembership,
    supported: Option<&[RoomVersionId]>,
) -> Result<MembershipTemplate> {
    if user.server_name() != origin {
        return Err(Error::forbidden(format!("{origin} may not ask for a membership event of {user}")));
    }
    // A joining server needs the state this server does not fully have yet: it asks another.
    if membership != RemoteMembership::Leave {
        crate::federation::partial_state::refuse_while_partial(ctx.pool, room_id).await?;
    }
    let version = db::rooms::version(ctx.pool, room_id.as_str())
        .await?
        .ok_or_else(|| Error::not_found(format!("This server does not know room {room_id}")))?;
    let room_version =
        RoomVersionId::try_from(version.as_str()).map_err(|e| Error::internal(format!("stored room version: {e}")))?;
    if supported.is_some_and(|supported| !supported.contains(&room_version)) {
        return Err(Error::new(
            ErrorKind::IncompatibleRoomVersion(IncompatibleRoomVersionErrorData::new(room_version.clone())),
            format!("Room {room_id} is version {room_version}, which your server does not support"),
        ));
    }
    // The remote server fills in the profile; the membership (and for a restricted room, who
    // vouches for the join) is ours to say.
    let mut content = member_content(ctx.pool, user, membership.state(), None).await?;
    if membership == RemoteMembership::Join
        && let Some(authoriser) = restricted::join_authoriser(ctx.pool, ctx.server_name, room_id, user).await?
    {
        content["join_authorised_via_users_server"] = json!(authoriser);
    }
    let template = EventTemplate::state("m.room.member", user.as_str(), content);
    let built = event_on_tip(ctx, room_id, user, &template).await?;
    let event = serde_json::value::to_raw_value(&CanonicalJsonValue::Object(built.object))
        .map_err(|e| Error::internal(format!("serialising a template: {e}")))?;
    Ok(MembershipTemplate { room_version: built.room_version, event })
}

/// An event built on the room's current forward extremities and allowed by the auth rules
/// against the state there, not yet hashed, signed or stored.
pub struct EventOnTip {
    pub room_version: RoomVersionId,
    pub rules: RoomVersionRules,
    pub object: CanonicalJsonObject,
}

/// Builds `template` as `sender`'s next event in `room_id` (as the send path would place it)
/// without storing it: for an event another server must see or sign first. A membership
/// action is also held to what the target's current membership allows.
pub async fn event_on_tip(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    sender: &UserId,
    template: &EventTemplate,
) -> Result<EventOnTip> {
    let mut conn = ctx.pool.acquire().await?;
    let tip = db::events::room_tip(&mut *conn, room_id.as_str(), ctx.server_name.as_str(), None).await?;
    let version = tip.version.ok_or_else(|| Error::not_found(format!("This server does not know room {room_id}")))?;
    let room_version =
        RoomVersionId::try_from(version.as_str()).map_err(|e| Error::internal(format!("stored room version: {e}")))?;
    let rules = rules_for(&room_version)?;
    let prev = &tip.extremities[..tip.extremities.len().min(MAX_PREV_EVENTS)];
    if prev.is_empty() {
        return Err(Error::not_found(format!("This server is not in room {room_id}")));
    }
    let mut parent_states: Vec<i64> = prev.iter().map(|extremity| extremity.state_after).collect();
    parent_states.sort_unstable();
    parent_states.dedup();
    let state_before = match parent_states.as_slice() {
        [single] => *single,
        _ => crate::rooms::resolve::resolve_snapshots(&mut conn, room_id, &rules, &parent_states).await?,
    };
    let depth = prev.iter().map(|extremity| extremity.depth).max().unwrap_or(0) as u64 + 1;

    let auth_state = AuthState::load(&mut conn, state_before, template, sender, &rules).await?;
    if let (Some(action), Some(target)) = (template.membership_action, &template.state_key) {
        action.check(auth_state.state_event("m.room.member", target))?;
    }
    let prev_events: Vec<OwnedEventId> = prev.iter().filter_map(|e| EventId::parse(&e.event_id).ok()).collect();
    let placement =
        Placement { room_id: Some(room_id), prev_events: &prev_events, auth_events: &auth_state.auth_event_ids, depth };
    let object = build_unsigned(template, sender, &placement, &rules)?;

    // Would the event be allowed? The id is only needed to run the auth rules.
    let event_id = event_id_of(&object, &rules)?;
    let candidate = Pdu::from_canonical(event_id, object.clone())?;
    auth_state.authorize(&candidate, &rules)?;
    Ok(EventOnTip { room_version, rules, object })
}
