//! Building a new local PDU: the fields its room version requires, the content hash, the
//! server's signature and the reference-hash event id.

use crate::error::{Error, Result};
use crate::rooms::membership_action::MembershipAction;
use crate::rooms::pdu::Pdu;
use crate::signing_key::SigningKey;
use crate::users::tokens::random_alphanumeric;
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::events::{MessageLikeEventType, StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::signatures::{hash_and_sign_event, reference_hash, sign_json};
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, ServerName, UserId};
use serde_json::{Map, Value, json};

/// Random characters in the event ids this server makes up in room versions 1 and 2.
const EVENT_ID_LOCALPART_LENGTH: usize = 18;

/// The spec's limit on a whole PDU, signatures included.
pub const MAX_PDU_BYTES: usize = 65_536;

/// The spec's limit on an event's `type` and `state_key`.
pub const MAX_KEY_BYTES: usize = 255;

/// What a client (or the server on its behalf) wants to say.
#[derive(Clone, Debug)]
pub struct EventTemplate {
    pub kind: TimelineEventType,
    pub content: Value,
    pub state_key: Option<String>,
    /// For a member event one user sends about another: what the sender means by it, which
    /// the target's current membership must allow (see `membership_action`).
    pub membership_action: Option<MembershipAction>,
}

impl EventTemplate {
    /// A message-like event: `MessageLikeEventType::RoomMessage`, or a client's own type as text.
    pub fn message(kind: impl Into<MessageLikeEventType>, content: Value) -> EventTemplate {
        EventTemplate { kind: kind.into().into(), content, state_key: None, membership_action: None }
    }

    /// A state event: `StateEventType::RoomName`, or a client's own type as text.
    pub fn state(kind: impl Into<StateEventType>, state_key: &str, content: Value) -> EventTemplate {
        EventTemplate {
            kind: kind.into().into(),
            content,
            state_key: Some(state_key.to_owned()),
            membership_action: None,
        }
    }

    /// The template of an `m.room.member` event that `action` sets for `target`.
    pub fn membership_action(action: MembershipAction, target: &str, content: Value) -> EventTemplate {
        EventTemplate {
            membership_action: Some(action),
            ..EventTemplate::state(StateEventType::RoomMember, target, content)
        }
    }
}

/// Where in the DAG the new event goes.
pub struct Placement<'a> {
    /// `None` only for the create event of a room version whose room id is its hash.
    pub room_id: Option<&'a RoomId>,
    pub prev_events: &'a [OwnedEventId],
    pub auth_events: &'a [OwnedEventId],
    pub depth: u64,
}

pub fn build_and_sign(
    template: &EventTemplate,
    sender: &UserId,
    placement: &Placement<'_>,
    rules: &RoomVersionRules,
    server_name: &ServerName,
    key: &SigningKey,
) -> Result<Pdu> {
    let object = build_unsigned(template, sender, placement, rules)?;
    sign_new_event(object, rules, server_name, key)
}

/// The event's fields as its room version requires them, before hashes and signatures: what a
/// resident server answers a `make_join` (or `make_leave`, `make_knock`) with.
pub fn build_unsigned(
    template: &EventTemplate,
    sender: &UserId,
    placement: &Placement<'_>,
    rules: &RoomVersionRules,
) -> Result<CanonicalJsonObject> {
    if !template.content.is_object() {
        return Err(Error::bad_json("Event content must be a JSON object"));
    }
    // The spec's size limits per key, which every server checks a PDU against.
    if template.kind.to_string().len() > MAX_KEY_BYTES
        || template.state_key.as_ref().is_some_and(|key| key.len() > MAX_KEY_BYTES)
    {
        return Err(Error::invalid_param(format!("An event type or state key may be at most {MAX_KEY_BYTES} bytes")));
    }
    let mut object = Map::new();
    object.insert("type".into(), json!(template.kind));
    object.insert("content".into(), template.content.clone());
    object.insert("sender".into(), json!(sender));
    object.insert("origin_server_ts".into(), json!(MilliSecondsSinceUnixEpoch::now()));
    object.insert("depth".into(), json!(placement.depth));
    object.insert("prev_events".into(), event_references(placement.prev_events, rules));
    object.insert("auth_events".into(), event_references(placement.auth_events, rules));
    if let Some(room_id) = placement.room_id {
        object.insert("room_id".into(), json!(room_id));
    }
    if let Some(state_key) = &template.state_key {
        object.insert("state_key".into(), json!(state_key));
    }
    // Before room version 11 a redaction names its target at the top level as well.
    if template.kind == TimelineEventType::RoomRedaction
        && !rules.redaction.keep_room_redaction_redacts
        && let Some(redacts) = template.content.get("redacts")
    {
        object.insert("redacts".into(), redacts.clone());
    }

    match CanonicalJsonValue::try_from(Value::Object(object)) {
        Ok(CanonicalJsonValue::Object(object)) => Ok(object),
        Ok(_) => Err(Error::internal("an event did not serialise to an object")),
        Err(error) => Err(Error::bad_json(format!(
            "The event is not valid canonical JSON (integers must be within ±2^53, no floats): {error}"
        ))),
    }
}

