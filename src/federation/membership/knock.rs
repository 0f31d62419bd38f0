//! A local user knocking on a room, wherever it lives (server-server API, "Knocking upon a
//! room"). A room this server is in takes the knock locally; any other through a resident
//! server: ask it for a template (`make_knock`), sign the knock, send it (`send_knock`). The
//! knock is kept as the user's membership (an outlier: the room's state is unknown here) with
//! the stripped state the resident server answered with, so `/sync` shows it in `knock` with
//! `knock_state`; an invitation that accepts it, and the join after, go as any other.

use crate::error::Result;
use crate::federation::FedCtx;
use crate::federation::membership::RemoteMembership;
use crate::federation::membership::join::room_and_residents;
use crate::federation::membership::outside::{record_outside, takes_part};
use crate::federation::membership::resident::{own_event_through, raw_pdu, through_first};
use crate::federation::membership::stripped::stripped_from_remote;
use crate::rooms::membership::member_content;
use ruma::api::federation::membership::create_knock_event;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, OwnedServerName, RoomId, RoomOrAliasId, ServerName, UserId};

/// `/knock/{roomIdOrAlias}`: the user's knock on the room, through one of `via` (or the
/// alias's servers) when this server is not in it.
pub async fn knock(
    ctx: FedCtx<'_>,
    user: &UserId,
    room: &RoomOrAliasId,
    via: &[OwnedServerName],
    reason: Option<&str>,
) -> Result<OwnedRoomId> {
    let (room_id, servers) = room_and_residents(ctx, user, room, via).await?;
    if takes_part(ctx.rooms, &room_id).await? || servers.is_empty() {
        crate::rooms::knock::knock(ctx.rooms, &room_id, user, reason).await?;
        return Ok(room_id);
    }
    let attempts = servers.iter().map(|server| (server, knock_through(ctx, server, user, &room_id, reason)));
    through_first(&room_id, attempts).await?;
    Ok(room_id)
}

async fn knock_through(
    ctx: FedCtx<'_>,
    server: &ServerName,
    user: &UserId,
    room_id: &RoomId,
    reason: Option<&str>,
) -> Result<()> {
    let content = member_content(ctx.rooms.pool, user, MembershipState::Knock, reason).await?;
    let (knock, room_version) =
        own_event_through(ctx, server, (user, room_id), RemoteMembership::Knock, (content, &[])).await?;
    let send = create_knock_event::v1::Request::new(room_id.to_owned(), knock.event_id.clone(), raw_pdu(&knock)?);
    let answer = ctx.client.send(server, send).await?;
    let stripped = stripped_from_remote(room_id, &answer.knock_room_state);
    record_outside(ctx.rooms, room_id, &room_version, &knock, (user, "knock"), Some(&stripped)).await
}
