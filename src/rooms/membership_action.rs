//! What one member's action on another's membership asks of the target's current membership,
//! beyond the auth rules.
//!
//! The auth rules judge the event, not the intent: a `leave` over a ban is an unban and a
//! `leave` of a joined member is a kick, whichever endpoint sent it. So without these checks a
//! `/kick` of a banned user lifts the ban, and an `/unban` of a joined member kicks them with
//! the ban level's authority. The spec's 403s for each endpoint (and Synapse's
//! `update_membership`) hold each endpoint to what it means. The check runs under the room's
//! lock, against the state the event is authorised against (the target's member event is one
//! of its auth events), so no concurrent change slips between the check and the event.

use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use ruma::events::room::member::MembershipState;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipAction {
    Invite,
    Kick,
    Ban,
    Unban,
}

impl MembershipAction {
    /// The membership the action gives its target.
    pub fn membership(self) -> MembershipState {
        match self {
            MembershipAction::Invite => MembershipState::Invite,
            MembershipAction::Kick | MembershipAction::Unban => MembershipState::Leave,
            MembershipAction::Ban => MembershipState::Ban,
        }
    }

    /// Refuses the action if the target's current member event (`None`: never a member)
    /// rules it out.
    pub fn check(self, target_member_event: Option<&Pdu>) -> Result<()> {
        let content = target_member_event.map(Pdu::content_value);
        let current = content.as_ref().and_then(|content| content["membership"].as_str()).map(MembershipState::from);
        match (self, current) {
            (
                MembershipAction::Kick,
                Some(MembershipState::Join | MembershipState::Invite | MembershipState::Knock),
            ) => Ok(()),
            (MembershipAction::Kick, _) => Err(Error::forbidden("The target user is not in the room")),
            (MembershipAction::Unban, Some(MembershipState::Ban)) => Ok(()),
            (MembershipAction::Unban, other) => Err(Error::bad_state(format!(
                "Cannot unban a user who is not banned (membership: {})",
                other.as_ref().map_or("none", MembershipState::as_str)
            ))),
            (MembershipAction::Invite, Some(MembershipState::Ban)) => {
                Err(Error::bad_state("Cannot invite a user who is banned"))
            }
            (MembershipAction::Invite, Some(MembershipState::Join)) => {
                Err(Error::forbidden("The user is already in the room"))
            }
            (MembershipAction::Invite | MembershipAction::Ban, _) => Ok(()),
        }
    }
}
