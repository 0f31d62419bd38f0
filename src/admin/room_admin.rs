//! `POST /_synapse/admin/v1/rooms/{roomId}/make_room_admin`, with Synapse's semantics: the
//! local member with the most power in the room grants the target the same level (an admin
//! cannot act in a room on their own authority: every event needs a member entitled to send
//! it), then, if the target is not in the room and cannot simply join it, invites them.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::rooms::membership::{MembershipChange, set_membership_of};
use crate::rooms::membership_action::MembershipAction;
use crate::rooms::pdu::Pdu;
use crate::rooms::power::PowerLevels;
use crate::rooms::state_event::send_state_event;
use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};

/// The level Synapse gives a room's admins; what a creator of a version 12 room (who outranks
/// every number) grants.
const ADMIN_LEVEL: i64 = 100;

pub(crate) async fn make_room_admin(ctx: RoomCtx<'_>, room_id: &RoomId, target: &UserId) -> Result<()> {
    if target.server_name() != ctx.server_name {
        return Err(Error::invalid_param("This endpoint can only be used with local users"));
    }
    if db::rooms::version(ctx.pool, room_id.as_str()).await?.is_none() {
        return Err(Error::not_found("Room not found"));
    }
    let power = PowerLevels::current(ctx.pool, room_id).await?;
    let granter = most_powerful_local_member(ctx, room_id, &power).await?;
    let granter_level = power.of(granter.as_str());
    if granter_level < power.for_state_event("m.room.power_levels") {
        return Err(Error::unknown("No local admin user in room with power to update power levels."));
    }
    let already_creator = power.creators_are_privileged && power.creators.iter().any(|c| c == target.as_str());
    if !already_creator {
        let level = if granter_level == i64::MAX { highest_listed_level(&power.content) } else { granter_level };
        let mut content = if power.content.is_object() { power.content.clone() } else { json!({}) };
        content["users"][target.as_str()] = json!(level);
        send_state_event(ctx, room_id, &granter, &StateEventType::RoomPowerLevels, "", content).await?;
    }

    let membership = db::rooms::membership(ctx.pool, room_id.as_str(), target.as_str()).await?;
    if membership.is_some_and(|m| m.membership == MembershipState::Join || m.membership == MembershipState::Invite) {
        return Ok(());
    }
    if join_rule(ctx, room_id).await?.as_deref() == Some("public") {
        return Ok(());
    }
    let invite = MembershipChange {
        room_id,
        sender: &granter,
        target,
        action: MembershipAction::Invite,
        reason: None,
        is_direct: false,
    };
    set_membership_of(ctx, invite).await?;
    Ok(())
}

/// The joined local member with the highest level (creators of a version 12 room first).
async fn most_powerful_local_member(ctx: RoomCtx<'_>, room_id: &RoomId, power: &PowerLevels) -> Result<OwnedUserId> {
    let joined = db::admin_rooms::members_with(ctx.pool, room_id.as_str(), &["join"]).await?;
    joined
        .iter()
        .filter_map(|user| UserId::parse(user).ok())
        .filter(|user| user.server_name() == ctx.server_name)
        .max_by_key(|user| power.of(user.as_str()))
        .ok_or_else(|| Error::unknown("No local admin user in room"))
}

async fn join_rule(ctx: RoomCtx<'_>, room_id: &RoomId) -> Result<Option<String>> {
    let Some(entry) = db::state::current_state_event(ctx.pool, room_id.as_str(), "m.room.join_rules", "").await? else {
        return Ok(None);
    };
    let content = Pdu::from_stored(&entry.event_id, &entry.json)?.content_value();
    Ok(content["join_rule"].as_str().map(str::to_owned))
}

/// The highest level the power levels name (at least the usual admin level).
fn highest_listed_level(content: &Value) -> i64 {
    content["users"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, level)| level.as_i64())
        .fold(ADMIN_LEVEL, i64::max)
}
