//! Checking stored events the way a federating server checks what it receives: PDU format,
//! reference-hash event id, content hash and signature, and `auth_events` equal to the
//! spec's selection from the state before the event. Used by tests over whole databases
//! (and by the inbound federation pipeline once it exists).

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::build::event_id_of;
use crate::rooms::pdu::Pdu;
use crate::rooms::rules_for;
use crate::store::Store;
use ruma::events::TimelineEventType;
use ruma::serde::Base64;
use ruma::signatures::{PublicKeyMap, Verified, verify_event};
use ruma::state_res::{auth_types_for_event, check_pdu_format};
use ruma::{RoomVersionId, ServerName};
use std::collections::{BTreeMap, BTreeSet};

/// Verifies every stored event of every room; returns one line per problem found.
pub async fn verify_all_events(
    pool: &Store,
    server_name: &ServerName,
    key_id: &str,
    public_key: &str,
) -> Result<Vec<String>> {
    let key = Base64::parse(public_key).map_err(|e| Error::internal(format!("public key: {e}")))?;
    let keys: PublicKeyMap = BTreeMap::from([(server_name.to_string(), BTreeMap::from([(key_id.to_owned(), key)]))]);
    let mut problems = Vec::new();
    for (room_id, version) in db::rooms::all(pool).await? {
        let version = RoomVersionId::try_from(version.as_str()).map_err(|e| Error::internal(e.to_string()))?;
        let rules = rules_for(&version)?;
        for stored in db::events::all_in_room(pool, &room_id).await? {
            let pdu = Pdu::from_stored(&stored.event_id, &stored.json)?;
            let mut complain = |what: String| problems.push(format!("{room_id} {}: {what}", stored.event_id));
            // Events from other servers were checked on receipt against their keys (which
            // this function is not given), and a remote server chose their auth events from
            // its view of the room (which an outlier's or soft-failed event's state need not
            // match): their format and id are what can be checked here.
            let remote = pdu.sender.server_name() != server_name;
            let object = match pdu.object() {
                Ok(object) => object,
                Err(error) => {
                    complain(format!("not canonical JSON: {error}"));
                    continue;
                }
            };
            if let Err(error) = check_pdu_format(object, &rules.event_format) {
                complain(format!("bad PDU format: {error}"));
            }
            match event_id_of(object, &rules) {
                Ok(id) if id == pdu.event_id => {}
                Ok(id) => complain(format!("event id should be {id}")),
                Err(error) => complain(format!("no reference hash: {error}")),
            }
            if remote {
                continue;
            }
            match verify_event(&keys, object, &rules) {
                Ok(Verified::All) => {}
                Ok(Verified::Signatures) => complain("content hash does not match".to_owned()),
                Err(error) => complain(format!("signature does not verify: {error}")),
            }
            if pdu.kind == TimelineEventType::RoomCreate && rules.authorization.room_create_event_id_as_room_id {
                if pdu.room_id.is_some() {
                    complain("a v12 create event must not carry room_id".to_owned());
                }
                if room_id != format!("!{}", &pdu.event_id.as_str()[1..]) {
                    complain("the room id is not the create event's reference hash".to_owned());
                }
            }
            // A local user's membership of a room this server is not in (rejecting another
            // server's invitation) was built on the resident server's template: its state is
            // unknown here, so is the selection.
            if stored.state_before.is_none()
                && stored.stream_position.is_some()
                && pdu.kind == TimelineEventType::RoomMember
            {
                continue;
            }
            let expected = expected_auth_events(pool, &pdu, stored.state_before, &rules).await?;
            let actual: BTreeSet<String> = pdu.auth_events.iter().map(ToString::to_string).collect();
            if expected != actual {
                complain(format!("auth_events {actual:?} differ from the selection {expected:?}"));
            }
        }
    }
    Ok(problems)
}

async fn expected_auth_events(
    pool: &Store,
    pdu: &Pdu,
    state_before: Option<i64>,
    rules: &ruma::room_version_rules::RoomVersionRules,
) -> Result<BTreeSet<String>> {
    let types =
        auth_types_for_event(&pdu.kind, &pdu.sender, pdu.state_key.as_deref(), &pdu.content, &rules.authorization)
            .map_err(|e| Error::internal(format!("auth types of {}: {e}", pdu.event_id)))?;
    let Some(snapshot) = state_before else { return Ok(BTreeSet::new()) };
    let keys: Vec<(String, String)> = types.iter().map(|(t, k)| (t.to_string(), k.clone())).collect();
    let entries = db::state::snapshot_state_for_keys(pool, snapshot, &keys).await?;
    Ok(entries.into_iter().map(|entry| entry.event_id).collect())
}