/// `prev_events` or `auth_events` as the room version writes them: ids, or in room versions 1
/// and 2 pairs of an id and the event's hashes, left empty as Synapse leaves them (no server
/// checks them, and filling them would mean reading every referenced event back).
fn event_references(ids: &[OwnedEventId], rules: &RoomVersionRules) -> Value {
    if rules.event_format.require_event_id {
        Value::Array(ids.iter().map(|id| json!([id, {}])).collect())
    } else {
        json!(ids)
    }
}

/// Hashes and signs a new event of this server (built here, or from a resident server's
/// template), checks the spec's size limit and computes its event id.
pub fn sign_new_event(
    mut canonical: CanonicalJsonObject,
    rules: &RoomVersionRules,
    server_name: &ServerName,
    key: &SigningKey,
) -> Result<Pdu> {
    if rules.event_format.require_event_id {
        // Room versions 1 and 2 name an event `$opaque:origin` inside the signed JSON, and the
        // origin named there must sign it: the id is ours, whoever built the template.
        let event_id = format!("${}:{server_name}", random_alphanumeric(EVENT_ID_LOCALPART_LENGTH));
        canonical.insert("event_id".to_owned(), CanonicalJsonValue::String(event_id));
    }
    hash_and_sign_event(server_name.as_str(), &key.key_pair, &mut canonical, &rules.redaction)
        .map_err(too_large_or_internal)?;
    let event_id = event_id_of(&canonical, rules)?;
    let pdu = Pdu::from_canonical(event_id, canonical)?;
    let size = pdu.canonical_text().len();
    if size > MAX_PDU_BYTES {
        return Err(Error::too_large(format!("The event is {size} bytes; the limit is {MAX_PDU_BYTES}")));
    }
    Ok(pdu)
}

/// Adds this server's signature to an event another server built and signed (a restricted join
/// a local member authorises): like every event signature it covers the redacted form, so the
/// event's hashes and id do not change.
pub fn cosign_event(
    object: &mut CanonicalJsonObject,
    rules: &RoomVersionRules,
    server_name: &ServerName,
    key: &SigningKey,
) -> Result<()> {
    let mut redacted = ruma::canonical_json::redact(object.clone(), &rules.redaction, None)
        .map_err(|error| Error::bad_json(format!("The event cannot be redacted: {error}")))?;
    sign_json(server_name.as_str(), &key.key_pair, &mut redacted).map_err(too_large_or_internal)?;
    let ours = match redacted.get("signatures") {
        Some(CanonicalJsonValue::Object(signatures)) => signatures.get(server_name.as_str()).cloned(),
        _ => None,
    }
    .ok_or_else(|| Error::internal("signing left no signature"))?;
    match object.entry("signatures".to_owned()).or_insert_with(|| CanonicalJsonValue::Object(Default::default())) {
        CanonicalJsonValue::Object(signatures) => {
            signatures.insert(server_name.as_str().to_owned(), ours);
            Ok(())
        }
        _ => Err(Error::bad_json("The event's signatures are not an object")),
    }
}

/// The event's id: `$` + its reference hash in room versions 3 and later; in 1 and 2 the
/// `event_id` the event carries.
pub fn event_id_of(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<OwnedEventId> {
    if rules.event_format.require_event_id {
        return match object.get("event_id") {
            Some(CanonicalJsonValue::String(id)) => {
                EventId::parse(id).map_err(|e| Error::bad_json(format!("The event id {id:?} is invalid: {e}")))
            }
            _ => Err(Error::bad_json("An event of room version 1 or 2 must carry its event_id")),
        };
    }
    let hash = reference_hash(object, rules).map_err(too_large_or_internal)?;
    EventId::parse(format!("${hash}")).map_err(|e| Error::internal(format!("computed event id is invalid: {e}")))
}

fn too_large_or_internal(error: ruma::signatures::JsonError) -> Error {
    match error {
        ruma::signatures::JsonError::PduTooLarge => Error::too_large("The event exceeds 65536 bytes"),
        other => Error::internal(format!("signing an event: {other}")),
    }
}
