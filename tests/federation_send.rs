//! Inbound federation between two real Hearth servers over TLS (fed-net's harness): B's users'
//! events reach A through `PUT /send/{txnId}`, signed by B and checked by A with B's key fetched
//! over federation; and A serves its room's DAG to B (a server in the room) but not to C (one
//! that is not), nor to B once the room's ACL denies it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;

use common::TestUser;
use common::federation::{FedServer, FederatedPair};
use common::remote_pdus::build_remote_pdu;
use hearth::testing::federation::client::FederationError;
use hearth::testing::federation::inbound::transaction::PduResults;
use hearth::testing::rooms::build::EventTemplate;
use hearth::testing::rooms::pdu::Pdu;
use reqwest::StatusCode;
use ruma::api::Direction;
use ruma::api::federation::authorization::get_event_authorization::v1 as event_auth;
use ruma::api::federation::backfill::get_backfill::v1 as backfill;
use ruma::api::federation::event::get_event::v1 as get_event;
use ruma::api::federation::event::get_event_by_timestamp::v1 as by_timestamp;
use ruma::api::federation::event::get_missing_events::v1 as missing;
use ruma::api::federation::event::get_room_state::v1 as get_state;
use ruma::api::federation::event::get_room_state_ids::v1 as state_ids;
use ruma::api::federation::transactions::send_transaction_message::v1 as send;
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedRoomId, OwnedTransactionId, RoomId, ServerName, UInt};
use serde_json::value::RawValue;
use serde_json::{Value, json};

const PW: &str = "federation-send-pw";

fn bob_of(server: &FedServer) -> String {
    format!("@bob:{}", server.name())
}

/// `sender`'s event as `from` builds it for the room `to` holds.
async fn pdu_from(from: &FedServer, to: &FedServer, room: &RoomId, sender: &str, template: EventTemplate) -> Pdu {
    build_remote_pdu(&to.server, (from.name(), &from.state().signing_key), room, sender, template, None).await
}

fn raw(pdu: &Pdu) -> Box<RawValue> {
    RawValue::from_string(pdu.canonical_json()).unwrap()
}

/// Sends a transaction from `from` to `to` naming `origin` in its body.
async fn transaction(
    from: &FedServer,
    to: &FedServer,
    txn_id: &str,
    origin: &ServerName,
    pdus: Vec<Box<RawValue>>,
) -> Result<PduResults, FederationError> {
    transaction_with_edus(from, to, txn_id, origin, pdus, Vec::new()).await
}

/// [`transaction`] carrying EDUs too.
async fn transaction_with_edus(
    from: &FedServer,
    to: &FedServer,
    txn_id: &str,
    origin: &ServerName,
    pdus: Vec<Box<RawValue>>,
    edus: Vec<Value>,
) -> Result<PduResults, FederationError> {
    let mut request =
        send::Request::new(OwnedTransactionId::from(txn_id), origin.to_owned(), MilliSecondsSinceUnixEpoch::now());
    request.pdus = pdus;
    request.edus = edus.iter().map(|edu| Raw::from_json(serde_json::value::to_raw_value(edu).unwrap())).collect();
    from.state().federation.send(to.name(), request).await.map(|response| response.pdus)
}

fn join(bob: &str) -> EventTemplate {
    EventTemplate::state("m.room.member", bob, json!({ "membership": "join" }))
}

fn text(body: &str) -> EventTemplate {
    EventTemplate::message("m.room.message", json!({ "msgtype": "m.text", "body": body }))
}

