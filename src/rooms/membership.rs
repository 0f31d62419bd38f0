//! Membership changes: join, leave, invite, kick, ban, unban. Who may do what is decided by
//! the room version's authorisation rules (via ruma) against the state before the event; what
//! each action asks of its target's membership besides, by `membership_action`.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::rooms::build::EventTemplate;
use crate::rooms::membership_action::MembershipAction;
use crate::rooms::pdu::Pdu;
use crate::rooms::send::append;
use crate::rooms::{restricted, unchanged};
use crate::store::Store;
use crate::users::Session;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::{Value, json};

/// `m.room.member` content for `user`, carrying their profile on joins (as clients expect),
/// knocks (so the room can see who is asking) and invites (so the room and the invitee's
/// client show a name rather than a bare user id before they join, as Synapse does).
pub async fn member_content(
    pool: &Store,
    user: &UserId,
    membership: MembershipState,
    reason: Option<&str>,
) -> Result<Value> {
    let profile = if matches!(membership, MembershipState::Join | MembershipState::Knock | MembershipState::Invite) {
        db::users::profile(pool, user.as_str()).await?
    } else {
        None
    };
    Ok(member_content_of(profile.as_ref(), membership, reason))
}

/// [`member_content`] given the user's profile (read already, or `None`).
pub fn member_content_of(
    profile: Option<&serde_json::Map<String, Value>>,
    membership: MembershipState,
    reason: Option<&str>,
) -> Value {
    let mut content = json!({ "membership": membership });
    if matches!(membership, MembershipState::Join | MembershipState::Knock | MembershipState::Invite)
        && let Some(profile) = profile
    {
        for field in ["displayname", "avatar_url"] {
            if let Some(value) = profile.get(field) {
                content[field] = value.clone();
            }
        }
    }
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    content
}

async fn ensure_room_known(ctx: RoomCtx<'_>, room_id: &RoomId) -> Result<()> {
    if db::rooms::version(ctx.pool, room_id.as_str()).await?.is_none() {
        return Err(Error::not_found(format!(
            "Room {room_id} is not known to this server (joining rooms on other servers needs federation, which is not implemented yet)"
        )));
    }
    Ok(())
}

/// Joins the session's user to a room on this server. Joining a room one is already in
/// changes nothing. Guests may only join rooms whose `m.room.guest_access` is `can_join`.
pub async fn join(ctx: RoomCtx<'_>, room_id: &RoomId, session: &Session, reason: Option<&str>) -> Result<()> {
    let user: &UserId = &session.user_id;
    ensure_room_known(ctx, room_id).await?;
    if session.is_guest {
        let guest_access = db::state::current_state_event(ctx.pool, room_id.as_str(), "m.room.guest_access", "")
            .await?
            .map(|entry| Pdu::from_stored(&entry.event_id, &entry.json).map(|pdu| pdu.content_value()))
            .transpose()?;
        if guest_access.is_none_or(|content| content["guest_access"] != "can_join") {
            return Err(Error::guest_access_forbidden("Guests may not join this room"));
        }
    }
    if db::rooms::membership(ctx.pool, room_id.as_str(), user.as_str())
        .await?
        .is_some_and(|m| m.membership == MembershipState::Join)
    {
        return Ok(());
    }
    let mut content = member_content(ctx.pool, user, MembershipState::Join, reason).await?;
    if let Some(authoriser) = restricted::join_authoriser(ctx.pool, ctx.server_name, room_id, user).await? {
        content["join_authorised_via_users_server"] = json!(authoriser);
    }
    append(ctx, room_id, user, EventTemplate::state("m.room.member", user.as_str(), content), None).await?;
    Ok(())
}

pub async fn leave(ctx: RoomCtx<'_>, room_id: &RoomId, user: &UserId, reason: Option<&str>) -> Result<()> {
    ensure_room_known(ctx, room_id).await?;
    let current = db::rooms::membership(ctx.pool, room_id.as_str(), user.as_str()).await?;
    match current.map(|m| m.membership) {
        Some(MembershipState::Join | MembershipState::Invite | MembershipState::Knock) => {}
        Some(MembershipState::Leave) => return Ok(()),
        _ => return Err(Error::forbidden("You are not in this room")),
    }
    let content = member_content(ctx.pool, user, MembershipState::Leave, reason).await?;
    append(ctx, room_id, user, EventTemplate::state("m.room.member", user.as_str(), content), None).await?;
    Ok(())
}

/// One member acting on another's membership: invite, kick, ban, unban.
pub struct MembershipChange<'a> {
    pub room_id: &'a RoomId,
    pub sender: &'a UserId,
    pub target: &'a UserId,
    pub action: MembershipAction,
    pub reason: Option<&'a str>,
    pub is_direct: bool,
}

