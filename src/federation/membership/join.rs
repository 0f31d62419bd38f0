//! A local user joining a room, wherever it lives. A room this server takes part in is joined
//! locally; any other through a resident server (server-server API, "Joining rooms"): ask it
//! for a template (`make_join`), sign the join, send it (`send_join` v2), check the state and
//! auth chain it answers with before believing any of it, store them, and commit the join as
//! the room's first local event — from then on the room is joined here and shows in `/sync`.
//! The join asks for a partial state (`omit_members`); a resident that leaves member events
//! out makes the room partial here until `partial_state` has fetched the rest.

use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::federation::inbound::{parse_pdu, signing_keys_wanted, verify_pdu};
use crate::federation::membership::RemoteMembership;
use crate::federation::membership::joined_room::store_joined_room;
use crate::federation::membership::outside::{servers_of_outside_membership, takes_part};
use crate::federation::membership::remote_state::check_room_state;
use crate::federation::membership::resident::{own_event_through, raw_pdu, through_first};
use crate::federation::query::resolve_alias;
use crate::rooms::membership::member_content;
use crate::users::Session;
use ruma::api::federation::membership::create_join_event;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, OwnedServerName, RoomId, RoomOrAliasId, ServerName, UserId};

/// `/join/{roomIdOrAlias}`: joins the session's user to the room, locally when this server
/// is in it, else through one of `via` (or the alias's servers).
pub async fn join(
    ctx: FedCtx<'_>,
    session: &Session,
    room: &RoomOrAliasId,
    via: &[OwnedServerName],
    reason: Option<&str>,
) -> Result<OwnedRoomId> {
    let (room_id, servers) = room_and_residents(ctx, &session.user_id, room, via).await?;
    if takes_part(ctx.rooms, &room_id).await? || servers.is_empty() {
        crate::rooms::membership::join(ctx.rooms, &room_id, session, reason).await?;
        return Ok(room_id);
    }
    if session.is_guest {
        return Err(Error::guest_access_forbidden("Guests may not join rooms on other servers"));
    }
    join_remote(ctx, &session.user_id, &room_id, &servers, reason).await?;
    Ok(room_id)
}

/// The room `room` names, and the other servers that may let `user` in, most likely first:
/// `via`, the alias's servers, the room id's server, and the server that invited the user
/// (or took their knock).
pub(super) async fn room_and_residents(
    ctx: FedCtx<'_>,
    user: &UserId,
    room: &RoomOrAliasId,
    via: &[OwnedServerName],
) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
    let (room_id, mut servers) = match <&RoomId>::try_from(room) {
        Ok(room_id) => (room_id.to_owned(), via.to_vec()),
        Err(alias) => {
            let (room_id, mut servers) = resolve_alias(ctx, alias).await?;
            servers.extend(via.iter().cloned());
            (room_id, servers)
        }
    };
    crate::rooms::membership::ensure_not_blocked(ctx.rooms.pool, &room_id).await?;
    if let Some(server) = room_id.server_name() {
        servers.push(server.to_owned());
    }
    // An invitation names who can let the user in.
    servers.extend(servers_of_outside_membership(ctx.rooms, &room_id, user).await?);
    let mut seen = std::collections::HashSet::new();
    servers.retain(|server| server != ctx.rooms.server_name && seen.insert(server.clone()));
    Ok((room_id, servers))
}

/// Joins `user` to `room_id` through the first of `servers` that lets them in.
pub async fn join_remote(
    ctx: FedCtx<'_>,
    user: &UserId,
    room_id: &RoomId,
    servers: &[OwnedServerName],
    reason: Option<&str>,
) -> Result<()> {
    let attempts = servers.iter().map(|server| (server, join_through(ctx, server, user, room_id, reason)));
    through_first(room_id, attempts).await
}

async fn join_through(
    ctx: FedCtx<'_>,
    server: &ServerName,
    user: &UserId,
    room_id: &RoomId,
    reason: Option<&str>,
) -> Result<()> {
    // The profile is ours to say; the resident server's authoriser of a restricted join stays.
    let content = member_content(ctx.rooms.pool, user, MembershipState::Join, reason).await?;
    let kept: &[&str] = &["join_authorised_via_users_server"];
    let (join, room_version) =
        own_event_through(ctx, server, (user, room_id), RemoteMembership::Join, (content, kept)).await?;

    let mut send = create_join_event::v2::Request::new(room_id.to_owned(), join.event_id.clone(), raw_pdu(&join)?);
    // A partial state answers in about the time the rest of the state takes to check; the
    // member events follow in the background (`partial_state`).
    send.omit_members = true;
    let answer = ctx.client.send(server, send).await?.room_state;
    // A restricted join comes back signed by the authorising server too: that copy is the one.
    let join = match &answer.event {
        Some(countersigned) => {
            let object = parse_pdu(&room_version, countersigned)?;
            let keys = ctx.key_ring.public_keys(&signing_keys_wanted(&object)).await;
            let checked = verify_pdu(&room_version, object, &keys)?;
            if checked.pdu.event_id != join.event_id || checked.redacted {
                return Err(Error::bad_gateway(format!("{server} answered with another join event")));
            }
            checked.pdu
        }
        None => join,
    };
    let checked = check_room_state(ctx.key_ring, room_id, &room_version, &answer.state, &answer.auth_chain).await?;
    let partial = answer.members_omitted.then(|| {
        // The resident first: it is in the room, and the one asked first for the state.
        let mut servers = vec![server.to_string()];
        servers.extend(answer.servers_in_room.iter().flatten().filter(|named| *named != server.as_str()).cloned());
        servers
    });
    store_joined_room(ctx.rooms, room_id, &room_version, &checked, &join, partial.as_deref()).await?;
    if partial.is_some() {
        ctx.partial.wake();
    }
    Ok(())
}