async fn timeline_since(server: &FedServer, user: &TestUser, room: &RoomId, since: &str) -> (Vec<Value>, String) {
    let (status, body) =
        server.server.get(&format!("/_matrix/client/v3/sync?timeout=0&since={since}"), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = body["rooms"]["join"][room.as_str()]["timeline"]["events"].as_array().cloned().unwrap_or_default();
    (events, body["next_batch"].as_str().unwrap().to_owned())
}

async fn next_batch(server: &FedServer, user: &TestUser) -> String {
    let (_, body) = server.server.get("/_matrix/client/v3/sync?timeout=0", user.token()).await;
    body["next_batch"].as_str().unwrap().to_owned()
}

fn occurrences(events: &[Value], event_id: &ruma::EventId) -> usize {
    events.iter().filter(|event| event["event_id"] == event_id.as_str()).count()
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, FederationError>, errcode: &str) {
    match result {
        Err(FederationError::Remote { errcode: got, status, .. }) => {
            assert_eq!(got, errcode, "status {status}");
            assert!(status.is_client_error(), "{status}");
        }
        other => panic!("expected {errcode}, got {other:?}"),
    }
}

/// Alice's public room on A; B's bob joined through a transaction.
async fn room_with_remote_member(pair: &FederatedPair) -> (TestUser, OwnedRoomId, Pdu) {
    let (a, b) = (&pair.a, &pair.b);
    let alice = a.server.register("alice", PW).await;
    let room = a.server.create_room(&alice, json!({ "preset": "public_chat", "room_version": "12" })).await;
    let room = RoomId::parse(room).unwrap();
    let bob = bob_of(b);
    let join = pdu_from(b, a, &room, &bob, join(&bob)).await;
    let results = transaction(b, a, "join", b.name(), vec![raw(&join)]).await.expect("the transaction is taken");
    assert_eq!(results.get(&join.event_id), Some(&Ok(())), "{results:?}");
    (alice, room, join)
}

#[tokio::test]
async fn a_transaction_reaches_local_sync_once_and_its_retry_is_processed_once() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let (alice, room, _) = room_with_remote_member(&pair).await;
    let since = next_batch(a, &alice).await;
    let bob = bob_of(b);

    let message = pdu_from(b, a, &room, &bob, text("over the wire")).await;
    // Alongside: one forged PDU (signed by a key that is not B's) and one oversized.
    let impostor = hearth::signing_key::SigningKey::generate().unwrap();
    let forged = build_remote_pdu(&a.server, (b.name(), &impostor), &room, &bob, text("forged"), None).await;
    let mut big = ruma::CanonicalJsonObject::clone(forged.object().expect("a PDU's tree"));
    big.insert("padding".into(), ruma::CanonicalJsonValue::String("p".repeat(70_000)));
    let big = RawValue::from_string(ruma::CanonicalJsonValue::Object(big).to_string()).unwrap();
    let pdus = vec![raw(&message), raw(&forged), big];

    let first = transaction(b, a, "txn-1", b.name(), pdus.clone()).await.expect("accepted");
    assert_eq!(first.get(&message.event_id), Some(&Ok(())), "{first:?}");
    assert!(matches!(first.get(&forged.event_id), Some(Err(_))), "the forged PDU is reported: {first:?}");
    let (events, next) = timeline_since(a, &alice, &room, &since).await;
    assert_eq!(occurrences(&events, &message.event_id), 1, "{events:?}");
    assert_eq!(
        events.iter().filter(|event| event["sender"] == bob.as_str()).count(),
        1,
        "only the valid PDU: {events:?}"
    );

    // The same transaction again: the first answer, and nothing new for the client.
    let again = transaction(b, a, "txn-1", b.name(), pdus).await.expect("a retry is fine");
    assert_eq!(again, first);
    let (events, _) = timeline_since(a, &alice, &room, &next).await;
    assert_eq!(occurrences(&events, &message.event_id), 0, "delivered twice: {events:?}");
    let forged_rows = a
        .server
        .count(&format!(
            "SELECT count(*) FROM event_ids i JOIN events e USING (event_nid) WHERE i.event_id = '{}'",
            forged.event_id
        ))
        .await;
    assert_eq!(forged_rows, 0);

    // A PDU whose parent A never received, which B cannot supply (B does not hold the room
    // here): the gap is asked for, cannot be filled, and the PDU is refused with nothing stored.
    let unseen = pdu_from(b, a, &room, &bob, text("never sent")).await;
    let orphan =
        build_remote_pdu(&a.server, (b.name(), &b.state().signing_key), &room, &bob, text("orphan"), None).await;
    let mut orphan_json = ruma::CanonicalJsonObject::clone(orphan.object().expect("a PDU's tree"));
    orphan_json.insert(
        "prev_events".into(),
        ruma::CanonicalJsonValue::Array(vec![ruma::CanonicalJsonValue::String(unseen.event_id.to_string())]),
    );
    orphan_json.remove("signatures");
    orphan_json.remove("hashes");
    let rules = ruma::RoomVersionId::V12.rules().unwrap();
    ruma::signatures::hash_and_sign_event(
        b.name().as_str(),
        &b.state().signing_key.key_pair,
        &mut orphan_json,
        &rules.redaction,
    )
    .unwrap();
    let orphan_id = hearth::testing::rooms::build::event_id_of(&orphan_json, &rules).unwrap();
    let orphan_raw = RawValue::from_string(ruma::CanonicalJsonValue::Object(orphan_json).to_string()).unwrap();
    let results = transaction(b, a, "txn-gap", b.name(), vec![orphan_raw]).await.expect("answered");
    assert!(matches!(results.get(&orphan_id), Some(Err(_))), "{results:?}");
    let orphan_rows = a
        .server
        .count(&format!(
            "SELECT count(*) FROM event_ids i JOIN events e USING (event_nid) WHERE i.event_id = '{orphan_id}'"
        ))
        .await;
    assert_eq!(orphan_rows, 0);

    // A transaction naming another origin than the server that signed it.
    let other = ServerName::parse("elsewhere.test").unwrap();
    let spoof = pdu_from(b, a, &room, &bob, text("spoofed origin")).await;
    assert_refused(transaction(b, a, "txn-2", &other, vec![raw(&spoof)]).await, "M_FORBIDDEN");
    let spoof_rows = a
        .server
        .count(&format!(
            "SELECT count(*) FROM event_ids i JOIN events e USING (event_nid) WHERE i.event_id = '{}'",
            spoof.event_id
        ))
        .await;
    assert_eq!(spoof_rows, 0);

    // A room key sent with the message it opens (a to-device EDU in the message's
    // transaction): a client's sync shows the key no later than the message, so the client
    // can decrypt the message when it sees it. A long poll is waiting when the transaction
    // comes, so it answers with whatever is stored first.
    let since = next_batch(a, &alice).await;
    let sealed = pdu_from(b, a, &room, &bob, text("sealed")).await;
    let key = json!({"edu_type": "m.direct_to_device", "content": {
        "sender": bob, "type": "m.room_key_test", "message_id": "key-1",
        "messages": {alice.user_id.as_str(): {alice.device_id.as_str(): {"session_key": "opens sealed"}}},
    }});
    let syncs = async {
        let mut since = since.clone();
        let mut key_seen = false;
        loop {
            let path = format!("/_matrix/client/v3/sync?timeout=10000&since={since}");
            let (status, body) = a.server.get(&path, alice.token()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            since = body["next_batch"].as_str().unwrap().to_owned();
            let to_device = body["to_device"]["events"].as_array().cloned().unwrap_or_default();
            key_seen |= to_device.iter().any(|event| event["content"]["session_key"] == "opens sealed");
            let events = body["rooms"]["join"][room.as_str()]["timeline"]["events"].as_array().cloned();
            if occurrences(&events.unwrap_or_default(), &sealed.event_id) > 0 {
                return key_seen;
            }
        }
    };
    let send = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        transaction_with_edus(b, a, "txn-key", b.name(), vec![raw(&sealed)], vec![key]).await.expect("accepted")
    };
    let (key_first, results) = tokio::join!(tokio::time::timeout(std::time::Duration::from_secs(30), syncs), send);
    assert_eq!(results.get(&sealed.event_id), Some(&Ok(())), "{results:?}");
    assert!(key_first.expect("alice's sync shows the message"), "the message reached alice's sync before its key");
}

