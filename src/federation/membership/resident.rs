//! What asking a resident server for a membership event takes, whichever the membership: trying
//! the servers that may be in the room one after another, and turning the template one of them
//! answers into our user's own event (checked to be theirs, for this room).

use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::federation::membership::RemoteMembership;
use crate::rooms::SUPPORTED_VERSIONS;
use crate::rooms::build::sign_new_event;
use crate::rooms::pdu::Pdu;
use crate::rooms::{RoomCtx, rules_for};
use ruma::api::federation::membership::{prepare_join_event, prepare_knock_event, prepare_leave_event};
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, RoomId, RoomVersionId, ServerName, UserId};
use serde_json::Value;
use serde_json::value::RawValue as RawJsonValue;

/// Resident servers tried at most, one after another.
const MAX_SERVERS_TRIED: usize = 5;

/// `user`'s `membership` event of `room_id` as `server` makes it (`make_join`, `make_knock`,
/// `make_leave`; join and knock offer the room versions this server supports) with `content`
/// (keeping the template's own `kept` content keys), signed; and the room's version.
pub(super) async fn own_event_through(
    ctx: FedCtx<'_>,
    server: &ServerName,
    (user, room_id): (&UserId, &RoomId),
    membership: RemoteMembership,
    (content, kept): (Value, &[&str]),
) -> Result<(Pdu, RoomVersionId)> {
    let (template, room_version) = match membership {
        RemoteMembership::Join => {
            let mut make = prepare_join_event::v1::Request::new(room_id.to_owned(), user.to_owned());
            make.ver = SUPPORTED_VERSIONS.to_vec();
            let made = ctx.client.send(server, make).await?;
            // Servers that leave the version out mean version 1.
            (made.event, made.room_version.unwrap_or(RoomVersionId::V1))
        }
        RemoteMembership::Knock => {
            let mut make = prepare_knock_event::v1::Request::new(room_id.to_owned(), user.to_owned());
            make.ver = SUPPORTED_VERSIONS.to_vec();
            let made = ctx.client.send(server, make).await?;
            (made.event, made.room_version)
        }
        RemoteMembership::Leave => {
            let make = prepare_leave_event::v1::Request::new(room_id.to_owned(), user.to_owned());
            let made = ctx.client.send(server, make).await?;
            (made.event, made.room_version.unwrap_or(RoomVersionId::V1))
        }
    };
    let event = signed_from_template(ctx.rooms, (&template, &room_version), (user, room_id), content, kept)?;
    Ok((event, room_version))
}

/// Runs the attempts (one per server, made as they are reached) until one succeeds; the last
/// failure otherwise.
pub(super) async fn through_first<'s>(
    room_id: &RoomId,
    attempts: impl Iterator<Item = (&'s OwnedServerName, impl Future<Output = Result<()>>)>,
) -> Result<()> {
    let mut last_error = Error::not_found(format!("No server to reach {room_id} through"));
    for (server, attempt) in attempts.take(MAX_SERVERS_TRIED) {
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(error) => {
                tracing::info!(%room_id, %server, %error, "a membership change through this server failed");
                last_error = error;
            }
        }
    }
    Err(last_error)
}

/// The template a resident server answered `make_join`/`make_leave` with, checked to be a
/// member event of `user` in `room_id` and completed: `content` (keeping the template's own
/// `kept` content keys, such as a restricted join's authoriser), the time, and no hashes or
/// signatures yet.
pub(super) fn own_event_from_template(
    event: &RawJsonValue,
    user: &UserId,
    room_id: &RoomId,
    content: Value,
    kept: &[&str],
) -> Result<CanonicalJsonObject> {
    let mut object: CanonicalJsonObject = serde_json::from_str(event.get())
        .map_err(|error| Error::bad_gateway(format!("The membership template is not canonical JSON: {error}")))?;
    let text = |key: &str| match object.get(key) {
        Some(CanonicalJsonValue::String(value)) => Some(value.clone()),
        _ => None,
    };
    let expected = [("type", "m.room.member"), ("sender", user.as_str()), ("state_key", user.as_str())];
    if expected.iter().any(|(key, value)| text(key).as_deref() != Some(value))
        || text("room_id").as_deref() != Some(room_id.as_str())
    {
        return Err(Error::bad_gateway("The membership template is not one of this user in this room"));
    }
    let mut content =
        CanonicalJsonValue::try_from(content).map_err(|error| Error::internal(format!("member content: {error}")))?;
    if let (CanonicalJsonValue::Object(content), Some(CanonicalJsonValue::Object(template))) =
        (&mut content, object.get("content"))
    {
        for key in kept {
            if let Some(value) = template.get(*key) {
                content.insert((*key).to_owned(), value.clone());
            }
        }
    }
    object.insert("content".to_owned(), content);
    let now = i64::from(MilliSecondsSinceUnixEpoch::now().get());
    object.insert("origin_server_ts".to_owned(), CanonicalJsonValue::Integer(now.try_into().unwrap_or_default()));
    for key in ["hashes", "signatures", "unsigned", "event_id"] {
        object.remove(key);
    }
    Ok(object)
}

/// Our user's member event from the template a resident server answered, hashed and signed:
/// [`own_event_from_template`], then signed as any event of ours.
pub(super) fn signed_from_template(
    ctx: RoomCtx<'_>,
    (template, room_version): (&RawJsonValue, &RoomVersionId),
    (user, room_id): (&UserId, &RoomId),
    content: Value,
    kept: &[&str],
) -> Result<Pdu> {
    let rules = rules_for(room_version)?;
    let object = own_event_from_template(template, user, room_id, content, kept)?;
    sign_new_event(object, &rules, ctx.server_name, ctx.key)
}

/// A PDU of ours as the raw JSON a request carries.
pub(super) fn raw_pdu(pdu: &Pdu) -> Result<Box<RawJsonValue>> {
    RawJsonValue::from_string(pdu.canonical_json())
        .map_err(|error| Error::internal(format!("serialising event {}: {error}", pdu.event_id)))
}
