//! Knocking (room versions 7+): asking to be let into a room whose join rule is `knock`
//! or `knock_restricted`. Whether the knock is allowed is the auth rules' decision.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::rooms::build::EventTemplate;
use crate::rooms::membership::member_content;
use crate::rooms::send::append;
use ruma::events::room::member::MembershipState;
use ruma::{RoomId, UserId};

pub(crate) async fn knock(ctx: RoomCtx<'_>, room_id: &RoomId, user: &UserId, reason: Option<&str>) -> Result<()> {
    if db::rooms::version(ctx.pool, room_id.as_str()).await?.is_none() {
        return Err(Error::not_found(format!(
            "Room {room_id} is not known to this server; knock through a server in it (via)"
        )));
    }
    match db::rooms::membership(ctx.pool, room_id.as_str(), user.as_str()).await?.map(|m| m.membership) {
        Some(MembershipState::Knock) => return Ok(()),
        Some(MembershipState::Join) => return Err(Error::forbidden("You are already in this room")),
        Some(MembershipState::Ban) => return Err(Error::forbidden("You are banned from this room")),
        _ => {}
    }
    let content = member_content(ctx.pool, user, MembershipState::Knock, reason).await?;
    append(ctx, room_id, user, EventTemplate::state("m.room.member", user.as_str(), content), None).await?;
    Ok(())
}
