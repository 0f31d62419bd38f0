//! `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`: a client sets a piece of room state.
//! The auth rules decide who may; the rules the spec adds for particular types (today the
//! aliases `m.room.canonical_alias` may list) are checked here, so every way of setting state
//! — the client API, the admin API, XMPP — is held to them.

use crate::error::Result;
use crate::rooms::RoomCtx;
use crate::rooms::aliases;
use crate::rooms::build::EventTemplate;
use crate::rooms::send::append;
use ruma::events::StateEventType;
use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::Value;

pub async fn send_state_event(
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
    let template = EventTemplate::state(&event_type.to_string(), state_key, content);
    append(ctx, room_id, sender, template, None).await
}
