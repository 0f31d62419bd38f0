//! Membership: join, leave, invite, kick, ban, unban; who is in which room.

use crate::error::{Error, Result};
use crate::federation;
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::rooms::membership_action::MembershipAction;
use crate::rooms::{membership, read};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::client::membership::invite_user::v3::InvitationRecipient;
use ruma::api::client::membership::{
    ban_user, invite_user, join_room_by_id, join_room_by_id_or_alias, joined_members, joined_rooms, kick_user,
    leave_room, unban_user,
};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, RoomOrAliasId, UserId};
use std::collections::BTreeMap;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma_guest::<join_room_by_id::v3::Request, _, _>(join_by_id)
        .ruma_guest::<join_room_by_id_or_alias::v3::Request, _, _>(join_by_id_or_alias)
        .ruma_guest::<leave_room::v3::Request, _, _>(leave)
        .ruma::<invite_user::v3::Request, _, _>(invite)
        .ruma::<kick_user::v3::Request, _, _>(kick)
        .ruma::<ban_user::v3::Request, _, _>(ban)
        .ruma::<unban_user::v3::Request, _, _>(unban)
        .ruma_guest::<joined_rooms::v3::Request, _, _>(rooms_joined)
        .ruma_guest::<joined_members::v3::Request, _, _>(members_joined)
}

/// `POST /_matrix/client/*/rooms/{roomId}/join`: join a room using its ID.
async fn join_by_id(
    State(state): State<AppState>,
    request: Authed<join_room_by_id::v3::Request>,
) -> Result<RumaResponse<join_room_by_id::v3::Response>> {
    let body = &request.body;
    let room = <&RoomOrAliasId>::from(&*body.room_id);
    let room_id =
        federation::membership::join(state.fed(), &request.session, room, &[], body.reason.as_deref()).await?;
    Ok(join_room_by_id::v3::Response::new(room_id).into())
}

/// `POST /_matrix/client/*/join/{roomIdOrAlias}`: join a room using its ID or one of its aliases.
async fn join_by_id_or_alias(
    State(state): State<AppState>,
    request: Authed<join_room_by_id_or_alias::v3::Request>,
) -> Result<RumaResponse<join_room_by_id_or_alias::v3::Response>> {
    let body = &request.body;
    let (session, reason) = (&request.session, body.reason.as_deref());
    let room_id = federation::membership::join(state.fed(), session, &body.room_id_or_alias, &body.via, reason).await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id).into())
}

/// `POST /_matrix/client/*/rooms/{roomId}/leave`: leave a room.
async fn leave(
    State(state): State<AppState>,
    request: Authed<leave_room::v3::Request>,
) -> Result<RumaResponse<leave_room::v3::Response>> {
    let body = &request.body;
    federation::membership::leave(state.fed(), &body.room_id, &request.session.user_id, body.reason.as_deref()).await?;
    Ok(leave_room::v3::Response::new().into())
}

/// `POST /_matrix/client/*/rooms/{roomId}/invite`: invite a user to a room.
async fn invite(
    State(state): State<AppState>,
    request: Authed<invite_user::v3::Request>,
) -> Result<RumaResponse<invite_user::v3::Response>> {
    let body = &request.body;
    let (target, reason): (OwnedUserId, Option<String>) = match &body.recipient {
        InvitationRecipient::UserId(recipient) => (recipient.user_id.clone(), recipient.reason.clone()),
        _ => {
            return Err(Error::unknown("Third-party invites are not supported"));
        }
    };
    let (sender, reason) = (&request.session.user_id, reason.as_deref());
    if crate::rooms::shadow_ban::is_shadow_banned(&state.pool, sender).await? {
        return Ok(invite_user::v3::Response::new().into());
    }
    let action = MembershipAction::Invite;
    let change = membership::MembershipChange {
        room_id: &body.room_id,
        sender,
        target: &target,
        action,
        reason,
        is_direct: false,
    };
    federation::membership::invite(state.fed(), change).await?;
    Ok(invite_user::v3::Response::new().into())
}

/// Sets another member's membership on the requester's authority.
async fn change(
    state: &AppState,
    sender: &UserId,
    room_id: &RoomId,
    target: &UserId,
    action: MembershipAction,
    reason: Option<&str>,
) -> Result<()> {
    let change = membership::MembershipChange { room_id, sender, target, action, reason, is_direct: false };
    membership::set_membership_of(state.rooms(), change).await?;
    Ok(())
}

/// `POST /_matrix/client/*/rooms/{roomId}/kick`: kick a user from a room.
async fn kick(
    State(state): State<AppState>,
    request: Authed<kick_user::v3::Request>,
) -> Result<RumaResponse<kick_user::v3::Response>> {
    let body = &request.body;
    let kick = MembershipAction::Kick;
    change(&state, &request.session.user_id, &body.room_id, &body.user_id, kick, body.reason.as_deref()).await?;
    Ok(kick_user::v3::Response::new().into())
}

/// `POST /_matrix/client/*/rooms/{roomId}/ban`: ban a user from a room.
async fn ban(
    State(state): State<AppState>,
    request: Authed<ban_user::v3::Request>,
) -> Result<RumaResponse<ban_user::v3::Response>> {
    let body = &request.body;
    let ban = MembershipAction::Ban;
    change(&state, &request.session.user_id, &body.room_id, &body.user_id, ban, body.reason.as_deref()).await?;
    Ok(ban_user::v3::Response::new().into())
}

/// `POST /_matrix/client/*/rooms/{roomId}/unban`: unban a user from a room.
async fn unban(
    State(state): State<AppState>,
    request: Authed<unban_user::v3::Request>,
) -> Result<RumaResponse<unban_user::v3::Response>> {
    let body = &request.body;
    let unban = MembershipAction::Unban;
    change(&state, &request.session.user_id, &body.room_id, &body.user_id, unban, body.reason.as_deref()).await?;
    Ok(unban_user::v3::Response::new().into())
}

/// `GET /_matrix/client/*/joined_rooms`: get a list of the user's current rooms.
async fn rooms_joined(
    State(state): State<AppState>,
    request: Authed<joined_rooms::v3::Request>,
) -> Result<RumaResponse<joined_rooms::v3::Response>> {
    let rooms = read::joined_rooms(&state.pool, &request.session.user_id).await?;
    let rooms = rooms.into_iter().filter_map(|room| OwnedRoomId::try_from(room).ok()).collect();
    Ok(joined_rooms::v3::Response::new(rooms).into())
}

/// `GET /_matrix/client/*/rooms/{roomId}/joined_members`:
/// get a map of user IDs to member info objects for members of the room (joined members only).
async fn members_joined(
    State(state): State<AppState>,
    request: Authed<joined_members::v3::Request>,
) -> Result<RumaResponse<joined_members::v3::Response>> {
    // A room joined with a partial state lists its members once they are all known.
    let room_id = &request.body.room_id;
    state.partial_state.wait_until_full(&state.pool, room_id, federation::partial_state::MEMBERS_WAIT).await?;
    let members = read::joined_members(&state.pool, &request.session.user_id, room_id).await?;
    let mut joined = BTreeMap::new();
    for (user_id, content) in members {
        let Ok(user_id) = OwnedUserId::try_from(user_id) else { continue };
        let mut member = joined_members::v3::RoomMember::new();
        member.display_name = content["displayname"].as_str().map(str::to_owned);
        member.avatar_url = content["avatar_url"].as_str().map(Into::into);
        joined.insert(user_id, member);
    }
    Ok(joined_members::v3::Response::new(joined).into())
}
