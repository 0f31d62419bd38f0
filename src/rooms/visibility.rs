//! History visibility (spec: "History visibility"): which events of a room a user may see (and
//! an erased user's events redacted for those who were not there), and [`Viewer`], a user
//! reading a room, which everything that serves events goes through.

use crate::db;
use crate::db::events::StoredEvent;
use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use crate::rooms::{facts, parsed};
use crate::store::Store;
use ruma::events::TimelineEventType;
use ruma::events::room::history_visibility::HistoryVisibility;
use ruma::events::room::member::MembershipState;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{RoomId, UserId};
use std::collections::{HashMap, HashSet};

/// A user reading a room: what serving events to them needs.
pub(crate) struct Viewer<'a> {
    pub pool: &'a Store,
    pub user: &'a UserId,
    pub room_id: &'a RoomId,
    /// Whether the user is joined now (the `shared` history visibility consults it).
    pub joined: bool,
    membership: Option<MembershipState>,
    rules: RoomVersionRules,
}

impl<'a> Viewer<'a> {
    /// 404 `M_NOT_FOUND` if the server does not know the room.
    pub(crate) async fn new(pool: &'a Store, user: &'a UserId, room_id: &'a RoomId) -> Result<Viewer<'a>> {
        let membership = db::rooms::membership(pool, room_id.as_str(), user.as_str()).await?.map(|m| m.membership);
        Viewer::knowing_membership(pool, user, room_id, membership).await
    }

    /// Like [`Viewer::new`] when the caller already knows the user's membership (a sync knows
    /// it as of the end of its window).
    pub(crate) async fn knowing_membership(
        pool: &'a Store,
        user: &'a UserId,
        room_id: &'a RoomId,
        membership: Option<MembershipState>,
    ) -> Result<Viewer<'a>> {
        let rules = crate::rooms::facts::rules(pool, room_id).await?;
        let joined = membership == Some(MembershipState::Join);
        Ok(Viewer { pool, user, room_id, joined, membership, rules })
    }

