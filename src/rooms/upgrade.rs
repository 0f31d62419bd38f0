//! Room upgrades (spec: "Room Upgrades"): a replacement room in the new version with the old
//! room's transferable state and bans, a tombstone in the old room, and the old room's power
//! levels raised so that it falls quiet.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::build::EventTemplate;
use crate::rooms::create::{CreateRoom, create_room};
use crate::rooms::membership::{MembershipChange, set_membership_of};
use crate::rooms::membership_action::MembershipAction;
use crate::rooms::pdu::Pdu;
use crate::rooms::power::PowerLevels;
use crate::rooms::send::append;
use crate::rooms::{RoomCtx, rules_for};
use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::{Value, json};

/// State that moves to the replacement room (the spec's recommended list).
const TRANSFERABLE: &[&str] = &[
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.join_rules",
];

pub(crate) async fn upgrade(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    user: &UserId,
    new_version: &RoomVersionId,
    additional_creators: &[OwnedUserId],
) -> Result<OwnedRoomId> {
    let new_rules = rules_for(new_version)?;
    if db::rooms::membership(ctx.pool, room_id.as_str(), user.as_str()).await?.map(|m| m.membership)
        != Some(MembershipState::Join)
    {
        return Err(Error::forbidden("You are not in this room"));
    }
    let power = PowerLevels::current(ctx.pool, room_id).await?;
    let own_level = power.of(user.as_str());
    if own_level < power.for_state_event("m.room.tombstone") {
        return Err(Error::forbidden("You do not have permission to upgrade this room (m.room.tombstone)"));
    }
    if !additional_creators.is_empty() && !new_rules.authorization.additional_room_creators {
        return Err(Error::bad_json(format!("Room version {new_version} has no additional creators")));
    }

    let state = db::state::current_state(ctx.pool, room_id.as_str()).await?;
    let mut create_type = None;
    let mut canonical_alias = None;
    let mut initial_state = Vec::new();
    let mut banned = Vec::new();
    for entry in &state {
        let content = Pdu::from_stored(&entry.event_id, &entry.json)?.content_value();
        match entry.event_type.as_str() {
            "m.room.create" => create_type = content.get("type").cloned(),
            "m.room.member" if content["membership"] == "ban" => banned.push(entry.state_key.clone()),
            "m.room.canonical_alias" if content.as_object().is_some_and(|c| !c.is_empty()) => {
                canonical_alias = Some(content)
            }
            kind if TRANSFERABLE.contains(&kind) => {
                initial_state.push((entry.event_type.clone(), entry.state_key.clone(), content))
            }
            _ => {}
        }
    }
    let last_event = db::events::forward_extremities(ctx.pool, room_id.as_str())
        .await?
        .into_iter()
        .next()
        .map(|extremity| extremity.event_id);

    // The old power levels carry over. Before v12 the upgrader is lifted to 100 while the
    // room is set up, then put back; in v12 creators may not appear in `users` at all.
    let mut power_levels = if power.content.is_object() { power.content.clone() } else { json!({}) };
    let original_power_levels = power_levels.clone();
    let new_creators: Vec<String> =
        std::iter::once(user.to_string()).chain(additional_creators.iter().map(ToString::to_string)).collect();
    if let Some(users) = power_levels["users"].as_object_mut() {
        if new_rules.authorization.explicitly_privilege_room_creators {
            users.retain(|member, _| !new_creators.contains(member));
        } else {
            users.insert(user.to_string(), json!(own_level.clamp(100, i64::from(i32::MAX))));
        }
    } else if !new_rules.authorization.explicitly_privilege_room_creators {
        power_levels["users"] = json!({ user.as_str(): 100 });
    }

    let mut creation_content = json!({ "predecessor": { "room_id": room_id } });
    if let Some(event_id) = &last_event {
        creation_content["predecessor"]["event_id"] = json!(event_id);
    }
    if let Some(kind) = create_type {
        creation_content["type"] = kind;
    }
    if !additional_creators.is_empty() {
        creation_content["additional_creators"] = json!(additional_creators);
    }
    let request = CreateRoom {
        version: Some(new_version.clone()),
        initial_state,
        power_level_content_override: Some(power_levels.clone()),
        creation_content: Some(creation_content),
        ..CreateRoom::default()
    };
    let new_room = create_room(ctx, new_version, user, request).await?;

    for target in &banned {
        let Ok(target) = UserId::parse(target.as_str()) else { continue };
        let change = MembershipChange {
            room_id: &new_room,
            sender: user,
            target: &target,
            action: MembershipAction::Ban,
            reason: None,
            is_direct: false,
        };
        set_membership_of(ctx, change).await?;
    }
    if !new_rules.authorization.explicitly_privilege_room_creators && power_levels != original_power_levels {
        let mut restored = original_power_levels.clone();
        if !restored.is_object() || restored.as_object().is_some_and(|o| o.is_empty()) {
            restored = power_levels.clone();
        }
        append(ctx, &new_room, user, EventTemplate::state(StateEventType::RoomPowerLevels, "", restored), None).await?;
    }

    move_directory_entries(ctx, room_id, &new_room, user, canonical_alias).await?;

    let tombstone = json!({ "body": "This room has been replaced", "replacement_room": new_room });
    append(ctx, room_id, user, EventTemplate::state(StateEventType::RoomTombstone, "", tombstone), None).await?;
    restrict_old_room(ctx, room_id, user, &power).await?;
    tracing::info!(old = %room_id, new = %new_room, version = %new_version, "upgraded room");
    Ok(new_room)
}