#[tokio::test]
async fn the_dag_is_served_to_servers_in_the_room_and_refused_to_others() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let (alice, room, join) = room_with_remote_member(&pair).await;
    let hello = a.server.send_text(&alice, room.as_str(), "t1", "hello bob").await;
    let hello = ruma::EventId::parse(hello).unwrap();
    let client = &b.state().federation;

    let event = client.send(a.name(), get_event::Request::new(hello.clone())).await.expect("/event");
    let served: Value = serde_json::from_str(event.pdu.get()).unwrap();
    assert_eq!(served["content"]["body"], "hello bob");
    assert_eq!(event.origin.as_str(), a.name().as_str());

    let ids = client.send(a.name(), state_ids::Request::new(hello.clone(), room.clone())).await.expect("/state_ids");
    assert!(ids.pdu_ids.contains(&join.event_id), "bob's join is in the state before the message: {ids:?}");
    assert!(!ids.pdu_ids.contains(&hello), "the state before a message does not hold it");
    assert!(!ids.auth_chain_ids.is_empty());
    let state = client.send(a.name(), get_state::Request::new(hello.clone(), room.clone())).await.expect("/state");
    assert_eq!(state.pdus.len(), ids.pdu_ids.len());
    assert_eq!(state.auth_chain.len(), ids.auth_chain_ids.len());

    let auth = client.send(a.name(), event_auth::Request::new(room.clone(), hello.clone())).await.expect("/event_auth");
    let auth_types: Vec<String> = auth
        .auth_chain
        .iter()
        .map(|pdu| serde_json::from_str::<Value>(pdu.get()).unwrap()["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(auth_types.contains(&"m.room.create".to_owned()), "{auth_types:?}");
    assert!(auth_types.contains(&"m.room.power_levels".to_owned()), "{auth_types:?}");

    let page = client
        .send(a.name(), backfill::Request::new(room.clone(), vec![hello.clone()], UInt::from(3u32)))
        .await
        .expect("/backfill");
    assert_eq!(page.pdus.len(), 3);
    let first: Value = serde_json::from_str(page.pdus[0].get()).unwrap();
    assert_eq!(first["content"]["body"], "hello bob", "newest first");
    let second: Value = serde_json::from_str(page.pdus[1].get()).unwrap();
    assert_eq!(second["state_key"], bob_of(b).as_str(), "then bob's join, its parent");

    let mut gap = missing::Request::new(room.clone(), vec![join.event_id.clone()], vec![hello.clone()]);
    gap.limit = UInt::from(10u32);
    let gap = client.send(a.name(), gap).await.expect("/get_missing_events");
    assert!(gap.events.is_empty(), "nothing lies between bob's join and the message: {:?}", gap.events);

    let found = client
        .send(
            a.name(),
            by_timestamp::Request::new(room.clone(), MilliSecondsSinceUnixEpoch::now(), Direction::Backward),
        )
        .await
        .expect("/timestamp_to_event");
    assert_eq!(found.event_id, hello);

    // A server with nobody in the room sees nothing.
    let c = FedServer::start(pair.ca.clone()).await;
    let outsider = &c.state().federation;
    assert_refused(outsider.send(a.name(), get_event::Request::new(hello.clone())).await, "M_FORBIDDEN");
    assert_refused(outsider.send(a.name(), state_ids::Request::new(hello.clone(), room.clone())).await, "M_FORBIDDEN");
    assert_refused(
        outsider.send(a.name(), backfill::Request::new(room.clone(), vec![hello.clone()], UInt::from(3u32))).await,
        "M_FORBIDDEN",
    );
    assert_refused(outsider.send(a.name(), event_auth::Request::new(room.clone(), hello.clone())).await, "M_FORBIDDEN");

    // Once the ACL denies B, B is refused too, and its PDUs are not taken.
    let (status, body) = a
        .server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.server_acl/"),
            alice.token(),
            json!({ "allow": ["*"], "deny": [b.name().host()], "allow_ip_literals": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_refused(client.send(a.name(), get_event::Request::new(hello.clone())).await, "M_FORBIDDEN");
    let denied = pdu_from(b, a, &room, &bob_of(b), text("denied")).await;
    let results = transaction(b, a, "after-acl", b.name(), vec![raw(&denied)]).await.expect("the transaction");
    assert!(matches!(results.get(&denied.event_id), Some(Err(_))), "{results:?}");
}
