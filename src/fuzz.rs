//! Entry points for fuzzing the paths that other servers will feed once federation is on:
//! canonical JSON, PDUs (parsing, format, hashes, signatures, redaction) and the event
//! authorisation rules. Each takes arbitrary bytes and must neither panic nor break an
//! invariant (it panics, on purpose, only when an invariant breaks).
//!
//! `fuzz/` holds the `cargo fuzz` targets that drive them with libFuzzer (nightly, by hand or in
//! CI for a bounded time); `tests/fuzz_replay.rs` replays the checked-in corpus and a seeded
//! stream of mutations on stable in every test run.
#![allow(clippy::panic)] // a broken invariant must be a crash the fuzzer reports

use crate::rooms::build::event_id_of;
use crate::rooms::pdu::Pdu;
use ruma::RoomVersionId;
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue, redact};
use ruma::events::StateEventType;
use ruma::serde::Base64;
use ruma::signatures::{PublicKeyMap, verify_event};
use ruma::state_res::{check_pdu_format, check_state_dependent_auth_rules, check_state_independent_auth_rules};
use ruma::{EventId, OwnedEventId};
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

/// The room versions whose rules the targets try every input under.
const VERSIONS: [RoomVersionId; 4] = [RoomVersionId::V6, RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];

/// Canonical JSON: whatever parses must serialise to a text that parses back to the same
/// value, and serialising that again must give the same text (canonical form is a fixed
/// point). The JSON edge check runs on the same bytes and must not panic either.
pub fn canonical_json(data: &[u8]) {
    let _ = crate::http::json_body::check(data);
    let Ok(value) = serde_json::from_slice::<CanonicalJsonValue>(data) else { return };
    let text = value.to_string();
    let again: CanonicalJsonValue = match serde_json::from_str(&text) {
        Ok(again) => again,
        Err(error) => panic!("canonical JSON {text:?} does not parse back: {error}"),
    };
    let text_again = again.to_string();
    if again != value || text_again != text {
        panic!("canonical JSON is not a fixed point: {text:?}");
    }
}

/// A PDU from another server, under each room version's rules: format check, reference
/// hash (the event id), Hearth's own parsing, signature and hash verification against a
/// fixed key, and redaction. A redacted PDU must keep its reference hash. Returns under how
/// many versions Hearth could parse it as a PDU.
pub fn pdu(data: &[u8]) -> usize {
    let Ok(object) = serde_json::from_slice::<CanonicalJsonObject>(data) else { return 0 };
    let mut parsed = 0;
    for version in &VERSIONS {
        let Some(rules) = version.rules() else { continue };
        let _ = check_pdu_format(&object, &rules.event_format);
        let Ok(event_id) = event_id_of(&object, &rules) else { continue };
        if Pdu::from_canonical(event_id.clone(), object.clone()).is_ok() {
            parsed += 1;
        }
        let _ = verify_event(&KEYS, &object, &rules);
        if let Ok(redacted) = redact(object.clone(), &rules.redaction, None)
            && let Ok(redacted_id) = event_id_of(&redacted, &rules)
            && redacted_id != event_id
        {
            panic!("redaction changed the reference hash of {event_id} under {version}");
        }
    }
    parsed
}

/// The authorisation rules: an arbitrary event against a fixed, valid room (creator joined,
/// default power levels, public join rule), under each room version. Only ruma's rules and
/// Hearth's PDU type are exercised; any outcome but a panic is fine. Returns under how many
/// versions the event was allowed (so the replay test can tell the fixture room is sound).
pub fn event_auth(data: &[u8]) -> usize {
    let Ok(object) = serde_json::from_slice::<CanonicalJsonObject>(data) else { return 0 };
    let Ok(event_id) = OwnedEventId::try_from("$fuzzed") else { return 0 };
    let Ok(incoming) = Pdu::from_canonical(event_id, object) else { return 0 };
    let by_id: HashMap<&EventId, &Pdu> = ROOM.iter().map(|pdu| (&*pdu.event_id, pdu)).collect();
    let mut allowed = 0;
    for version in &VERSIONS {
        let Some(rules) = version.rules() else { continue };
        let independent = check_state_independent_auth_rules(&rules.authorization, &incoming, |id: &EventId| {
            by_id.get(id).map(|pdu| (*pdu).clone())
        });
        let dependent =
            check_state_dependent_auth_rules(&rules.authorization, &incoming, |kind: &StateEventType, key: &str| {
                ROOM.iter()
                    .find(|pdu| pdu.kind.to_string() == kind.to_string() && pdu.state_key.as_deref() == Some(key))
                    .cloned()
            });
        if independent.is_ok() && dependent.is_ok() {
            allowed += 1;
        }
    }
    allowed
}

/// One ed25519 key of a server named `fuzz.example`: signatures by it never verify, which
/// is fine — the target looks for panics, not for acceptance.
static KEYS: LazyLock<PublicKeyMap> = LazyLock::new(|| {
    let key = Base64::new(vec![7; 32]);
    BTreeMap::from([("fuzz.example".to_owned(), BTreeMap::from([("ed25519:fuzz".to_owned(), key)]))])
});

/// The fixed room the auth target checks events against.
static ROOM: LazyLock<Vec<Pdu>> = LazyLock::new(|| {
    let events = [
        (
            "$create",
            r#"{"type":"m.room.create","state_key":"","sender":"@alice:fuzz.example","content":{"creator":"@alice:fuzz.example","room_version":"10"},"room_id":"!room:fuzz.example","origin_server_ts":1,"depth":1,"prev_events":[],"auth_events":[],"hashes":{"sha256":"x"},"signatures":{}}"#,
        ),
        (
            "$join",
            r#"{"type":"m.room.member","state_key":"@alice:fuzz.example","sender":"@alice:fuzz.example","content":{"membership":"join"},"room_id":"!room:fuzz.example","origin_server_ts":2,"depth":2,"prev_events":["$create"],"auth_events":["$create"],"hashes":{"sha256":"x"},"signatures":{}}"#,
        ),
        (
            "$power",
            r#"{"type":"m.room.power_levels","state_key":"","sender":"@alice:fuzz.example","content":{"users":{"@alice:fuzz.example":100}},"room_id":"!room:fuzz.example","origin_server_ts":3,"depth":3,"prev_events":["$join"],"auth_events":["$create","$join"],"hashes":{"sha256":"x"},"signatures":{}}"#,
        ),
        (
            "$rules",
            r#"{"type":"m.room.join_rules","state_key":"","sender":"@alice:fuzz.example","content":{"join_rule":"public"},"room_id":"!room:fuzz.example","origin_server_ts":4,"depth":4,"prev_events":["$power"],"auth_events":["$create","$join","$power"],"hashes":{"sha256":"x"},"signatures":{}}"#,
        ),
    ];
    events.iter().filter_map(|(id, json)| Pdu::from_stored(id, json).ok()).collect()
});
