//! Membership lists and the per-user side of leaving: `/members` (at any point of the
//! history the user may see) and `/forget`.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::pagination::parse_token;
use crate::rooms::read::readable_state;
use crate::rooms::served;
use crate::store::Store;
use ruma::events::room::member::MembershipState;
use ruma::{RoomId, UserId};
use serde_json::Value;

pub(crate) struct MemberFilter<'a> {
    /// A pagination token: list the members as of that point.
    pub at: Option<&'a str>,
    pub membership: Option<&'a str>,
    pub not_membership: Option<&'a str>,
}

/// `GET /rooms/{roomId}/members`: member events, as of `at` if given. A former member sees
/// the list as it was when they left, never later.
pub(crate) async fn members(
    pool: &Store,
    user: &UserId,
    room_id: &RoomId,
    filter: MemberFilter<'_>,
) -> Result<Vec<Value>> {
    // Establishes access (member, former member, or world-readable) and gives the default.
    let mut entries = readable_state(pool, user, room_id).await?;
    if let Some(token) = filter.at {
        let mut position = parse_token(token)?;
        if let Some(own) = db::rooms::membership(pool, room_id.as_str(), user.as_str()).await?
            && own.membership != MembershipState::Join
        {
            position = position.min(own.stream_position);
        }
        let snapshot = db::rooms::state_at_position(pool, room_id.as_str(), position)
            .await?
            .ok_or_else(|| Error::not_found("The room did not exist at that point"))?;
        entries = db::state::snapshot_state(pool, snapshot).await?;
    }
    let member_events: Vec<_> = entries.into_iter().filter(|entry| entry.event_type == "m.room.member").collect();
    // Redacted member events keep their membership but lose the rest.
    let rules = crate::rooms::facts::rules(pool, room_id).await?;
    let served = served::apply_to_state(pool, &rules.redaction, &member_events).await?;
    let mut members = Vec::new();
    for served in served {
        let content = served.pdu.content_value();
        let membership = content["membership"].as_str().unwrap_or_default();
        if filter.membership.is_some_and(|wanted| wanted != membership) {
            continue;
        }
        if filter.not_membership.is_some_and(|unwanted| unwanted == membership) {
            continue;
        }
        members.push(served.client_event(room_id));
    }
    members.sort_by(|a, b| a["state_key"].as_str().cmp(&b["state_key"].as_str()));
    Ok(members)
}

/// `POST /rooms/{roomId}/forget`: only rooms the user has left (or was banned from).
pub(crate) async fn forget(pool: &Store, user: &UserId, room_id: &RoomId) -> Result<()> {
    match db::rooms::membership(pool, room_id.as_str(), user.as_str()).await? {
        None => Err(Error::not_found("You have never been in this room")),
        Some(m) if m.membership == MembershipState::Leave || m.membership == MembershipState::Ban => {
            db::rooms::forget(pool, room_id.as_str(), user.as_str()).await?;
            // Forgetting moves no stream position, so the syncs' check would not see it.
            pool.cache::<crate::rooms::known_memberships::MembershipCache>().forget(user);
            Ok(())
        }
        Some(_) => Err(Error::unknown("Leave the room before forgetting it")),
    }
}

/// Who invited `user` to `room_id` as a direct chat (`is_direct` on the invite), if the user's
/// pending invite there is one: an edge without invite prompts (XMPP) accepts those on the
/// user's behalf, as a one-to-one conversation simply begins there.
pub(crate) async fn direct_inviter(pool: &Store, user: &UserId, room_id: &RoomId) -> Result<Option<ruma::OwnedUserId>> {
    let Some(entry) = db::state::current_state_event(pool, room_id.as_str(), "m.room.member", user.as_str()).await?
    else {
        return Ok(None);
    };
    let pdu = crate::rooms::pdu::Pdu::from_stored(&entry.event_id, &entry.json)?;
    let content = pdu.content_value();
    let direct_invite = content["membership"] == "invite" && content["is_direct"] == true;
    Ok(direct_invite.then_some(pdu.sender.clone()))
}
