//! Restricted joins (room versions 8+): a room whose join rule is `restricted` (or
//! `knock_restricted`) admits members of the rooms its `allow` list names. The join event
//! must name a local member with invite power who vouches for it
//! (`join_authorised_via_users_server`); the auth rules then check both.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use crate::rooms::power::PowerLevels;
use crate::store::Store;
use ruma::events::room::member::MembershipState;
use ruma::{RoomId, ServerName, UserId};
use serde_json::Value;

async fn current_content(pool: &Store, room_id: &RoomId, event_type: &str) -> Result<Option<(Value, String)>> {
    let Some(entry) = db::state::current_state_event(pool, room_id.as_str(), event_type, "").await? else {
        return Ok(None);
    };
    let pdu = Pdu::from_stored(&entry.event_id, &entry.json)?;
    Ok(Some((pdu.content_value(), pdu.sender.to_string())))
}

/// The user to name in `join_authorised_via_users_server`, if this join needs one.
pub(crate) async fn join_authoriser(
    pool: &Store,
    server_name: &ServerName,
    room_id: &RoomId,
    user: &UserId,
) -> Result<Option<String>> {
    let Some((join_rules, _)) = current_content(pool, room_id, "m.room.join_rules").await? else { return Ok(None) };
    let rule = join_rules["join_rule"].as_str().unwrap_or_default();
    if rule != "restricted" && rule != "knock_restricted" {
        return Ok(None);
    }
    // An invitation admits the user by itself.
    if db::rooms::membership(pool, room_id.as_str(), user.as_str())
        .await?
        .is_some_and(|m| m.membership == MembershipState::Invite)
    {
        return Ok(None);
    }
    let allowed_via = join_rules["allow"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|condition| condition["type"] == "m.room_membership")
        .filter_map(|condition| condition["room_id"].as_str());
    let mut qualifies = false;
    for other_room in allowed_via {
        if db::rooms::membership(pool, other_room, user.as_str())
            .await?
            .is_some_and(|m| m.membership == MembershipState::Join)
        {
            qualifies = true;
            break;
        }
    }
    if !qualifies {
        return Err(Error::forbidden("This room is restricted to members of other rooms, and you are in none of them"));
    }

    let power = PowerLevels::current(pool, room_id).await?;
    let level = |member: &str| power.of(member);
    let invite_level = power.invite();
    let authoriser = db::rooms::joined_members(pool, room_id.as_str())
        .await?
        .into_iter()
        .filter(|member| member.ends_with(&format!(":{server_name}")))
        .filter(|member| level(member) >= invite_level)
        .max_by_key(|member| level(member));
    authoriser
        .map(Some)
        .ok_or_else(|| Error::forbidden("No member of this server can authorise your join to this restricted room"))
}
