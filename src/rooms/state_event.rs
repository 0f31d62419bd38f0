//! `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`: a client sets a piece of room state.
//! The auth rules decide who may; the rules the spec adds for particular types (the aliases
//! `m.room.canonical_alias` may list) and what the membership endpoints ask of an invitation
//! are checked here, so every way of setting state — the client API, the admin API, XMPP — is
//! held to them. State sent again unchanged is answered with the event that stands.

use crate::error::Result;
use crate::rooms::RoomCtx;
use crate::rooms::build::EventTemplate;
use crate::rooms::membership::ensure_invitable;
use crate::rooms::membership_action::MembershipAction;
use crate::rooms::send::append;
use crate::rooms::{aliases, unchanged};
use ruma::events::StateEventType;
use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::Value;

pub(crate) async fn send_state_event(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    sender: &UserId,
    event_type: &StateEventType,
    state_key: &str,
    content: Value,
) -> Result<OwnedEventId> {
    if *event_type == StateEventType::RoomCanonicalAlias {
        aliases::validate_canonical_alias(ctx.pool, ctx.server_name, room_id, state_key, &content).await?;
    }
    let kind = event_type.to_string();
    if let Some(standing) = unchanged::standing_event(ctx.pool, room_id, sender, (&kind, state_key), &content).await? {
        return Ok(standing);
    }
    let mut template = EventTemplate::state(event_type.clone(), state_key, content);
    // An invitation written as raw state is still an invitation: the invitee's refusal of
    // invites, and a ban, stand in its way as they do at `/invite`.
    if *event_type == StateEventType::RoomMember
        && template.content["membership"] == "invite"
        && let Ok(target) = UserId::parse(state_key)
    {
        ensure_invitable(ctx, &target, sender).await?;
        template.membership_action = Some(MembershipAction::Invite);
    }
    append(ctx, room_id, sender, template, None).await
}
