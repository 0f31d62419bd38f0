//! Memberships of our users in rooms this server is not in: an invitation another server sent
//! (`invite` v2, served), and leaving such a room — rejecting the invitation or withdrawing a
//! knock — through a resident server (`make_leave`/`send_leave` v2). The member event is kept
//! as an outlier (its room's state is unknown here) and the user's membership points at it, so
//! `/sync` shows the invitation, and later its end, like any other.

use crate::db;
use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::federation::inbound::outliers::{Unplaced, store_unplaced};
use crate::federation::inbound::{parse_pdu, signing_keys_wanted, verify_pdu};
use crate::federation::membership::RemoteMembership;
use crate::federation::membership::resident::{own_event_through, raw_pdu, through_first};
use crate::federation::membership::stripped::stripped_from_remote;
use crate::rooms::build::cosign_event;
use crate::rooms::pdu::Pdu;
use crate::rooms::send::committed::commit_events;
use crate::rooms::send::{Appended, Stored};
use crate::rooms::{RoomCtx, rules_for};
use crate::time::now_ms;
use ruma::api::error::{ErrorKind, IncompatibleRoomVersionErrorData};
use ruma::api::federation::membership::{RawStrippedState, create_leave_event};
use ruma::events::room::member::MembershipState;
use ruma::{EventId, OwnedServerName, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::value::RawValue as RawJsonValue;

/// Accepts the invitation `origin` sends for one of our users: checks it, signs it and keeps
/// it, with the room's stripped state it came with (what the invitee's `/sync` shows of the
/// room). Answers the event with our signature added.
pub async fn receive_invite(
    ctx: FedCtx<'_>,
    origin: &ServerName,
    (room_id, event_id): (&RoomId, &EventId),
    room_version: &RoomVersionId,
    (raw, invite_room_state): (&RawJsonValue, &[RawStrippedState]),
) -> Result<Box<RawJsonValue>> {
    let rules = rules_for(room_version).map_err(|_| {
        Error::new(
            ErrorKind::IncompatibleRoomVersion(IncompatibleRoomVersionErrorData::new(room_version.clone())),
            format!("Room version {room_version} is not supported here"),
        )
    })?;
    let mut object = parse_pdu(room_version, raw)?;
    let keys = ctx.key_ring.public_keys(&signing_keys_wanted(&object)).await;
    let checked = verify_pdu(room_version, object.clone(), &keys)?;
    let invite = &checked.pdu;
    let target = invite.state_key.as_deref().and_then(|key| UserId::parse(key).ok());
    let is_invite = invite.kind.to_string() == "m.room.member" && invite.content_value()["membership"] == "invite";
    let Some(target) = target.filter(|_| is_invite) else {
        return Err(Error::bad_json("The event is not an invitation"));
    };
    if invite.event_id != event_id || invite.room_id.as_deref() != Some(room_id) || checked.redacted {
        return Err(Error::bad_json("The event is not the invitation its path names"));
    }
    if invite.sender.server_name() != origin {
        return Err(Error::forbidden(format!("{origin} may not send invitations from {}", invite.sender)));
    }
    if target.server_name() != ctx.rooms.server_name || !db::users::exists(ctx.rooms.pool, target.as_str()).await? {
        return Err(Error::not_found(format!("{target} is not a user of this server")));
    }
    crate::users::invite_permission::ensure_invites_allowed(ctx.rooms.pool, &target, &invite.sender).await?;
    cosign_event(&mut object, &rules, ctx.rooms.server_name, ctx.rooms.key)?;
    let signed = Pdu::from_canonical(invite.event_id.clone(), object)?;
    // In a room this server is in, the invitation arrives through the room too; elsewhere it is
    // all this server will know of the room until the user joins.
    if !takes_part(ctx.rooms, room_id).await? {
        let stripped = stripped_from_remote(room_id, invite_room_state);
        record_outside(ctx.rooms, room_id, room_version, &signed, (&target, "invite"), Some(&stripped)).await?;
    }
    RawJsonValue::from_string(signed.canonical_json()).map_err(|e| Error::internal(format!("an invite: {e}")))
}

/// Whether this server is in the room: it knows it and one of its users is joined.
pub async fn takes_part(ctx: RoomCtx<'_>, room_id: &RoomId) -> Result<bool> {
    if db::rooms::version(ctx.pool, room_id.as_str()).await?.is_none() {
        return Ok(false);
    }
    let suffix = format!(":{}", ctx.server_name);
    Ok(db::rooms::joined_members(ctx.pool, room_id.as_str()).await?.iter().any(|member| member.ends_with(&suffix)))
}

/// Servers that can speak for a room this server is not in, as far as `user`'s standing there
/// says: the one that invited them (or took their knock).
pub async fn servers_of_outside_membership(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    user: &UserId,
) -> Result<Vec<OwnedServerName>> {
    let Some(event) = db::rooms::membership_event(ctx.pool, room_id.as_str(), user.as_str()).await? else {
        return Ok(Vec::new());
    };
    let pdu = Pdu::from_stored(&event.0, &event.1)?;
    let mut servers = vec![pdu.sender.server_name().to_owned()];
    if let Some(server) = room_id.server_name() {
        servers.push(server.to_owned());
    }
    servers.retain(|server| server != ctx.server_name);
    Ok(servers)
}

/// `/leave`: locally in a room this server is in; else (rejecting an invitation, withdrawing a
/// knock) through a resident server.
pub async fn leave(ctx: FedCtx<'_>, room_id: &RoomId, user: &UserId, reason: Option<&str>) -> Result<()> {
    let outside = matches!(
        db::rooms::membership(ctx.rooms.pool, room_id.as_str(), user.as_str()).await?.map(|m| m.membership),
        Some(MembershipState::Invite | MembershipState::Knock)
    );
    if !outside || takes_part(ctx.rooms, room_id).await? {
        return crate::rooms::membership::leave(ctx.rooms, room_id, user, reason).await;
    }
    leave_outside(ctx, room_id, user, reason).await
}

async fn leave_outside(ctx: FedCtx<'_>, room_id: &RoomId, user: &UserId, reason: Option<&str>) -> Result<()> {
    let servers = servers_of_outside_membership(ctx.rooms, room_id, user).await?;
    let attempts = servers.iter().map(|server| (server, leave_through(ctx, server, room_id, user, reason)));
    through_first(room_id, attempts).await
}

async fn leave_through(
    ctx: FedCtx<'_>,
    server: &ServerName,
    room_id: &RoomId,
    user: &UserId,
    reason: Option<&str>,
) -> Result<()> {
    let mut content = serde_json::json!({"membership": "leave"});
    if let Some(reason) = reason {
        content["reason"] = serde_json::json!(reason);
    }
    let (leave, room_version) =
        own_event_through(ctx, server, (user, room_id), RemoteMembership::Leave, (content, &[])).await?;
    let raw = raw_pdu(&leave)?;
    ctx.client
        .send(server, create_leave_event::v2::Request::new(room_id.to_owned(), leave.event_id.clone(), raw))
        .await?;
    record_outside(ctx.rooms, room_id, &room_version, &leave, (user, "leave"), None).await
}

/// Keeps `event` (an outlier: the room's state is unknown here) as `user`'s membership, with
/// the stripped state of the room another server gave with it.
pub(super) async fn record_outside(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    room_version: &RoomVersionId,
    event: &Pdu,
    (user, membership): (&UserId, &str),
    stripped: Option<&serde_json::Value>,
) -> Result<()> {
    let mut tx = ctx.pool.begin().await?;
    let _held = ctx.locks.lock_in(&mut tx, room_id).await?;
    db::rooms::insert(&mut tx, room_id.as_str(), room_version.as_str(), event.sender.as_str(), now_ms()).await?;
    let mut reservation = ctx.streams.reserve();
    let position = reservation.next(&mut tx).await?;
    let event_nid = store_unplaced(&mut tx, room_id, event, Unplaced::Outlier).await?;
    db::events::set_out_of_band_position(&mut tx, event_nid, position).await?;
    db::rooms::set_membership(&mut tx, room_id.as_str(), user.as_str(), membership, event_nid, position).await?;
    if let Some(stripped) = stripped {
        db::outside_room_state::insert(&mut tx, event_nid, stripped).await?;
    }
    let stored = Stored { event_nid, state_after: 0, position };
    let appended = Appended::New { pdu: Box::new(event.clone()), stored };
    commit_events(ctx, tx, reservation, room_id, [&appended]).await
}
