//! Inviting a user of another server (server-server API, "Inviting to a room"). The invitee's
//! server must agree before the invitation exists: the event is built on the room's current
//! extremities (as a local send would place it, and allowed by the auth rules there), sent with
//! the room's stripped state to that server (`invite` v2), and comes back signed by it too. Only
//! when that signature and everything else about the answer checks out is it stored — through
//! the same placing path as every event of another server's hand, under the room's lock, which
//! sends it on to the other servers in the room. A refusal stores nothing.

use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::federation::inbound::{
    Accepted, CheckedPdu, accept_with_known_parents, parse_pdu, signing_keys_wanted, verify_pdu,
};
use crate::federation::membership::resident::raw_pdu;
use crate::federation::membership::stripped::stripped_state_pdus;
use crate::federation::membership::template::event_on_tip;
use crate::rooms::build::{EventTemplate, sign_new_event};
use crate::rooms::membership::{MembershipChange, member_content, set_membership_of};
use crate::rooms::membership_action::MembershipAction;
use crate::rooms::pdu::Pdu;
use crate::rooms::unchanged;
use ruma::api::federation::membership::{RawStrippedState, create_invite};
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::events::room::member::MembershipState;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedEventId, OwnedUserId, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::json;
use serde_json::value::RawValue as RawJsonValue;

/// `/invite` (and what `createRoom`'s `invite` list does for each invitee): locally for a user
/// of this server, through the invitee's server for anyone else.
pub async fn invite(ctx: FedCtx<'_>, change: MembershipChange<'_>) -> Result<OwnedEventId> {
    if change.target.server_name() == ctx.rooms.server_name {
        return set_membership_of(ctx.rooms, change).await;
    }
    invite_remote(ctx, change).await
}

/// `createRoom`'s invitations of users of other servers, once the room exists. A server that
/// refuses (or cannot be reached) costs only its own invitee's invitation: the room stands, as
/// the invitations that went through do, and the client can invite again.
pub async fn invite_remote_after_creation(
    ctx: FedCtx<'_>,
    room_id: &RoomId,
    creator: &UserId,
    invitees: &[OwnedUserId],
    is_direct: bool,
) {
    for target in invitees.iter().filter(|invitee| invitee.server_name() != ctx.rooms.server_name) {
        let action = MembershipAction::Invite;
        let change = MembershipChange { room_id, sender: creator, target, action, reason: None, is_direct };
        if let Err(error) = invite_remote(ctx, change).await {
            tracing::warn!(%room_id, %target, %error, "a new room's invitation to another server failed");
        }
    }
}

async fn invite_remote(ctx: FedCtx<'_>, change: MembershipChange<'_>) -> Result<OwnedEventId> {
    let MembershipChange { room_id, sender, target, reason, is_direct, .. } = change;
    let mut content = member_content(ctx.rooms.pool, target, MembershipState::Invite, reason).await?;
    if is_direct {
        content["is_direct"] = json!(true);
    }
    // The same invitation again changes nothing (as for local invitees).
    if let Some(standing) =
        unchanged::standing_event(ctx.rooms.pool, room_id, sender, ("m.room.member", target.as_str()), &content).await?
    {
        return Ok(standing);
    }
    let template = EventTemplate::membership_action(MembershipAction::Invite, target.as_str(), content);
    let built = event_on_tip(ctx.rooms, room_id, sender, &template).await?;
    let invite = sign_new_event(built.object, &built.rules, ctx.rooms.server_name, ctx.rooms.key)?;
    let invite_room_state =
        stripped_state_pdus(ctx.rooms.pool, room_id).await?.into_iter().map(RawStrippedState::Pdu).collect();
    let raw = raw_pdu(&invite)?;
    let request = create_invite::v2::Request::new(
        room_id.to_owned(),
        invite.event_id.clone(),
        built.room_version.clone(),
        raw,
        invite_room_state,
    );
    let invitee_server = target.server_name();
    let answer = ctx.client.send(invitee_server, request).await.map_err(|error| {
        tracing::info!(%room_id, %target, %error, "the invitee's server did not take the invitation");
        Error::from(error)
    })?;
    let checked =
        check_countersigned(ctx, (&built.room_version, &built.rules), &invite, invitee_server, &answer.event).await?;
    match accept_with_known_parents(ctx.rooms, ctx.rooms.server_name, &checked).await? {
        Ok(Accepted::Timeline { .. } | Accepted::AlreadyKnown(_)) => Ok(invite.event_id.clone()),
        // The room changed while the invitee's server was asked (the inviter lost the power
        // to invite, say): the invitation stands nowhere here.
        Ok(Accepted::SoftFailed(_)) => {
            Err(Error::forbidden("The room's state changed meanwhile and no longer allows this invitation"))
        }
        Err(missing) => Err(Error::internal(format!("the invite's parents vanished: {:?}", missing.0))),
    }
}

/// The invitation as the invitee's server answered it: the very event we sent (same id, same
/// content), with a valid signature of that server added.
async fn check_countersigned(
    ctx: FedCtx<'_>,
    (room_version, rules): (&RoomVersionId, &RoomVersionRules),
    sent: &Pdu,
    invitee_server: &ServerName,
    answer: &RawJsonValue,
) -> Result<CheckedPdu> {
    let refused = |why: &str| Error::bad_gateway(format!("{invitee_server} answered the invitation with {why}"));
    let object = parse_pdu(room_version, answer).map_err(|_| refused("a malformed event"))?;
    // Only the two signatures that matter are looked up: ours and the invitee server's.
    let mut wanted = signing_keys_wanted(&object);
    wanted.retain(|server, _| server == invitee_server || server == sent.sender.server_name());
    let keys = ctx.key_ring.public_keys(&wanted).await;
    verify_signature_of(&object, rules, invitee_server, &keys).map_err(|_| refused("no valid signature of its own"))?;
    let checked = verify_pdu(room_version, object, &keys).map_err(|_| refused("an event that fails its checks"))?;
    if checked.pdu.event_id != sent.event_id || checked.redacted {
        return Err(refused("another event"));
    }
    Ok(checked)
}

/// Checks `server`'s signature on the event (which, as every event signature, covers its
/// redacted form). ruma's `verify_event` checks only the signatures the auth rules require,
/// and the invitee's is not among them.
fn verify_signature_of(
    object: &CanonicalJsonObject,
    rules: &RoomVersionRules,
    server: &ServerName,
    keys: &ruma::signatures::PublicKeyMap,
) -> Result<()> {
    let mut redacted = ruma::canonical_json::redact(object.clone(), &rules.redaction, None)
        .map_err(|error| Error::bad_json(format!("The event cannot be redacted: {error}")))?;
    let theirs = match redacted.get("signatures") {
        Some(CanonicalJsonValue::Object(signatures)) => signatures.get(server.as_str()).cloned(),
        _ => None,
    }
    .ok_or_else(|| Error::forbidden(format!("The event has no signature of {server}")))?;
    let only_theirs: CanonicalJsonObject = [(server.to_string(), theirs)].into_iter().collect();
    redacted.insert("signatures".to_owned(), CanonicalJsonValue::Object(only_theirs));
    let their_keys = keys.get(server.as_str()).cloned().unwrap_or_default();
    let their_keys = [(server.to_string(), their_keys)].into_iter().collect();
    ruma::signatures::verify_json(&their_keys, &redacted)
        .map_err(|error| Error::forbidden(format!("{server}'s signature does not verify: {error}")))
}