    /// Like [`Viewer::new`], and 403 `M_FORBIDDEN` for users who never had anything to do
    /// with the room unless it is world-readable (as `/messages`).
    pub(crate) async fn with_access(pool: &'a Store, user: &'a UserId, room_id: &'a RoomId) -> Result<Viewer<'a>> {
        let viewer = Viewer::new(pool, user, room_id).await?;
        if viewer.membership.is_none() && !world_readable(pool, room_id).await? {
            return Err(Error::forbidden("You are not a member of this room"));
        }
        Ok(viewer)
    }

    pub(crate) fn rules(&self) -> &RoomVersionRules {
        &self.rules
    }

    /// The events the user may see (history visibility), parsed.
    pub(crate) async fn visible(&self, events: Vec<StoredEvent>) -> Result<Vec<(StoredEvent, Pdu)>> {
        visible(self.pool, self.user, self.joined, events).await
    }
}

/// Every event parsed, as a server admin reads them: no membership or history visibility applies.
pub(crate) fn unfiltered(pool: &Store, events: Vec<StoredEvent>) -> Result<Vec<(StoredEvent, Pdu)>> {
    events
        .into_iter()
        .map(|event| {
            let pdu = parsed::pdu_of(pool, &event)?;
            Ok((event, pdu))
        })
        .collect()
}

/// Filters events down to those `user` may see (spec: "History visibility"). `currently_joined`
/// is the user's membership now, which the `shared` setting consults.
pub(crate) async fn visible(
    pool: &Store,
    user: &UserId,
    currently_joined: bool,
    events: Vec<StoredEvent>,
) -> Result<Vec<(StoredEvent, Pdu)>> {
    visible_parsed(pool, user, currently_joined, unfiltered(pool, events)?).await
}

/// [`visible`] for events parsed already.
pub(crate) async fn visible_parsed(
    pool: &Store,
    user: &UserId,
    currently_joined: bool,
    events: Vec<(StoredEvent, Pdu)>,
) -> Result<Vec<(StoredEvent, Pdu)>> {
    // Per room: the stream position of the user's latest join, read only when needed.
    let mut last_joins: HashMap<String, Option<i64>> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    for (event, pdu) in events {
        let Some(snapshot) = event.state_before else { continue };
        let visibility = facts::history_visibility(pool, snapshot).await?;
        // `shared`: visible to whoever joined at any point after the event, even if they have
        // left since (a current member's latest join is after every earlier event).
        let joined_since = if currently_joined || visibility != HistoryVisibility::Shared {
            currently_joined
        } else {
            let last_join = match last_joins.get(&event.room_id) {
                Some(known) => *known,
                None => {
                    let membership = db::rooms::membership(pool, &event.room_id, user.as_str()).await?;
                    let position = membership.and_then(|m| m.joined_position);
                    last_joins.insert(event.room_id.clone(), position);
                    position
                }
            };
            last_join.zip(event.stream_position).is_some_and(|(joined, position)| joined > position)
        };
        // The user's membership at the event matters only where these do not decide already
        // (the common case: a member reading a `shared` room).
        let decided =
            visibility == HistoryVisibility::WorldReadable || (visibility == HistoryVisibility::Shared && joined_since);
        let allowed = decided || {
            let membership = facts::membership_at(pool, snapshot, user).await?;
            // A user's own membership event sits on the boundary: it shows if either the
            // membership before it or the one it sets does (so they see both their join and leave).
            let own = pdu.kind == TimelineEventType::RoomMember && pdu.state_key.as_deref() == Some(user.as_str());
            let becomes = own.then(|| pdu.content_value()["membership"].as_str().map(MembershipState::from)).flatten();
            allows(&visibility, membership.as_ref(), joined_since)
                || (own && allows(&visibility, becomes.as_ref(), joined_since))
        };
        if allowed {
            let pdu =
                if event.sender_erased { erased_unless_joined(pool, user, snapshot, &event, pdu).await? } else { pdu };
            out.push((event, pdu));
        }
    }
    Ok(out)
}

/// An erased user's event as `user` may see it: redacted unless they were joined when it was
/// sent (spec: account deactivation's `erase`; Synapse prunes on the same condition).
async fn erased_unless_joined(
    pool: &Store,
    user: &UserId,
    snapshot: i64,
    event: &StoredEvent,
    pdu: Pdu,
) -> Result<Pdu> {
    if facts::membership_at(pool, snapshot, user).await? == Some(MembershipState::Join) {
        return Ok(pdu);
    }
    let room_id = RoomId::parse(&event.room_id).map_err(|e| Error::internal(format!("stored room id: {e}")))?;
    let rules = facts::rules(pool, &room_id).await?;
    crate::rooms::served::redacted(&pdu, &rules.redaction)
}

/// The spec's rule for one event, given the history visibility and the user's membership at it.
fn allows(visibility: &HistoryVisibility, membership: Option<&MembershipState>, joined_since: bool) -> bool {
    match visibility {
        HistoryVisibility::WorldReadable => true,
        _ if membership == Some(&MembershipState::Join) => true,
        HistoryVisibility::Shared => joined_since,
        HistoryVisibility::Invited => membership == Some(&MembershipState::Invite),
        _ => false,
    }
}

/// Whether the room's current history visibility is `world_readable`.
pub(crate) async fn world_readable(pool: &Store, room_id: &RoomId) -> Result<bool> {
    let Some(entry) = db::state::current_state_event(pool, room_id.as_str(), "m.room.history_visibility", "").await?
    else {
        return Ok(false);
    };
    Ok(Pdu::from_stored(&entry.event_id, &entry.json)?.content_value()["history_visibility"] == "world_readable")
}

/// Whether an ignored sender's event is left out of a timeline. State events stay (as in
/// Synapse): hiding them would make the room's state as the client pieces it together wrong.
pub(crate) fn hidden_by_ignore(ignored: &HashSet<String>, pdu: &Pdu) -> bool {
    pdu.state_key.is_none() && ignored.contains(pdu.sender.as_str())
}
