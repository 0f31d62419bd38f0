//! The checks a PDU passes before anything looks at where it goes in its room (server-server
//! API, "Checks performed on receipt of a PDU", steps 1-3): its format for the room version,
//! the signatures of the servers that must have signed it, and its content hash. A PDU whose
//! signatures verify but whose content hash does not is kept in its redacted form, as the spec
//! says; one whose signatures do not verify is refused.

use crate::error::{Error, Result};
use crate::rooms::build::{MAX_PDU_BYTES, event_id_of};
use crate::rooms::pdu::Pdu;
use crate::rooms::rules_for;
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue, redact};
use ruma::signatures::{PublicKeyMap, Verified, verify_event};
use ruma::state_res::check_pdu_format;
use ruma::{OwnedServerName, RoomVersionId, ServerName};
use serde_json::value::RawValue as RawJsonValue;
use std::collections::{BTreeMap, BTreeSet};

/// Servers whose keys one PDU may ask for, at most: the sender's server and, for a restricted
/// join, the authorising server sign; more names are noise an attacker could use to make us
/// fetch keys.
const MAX_SIGNING_SERVERS: usize = 4;

/// A PDU that passed format, signature and hash checks.
#[derive(Clone, Debug)]
pub struct CheckedPdu {
    /// The event as it will be stored and served (redacted where the hash did not match).
    pub pdu: Pdu,
    pub room_version: RoomVersionId,
    /// The content hash did not match: `pdu` is the redacted copy the spec says to keep.
    pub redacted: bool,
}

/// Parses a PDU as JSON and checks its format for `room_version`: what can be told before any
/// key is known. Refuses oversized PDUs (`M_TOO_LARGE`) and unknown room versions.
pub fn parse_pdu(room_version: &RoomVersionId, raw: &RawJsonValue) -> Result<CanonicalJsonObject> {
    let rules = rules_for(room_version)?;
    // The limit is on the PDU as sent, signatures included; checked before parsing so a huge
    // PDU costs nothing more.
    if raw.get().len() > MAX_PDU_BYTES {
        return Err(Error::too_large(format!("A PDU may be at most {MAX_PDU_BYTES} bytes")));
    }
    let object: CanonicalJsonObject = serde_json::from_str(raw.get())
        .map_err(|error| Error::bad_json(format!("The PDU is not canonical JSON: {error}")))?;
    check_pdu_format(&object, &rules.event_format)
        .map_err(|error| Error::bad_json(format!("The PDU is malformed: {error}")))?;
    Ok(object)
}

/// The key ids each server that signed the PDU names (what to ask the key ring for).
pub fn signing_keys_wanted(object: &CanonicalJsonObject) -> BTreeMap<OwnedServerName, BTreeSet<String>> {
    let mut wanted = BTreeMap::new();
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else { return wanted };
    for (server, keys) in signatures.iter().take(MAX_SIGNING_SERVERS) {
        let (Ok(server), CanonicalJsonValue::Object(keys)) = (ServerName::parse(server), keys) else { continue };
        wanted.insert(server, keys.keys().cloned().collect());
    }
    wanted
}

/// Verifies a parsed PDU's signatures against `keys` and its content hash, and computes its
/// event id. Bad or missing signatures are `M_FORBIDDEN`.
pub fn verify_pdu(
    room_version: &RoomVersionId,
    object: CanonicalJsonObject,
    keys: &PublicKeyMap,
) -> Result<CheckedPdu> {
    let rules = rules_for(room_version)?;
    let verified = verify_event(keys, &object, &rules)
        .map_err(|error| Error::forbidden(format!("The PDU's signatures do not verify: {error}")))?;
    // The reference hash covers the redacted form, so the id is the same for either copy.
    let event_id = event_id_of(&object, &rules).map_err(|error| Error::bad_json(error.to_string()))?;
    let (object, redacted) = match verified {
        Verified::All => (object, false),
        Verified::Signatures => {
            let redacted = redact(object, &rules.redaction, None)
                .map_err(|error| Error::bad_json(format!("The PDU cannot be redacted: {error}")))?;
            (redacted, true)
        }
    };
    // The format check has passed, so a PDU that still does not read is malformed, not our bug.
    let pdu = Pdu::from_canonical(event_id, object).map_err(|error| Error::bad_json(error.to_string()))?;
    if pdu.room_id.is_none() && !rules.authorization.room_create_event_id_as_room_id {
        return Err(Error::bad_json("The PDU has no room_id"));
    }
    Ok(CheckedPdu { pdu, room_version: room_version.clone(), redacted })
}

/// [`parse_pdu`] then [`verify_pdu`] with keys already at hand.
pub fn check_pdu_with_keys(
    room_version: &RoomVersionId,
    raw: &RawJsonValue,
    keys: &PublicKeyMap,
) -> Result<CheckedPdu> {
    let object = parse_pdu(room_version, raw)?;
    verify_pdu(room_version, object, keys)
}

/// The event id of a raw PDU whose checks failed, where it can be computed (for reporting).
pub fn event_id_of_raw(room_version: &RoomVersionId, raw: &RawJsonValue) -> Option<ruma::OwnedEventId> {
    let rules = rules_for(room_version).ok()?;
    let object: CanonicalJsonObject = serde_json::from_str(raw.get()).ok()?;
    event_id_of(&object, &rules).ok()
}