/// Local aliases, the canonical alias and the directory listing follow the room (as Synapse
/// does): the old room keeps its history, the new one its name in the world.
async fn move_directory_entries(
    ctx: RoomCtx<'_>,
    old: &RoomId,
    new: &RoomId,
    user: &UserId,
    canonical_alias: Option<Value>,
) -> Result<()> {
    let mut tx = ctx.pool.begin().await?;
    db::directory::move_aliases(&mut tx, old.as_str(), new.as_str()).await?;
    let published = db::directory::is_published(&mut *tx, old.as_str()).await?.unwrap_or(false);
    if published {
        db::directory::set_published(&mut tx, old.as_str(), false).await?;
        db::directory::set_published(&mut tx, new.as_str(), true).await?;
    }
    tx.commit().await?;
    if let Some(content) = canonical_alias {
        append(ctx, new, user, EventTemplate::state(StateEventType::RoomCanonicalAlias, "", content), None).await?;
        // The old room no longer answers to the alias; without power to say so it keeps
        // the stale event, which clients resolve to the new room anyway.
        let cleared =
            append(ctx, old, user, EventTemplate::state(StateEventType::RoomCanonicalAlias, "", json!({})), None).await;
        if let Err(error) = cleared {
            tracing::info!(%old, %error, "could not clear the old room's canonical alias");
        }
    }
    Ok(())
}

/// Raises `events_default` and `invite` to at least 50 (and above `users_default`), so that
/// ordinary members can no longer talk in or invite to the old room.
async fn restrict_old_room(ctx: RoomCtx<'_>, room_id: &RoomId, user: &UserId, power: &PowerLevels) -> Result<()> {
    let mut content = if power.content.is_object() { power.content.clone() } else { json!({}) };
    let users_default = content["users_default"].as_i64().unwrap_or(0);
    let quiet = (users_default + 1).max(50);
    let needs_change =
        content["events_default"].as_i64().unwrap_or(0) < quiet || content["invite"].as_i64().unwrap_or(0) < quiet;
    if !needs_change || power.of(user.as_str()) < power.for_state_event("m.room.power_levels") {
        return Ok(());
    }
    content["events_default"] = Value::from(quiet.max(content["events_default"].as_i64().unwrap_or(0)));
    content["invite"] = Value::from(quiet.max(content["invite"].as_i64().unwrap_or(0)));
    append(ctx, room_id, user, EventTemplate::state(StateEventType::RoomPowerLevels, "", content), None).await?;
    Ok(())
}