pub async fn set_membership_of(ctx: RoomCtx<'_>, change: MembershipChange<'_>) -> Result<OwnedEventId> {
    let MembershipChange { room_id, sender, target, action, reason, is_direct } = change;
    ensure_room_known(ctx, room_id).await?;
    if action == MembershipAction::Invite {
        ensure_not_blocked(ctx.pool, room_id).await?;
        ensure_invitable(ctx, target, sender).await?;
    }
    let mut content = member_content(ctx.pool, target, action.membership(), reason).await?;
    if is_direct {
        content["is_direct"] = json!(true);
    }
    // The same change by the same member again changes nothing (Synapse). Not for an unban,
    // which Synapse refuses unless the target is banned, as `membership_action` does.
    if action != MembershipAction::Unban
        && let Some(standing) =
            unchanged::standing_event(ctx.pool, room_id, sender, ("m.room.member", target.as_str()), &content).await?
    {
        return Ok(standing);
    }
    append(ctx, room_id, sender, EventTemplate::membership_action(action, target.as_str(), content), None).await
}

/// Refuses joins and invitations into a room an admin blocked (admin API, `block`).
pub async fn ensure_not_blocked(pool: &Store, room_id: &RoomId) -> Result<()> {
    if db::admin_rooms::blocked_by(pool, room_id.as_str()).await?.is_some() {
        return Err(Error::forbidden("This room has been blocked on this server"));
    }
    Ok(())
}

/// What an invitation asks of its invitee before any event exists (so a refusal sends
/// nothing): a local account that accepts invites, from `inviter` in particular.
pub async fn ensure_invitable(ctx: RoomCtx<'_>, target: &UserId, inviter: &UserId) -> Result<()> {
    if target.server_name() != ctx.server_name {
        return Err(Error::forbidden(format!(
            "Inviting {target}: users on other servers cannot be invited yet (federation is not implemented)"
        )));
    }
    if !db::users::exists(ctx.pool, target.as_str()).await? {
        return Err(unknown_user(target));
    }
    crate::users::invite_permission::ensure_invites_allowed(ctx.pool, target, inviter).await
}

/// The refusal of an invite to a user of this server who has no account.
pub fn unknown_user(target: &UserId) -> Error {
    Error::not_found(format!("Unknown user {target}"))
}

/// Rooms where `user` currently is (joined), or is on the way in (invited, knocking).
async fn rooms_with_membership(
    ctx: RoomCtx<'_>,
    user: &UserId,
    memberships: &[&str],
) -> Result<Vec<ruma::OwnedRoomId>> {
    let mut rooms = Vec::new();
    for (room_id, membership) in db::rooms::memberships_of_user(ctx.pool, user.as_str()).await? {
        if memberships.contains(&membership.as_str())
            && let Ok(room_id) = RoomId::parse(room_id)
        {
            rooms.push(room_id);
        }
    }
    Ok(rooms)
}

/// A deactivated account leaves every room (and declines invitations, withdraws knocks), as
/// Synapse does, so that it no longer shows as a member anywhere.
pub async fn leave_all(ctx: RoomCtx<'_>, user: &UserId) -> Result<usize> {
    let rooms = rooms_with_membership(ctx, user, &["join", "invite", "knock"]).await?;
    let mut left = 0;
    for room_id in rooms {
        let content = member_content(ctx.pool, user, MembershipState::Leave, Some("Account deactivated")).await?;
        match append(ctx, &room_id, user, EventTemplate::state("m.room.member", user.as_str(), content), None).await {
            Ok(_) => left += 1,
            Err(error) => tracing::warn!(%room_id, %user, error = %error, "could not leave a room on deactivation"),
        }
    }
    Ok(left)
}

/// After a display name or avatar change, the user's member events in every joined room
/// carry the new profile (clients read names from member events).
pub async fn refresh_profile_in_rooms(ctx: RoomCtx<'_>, user: &UserId) -> Result<()> {
    for room_id in rooms_with_membership(ctx, user, &["join"]).await? {
        let content = member_content(ctx.pool, user, MembershipState::Join, None).await?;
        let current =
            db::state::current_state_event(ctx.pool, room_id.as_str(), "m.room.member", user.as_str()).await?;
        let unchanged = match current {
            Some(entry) => Pdu::from_stored(&entry.event_id, &entry.json)?.content_value() == content,
            None => false,
        };
        if unchanged {
            continue;
        }
        if let Err(error) =
            append(ctx, &room_id, user, EventTemplate::state("m.room.member", user.as_str(), content), None).await
        {
            tracing::warn!(%room_id, %user, error = %error, "could not update the member event after a profile change");
        }
    }
    Ok(())
}
