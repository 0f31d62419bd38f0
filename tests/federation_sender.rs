//! The federation sender (issue #16 item 7): every local event of a room with a member on
//! another server reaches that server through the durable per-destination queue — in order,
//! once, in transactions of at most 50 PDUs, retried under the same transaction id while the
//! server is down, and nothing lost when either side restarts.
//!
//! The other server is a real TLS peer on loopback (`common::federation_peer`) that records
//! every transaction it gets; its user joins the Hearth room the way a remote server does
//! (`make_join` template signed with the peer's key, `send_join`). The last test has a second
//! Hearth as the other server, whose user watches through `/sync`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;

use common::federation::{FedServer, FederatedPair, TestCa};
use common::federation_peer::{Answer, Received, RecordingPeer};
use common::{TestServer, TestUser, assert_error, encode};
use hearth::testing::federation::membership::{RemoteMembership, make_membership, send_membership};
use hearth::testing::rooms::build::sign_new_event;
use reqwest::StatusCode;
use ruma::canonical_json::CanonicalJsonObject;
use ruma::serde::Base64;
use ruma::signatures::PublicKeyMap;
use ruma::{OwnedRoomId, OwnedUserId, RoomVersionId};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const PW: &str = "sender-test-pw";

/// The peer's user `localpart` joins `room` on `a`, as its server would: a `make_join`
/// template signed with the peer's key, sent back through `send_join`.
async fn join_from_peer(a: &FedServer, peer: &RecordingPeer, room: &str, localpart: &str) -> OwnedUserId {
    let user = OwnedUserId::try_from(format!("@{localpart}:{}", peer.name())).unwrap();
    let room_id = OwnedRoomId::try_from(room).unwrap();
    let versions = [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];
    let rooms = a.state().rooms();
    let template =
        make_membership(rooms, peer.name(), &room_id, &user, RemoteMembership::Join, Some(&versions)).await.unwrap();
    let object: CanonicalJsonObject = serde_json::from_str(template.event.get()).unwrap();
    let rules = template.room_version.rules().unwrap();
    let pdu = sign_new_event(object, &rules, peer.name(), &peer.key).unwrap();
    let raw = serde_json::value::RawValue::from_string(pdu.canonical_json()).unwrap();
    let public = Base64::parse(peer.key.public_key_base64()).unwrap();
    let keys: PublicKeyMap = BTreeMap::from([(peer.name().to_string(), BTreeMap::from([(peer.key.key_id(), public)]))]);
    send_membership(rooms, &keys, peer.name(), (&room_id, &pdu.event_id), &raw, RemoteMembership::Join).await.unwrap();
    user
}

async fn say_many(server: &TestServer, user: &TestUser, room: &str, from: usize, count: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    for n in from..from + count {
        let body = format!("message {n}");
        server.send_text(user, room, &format!("txn-{n}"), &body).await;
        bodies.push(body);
    }
    bodies
}

/// The bodies of the message PDUs among `pdus`, in order.
fn bodies(pdus: &[Value]) -> Vec<String> {
    pdus.iter()
        .filter(|pdu| pdu["type"] == "m.room.message")
        .map(|pdu| pdu["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

fn accepted_bodies(received: &[Received]) -> Vec<String> {
    let pdus: Vec<Value> = received.iter().filter(|txn| txn.accepted).flat_map(|txn| txn.pdus.clone()).collect();
    bodies(&pdus)
}

/// Every transaction is A's, signed for the peer, and at most 50 PDUs long; no accepted PDU
/// came twice.
#[track_caller]
fn assert_well_formed(received: &[Received], origin: &str) {
    let mut seen = HashSet::new();
    for txn in received {
        assert_eq!(txn.origin, origin, "{txn:?}");
        assert!(txn.signed_for_us, "transaction {} is not X-Matrix signed for the peer", txn.txn_id);
        assert!(!txn.pdus.is_empty() && txn.pdus.len() <= 50, "{} PDUs in {}", txn.pdus.len(), txn.txn_id);
        if txn.accepted {
            for pdu in &txn.pdus {
                assert!(seen.insert(pdu.to_string()), "a PDU was accepted twice: {pdu}");
            }
        }
    }
}

/// The operator's view of one destination: (depth, failures, last success set).
async fn destination_status(server: &TestServer, destination: &str) -> (i64, i32, bool) {
    let rows = hearth::testing::db::federation_queue::status(&server.state.pool).await.unwrap();
    rows.into_iter()
        .find(|row| row.destination == destination)
        .map(|row| (row.depth, row.failures.unwrap_or(0), row.last_success_ts.is_some()))
        .unwrap_or((0, 0, false))
}

async fn wait_for_status(server: &TestServer, destination: &str, what: &str, done: impl Fn((i64, i32, bool)) -> bool) {
    for _ in 0..600 {
        if done(destination_status(server, destination).await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("waiting for {what}: {:?}", destination_status(server, destination).await);
}

/// Waits until the operator's view shows the destination healthy with nothing queued.
async fn wait_until_drained(server: &TestServer, destination: &str) {
    wait_for_status(server, destination, "the queue to drain", |(depth, failures, success)| {
        depth == 0 && failures == 0 && success
    })
    .await;
}

/// The peer, Hearth (A) trusting the same test CA, A's user alice and her public room.
async fn start() -> (RecordingPeer, FedServer, TestUser, String) {
    let ca = Arc::new(TestCa::new());
    let peer = RecordingPeer::start(ca.clone()).await;
    let a = FedServer::start(ca).await;
    let alice = a.server.register("alice", PW).await;
    let room = a.server.create_room(&alice, json!({"preset": "public_chat"})).await;
    (peer, a, alice, room)
}

#[tokio::test]
async fn local_events_reach_a_joined_server_in_order_once_and_a_kicked_server_hears_of_it() {
    let (mut peer, a, alice, room) = start().await;
    a.server.send_text(&alice, &room, "alone", "before anyone else").await;
    assert_eq!(a.server.count("SELECT COUNT(*) FROM federation_queue").await, 0, "no remote server, nothing queued");

    let bob = join_from_peer(&a, &peer, &room, "bob").await;
    let sent = say_many(&a.server, &alice, &room, 0, 120).await;
    let received = peer.wait_until("120 messages", |received| accepted_bodies(received).len() >= 120).await;
    assert_well_formed(&received, a.name().as_str());
    // Exactly what was said after the peer's user joined, in order; nothing from before, and
    // not the join the peer itself sent.
    assert_eq!(accepted_bodies(&received), sent);
    let all: Vec<Value> = received.iter().flat_map(|txn| txn.pdus.clone()).collect();
    assert!(all.iter().all(|pdu| pdu["sender"] == alice.user_id.as_str()), "only A's events go out");
    wait_until_drained(&a.server, peer.name().as_str()).await;

    // Kicking the peer's last user: its server must hear of it although no member is left.
    let (status, body) =
        a.server.post(&format!("/_matrix/client/v3/rooms/{room}/kick"), alice.token(), json!({"user_id": bob})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let received = peer
        .wait_until("the kick", |received| {
            received.iter().flat_map(|txn| &txn.pdus).any(|pdu| {
                pdu["type"] == "m.room.member"
                    && pdu["state_key"] == bob.as_str()
                    && pdu["content"]["membership"] == "leave"
            })
        })
        .await;
    assert_well_formed(&received, a.name().as_str());
    // After that, the room has no member there: nothing more is queued for it (the peer is
    // down, so anything queued would stay visible).
    peer.stop().await;
    a.server.send_text(&alice, &room, "after-kick", "nobody over there now").await;
    assert_eq!(a.server.count("SELECT COUNT(*) FROM federation_queue").await, 0);
}

#[tokio::test]
async fn a_server_that_was_down_gets_everything_once_under_stable_transaction_ids() {
    let (mut peer, a, alice, room) = start().await;
    join_from_peer(&a, &peer, &room, "bob").await;
    let destination = peer.name().to_string();

    // Down, then answering with errors: every attempt fails, and is tried again later.
    peer.stop().await;
    let mut sent = say_many(&a.server, &alice, &room, 0, 60).await;
    wait_for_status(&a.server, &destination, "failures while the peer is down", |(depth, failures, _)| {
        depth == 60 && failures >= 1
    })
    .await;
    peer.answer(Answer::Fail(StatusCode::SERVICE_UNAVAILABLE));
    peer.restart().await;
    sent.extend(say_many(&a.server, &alice, &room, 60, 60).await);
    let failed = peer.wait_until("an attempt while failing", |received| !received.is_empty()).await;
    peer.answer(Answer::Accept);

    let received = peer.wait_until("all 120", |received| accepted_bodies(received).len() >= 120).await;
    assert_well_formed(&received, a.name().as_str());
    assert_eq!(accepted_bodies(&received), sent, "in order, none lost, none twice");
    // A transaction refused is sent again as it was: same id, same PDUs.
    let first_failed = &failed[0];
    let retried = received.iter().find(|txn| txn.accepted).unwrap();
    assert_eq!(retried.txn_id, first_failed.txn_id);
    assert_eq!(retried.pdus, first_failed.pdus);
    // The backlog went out in full transactions.
    let sizes: Vec<usize> = received.iter().filter(|txn| txn.accepted).map(|txn| txn.pdus.len()).collect();
    assert!(sizes.iter().filter(|size| **size == 50).count() >= 2, "{sizes:?}");
    wait_until_drained(&a.server, &destination).await;
}

#[tokio::test]
async fn a_restart_of_the_sending_server_loses_nothing() {
    let (peer, a, alice, room) = start().await;
    let origin = a.name().to_string();
    join_from_peer(&a, &peer, &room, "bob").await;

    peer.answer(Answer::Fail(StatusCode::BAD_GATEWAY));
    let mut sent = say_many(&a.server, &alice, &room, 0, 60).await;
    let failed = peer.wait_until("an attempt before the restart", |received| !received.is_empty()).await;
    let a = a.restart().await;
    sent.extend(say_many(&a.server, &alice, &room, 60, 60).await);
    peer.answer(Answer::Accept);

    let received = peer.wait_until("all 120", |received| accepted_bodies(received).len() >= 120).await;
    assert_well_formed(&received, &origin);
    assert_eq!(accepted_bodies(&received), sent, "in order, none lost, none twice");
    // The transaction formed before the restart is the one sent after it.
    assert_eq!(received.iter().find(|txn| txn.accepted).unwrap().txn_id, failed[0].txn_id);
}

#[tokio::test]
async fn two_processes_on_one_database_send_each_event_once() {
    let (peer, a, alice, room) = start().await;
    join_from_peer(&a, &peer, &room, "bob").await;
    // A second Hearth process on A's database, with A's name and key: its sender serves the
    // same queue (woken by A's commits through LISTEN/NOTIFY).
    let config = a.state().config.clone();
    let key = hearth::signing_key::SigningKey::load_or_generate(&config.data_dir.join("signing.key")).unwrap();
    let options = hearth::testing::db::embedded::connect_options(&common::cluster_dir(), &a.server.database);
    let pool = hearth::testing::db::open_pool(options, 10).await.unwrap();
    let second = hearth::state::AppState::new(config, pool, key).await.unwrap();

    // Refusals first, so that both processes have a formed transaction to retry and the
    // backlog to take over; only the destination locks keep them from sending it twice.
    peer.answer(Answer::Fail(StatusCode::SERVICE_UNAVAILABLE));
    let sent = say_many(&a.server, &alice, &room, 0, 120).await;
    peer.answer(Answer::Accept);
    let received = peer.wait_until("all 120", |received| accepted_bodies(received).len() >= 120).await;
    assert_well_formed(&received, a.name().as_str());
    assert_eq!(accepted_bodies(&received), sent, "in order, none lost, none twice");
    let accepted_ids: Vec<&str> = received.iter().filter(|txn| txn.accepted).map(|txn| txn.txn_id.as_str()).collect();
    let distinct: HashSet<&str> = accepted_ids.iter().copied().collect();
    assert_eq!(distinct.len(), accepted_ids.len(), "a transaction was accepted twice: {accepted_ids:?}");
    second.shutdown().await;
}

/// `user`'s incremental `/sync` from `since` (timeline up to 200 events per room): the bodies
/// of `room`'s new messages, and the next token.
async fn synced_bodies(server: &TestServer, user: &TestUser, room: &str, since: &str) -> (Vec<String>, String) {
    let filter = encode(r#"{"room":{"timeline":{"limit":200}}}"#);
    let path = format!("/_matrix/client/v3/sync?timeout=1000&filter={filter}&since={since}");
    let (status, body) = server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let timeline = &body["rooms"]["join"][room]["timeline"];
    assert_ne!(timeline["limited"], true, "the sync skipped messages: {timeline}");
    let events: Vec<Value> = timeline["events"].as_array().cloned().unwrap_or_default();
    (bodies(&events), body["next_batch"].as_str().unwrap().to_owned())
}

/// A second Hearth as the other server, stopped while A sends and restarted on the same port
/// and database, as its user observes it. (The transaction sizes are checked with the
/// recording peer above: B's answers do not list the PDUs it accepted.)
#[tokio::test]
async fn a_hearth_that_was_down_shows_its_users_everything_once_in_order() {
    let pair = FederatedPair::start().await;
    let (alice, bob, room) = pair.alice_and_bob_in_a_room(PW).await;
    let (a, b) = (&pair.a, pair.b);
    let (status, body) = b.server.get("/_matrix/client/v3/sync", bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut since = body["next_batch"].as_str().unwrap().to_owned();
    // Live first: a message on A reaches bob's sync on B.
    let mut sent = say_many(&a.server, &alice, &room, 0, 1).await;
    let mut seen = Vec::new();
    while seen.len() < sent.len() {
        let (bodies, next) = synced_bodies(&b.server, &bob, &room, &since).await;
        seen.extend(bodies);
        since = next;
    }

    // B goes down; A goes on; B comes back on the same port and database.
    let b_name = b.name().to_string();
    let stopped = b.stop().await;
    sent.extend(say_many(&a.server, &alice, &room, 1, 120).await);
    wait_for_status(&a.server, &b_name, "A noticing B is down", |(depth, failures, _)| depth > 0 && failures >= 1)
        .await;
    let b = stopped.start().await;
    let started = std::time::Instant::now();
    while seen.len() < sent.len() {
        assert!(started.elapsed() < Duration::from_secs(90), "bob saw only {} of {}", seen.len(), sent.len());
        let (bodies, next) = synced_bodies(&b.server, &bob, &room, &since).await;
        seen.extend(bodies);
        since = next;
    }
    assert_eq!(seen, sent, "bob sees every message once, in order");
    wait_until_drained(&a.server, &b_name).await;
}

/// Client requests that need another server answer 502 `M_UNKNOWN` (as Synapse does) when that
/// server answers what no Matrix server would — a bare 404: the peer serves only `/send` — or
/// cannot be reached at all; never a 4xx that blames the client, never a 500.
#[tokio::test]
async fn client_requests_through_a_server_that_answers_garbage_or_is_down_are_bad_gateways() {
    let (mut peer, a, alice, _room) = start().await;
    let name = peer.name().to_string();
    let asked_of_the_peer = [
        format!("/_matrix/client/v3/profile/{}", encode(&format!("@bob:{name}"))),
        format!("/_matrix/client/v3/directory/room/{}", encode(&format!("#tea:{name}"))),
        format!("/_matrix/client/v3/publicRooms?server={}", encode(&name)),
    ];
    let joins = [
        format!("/_matrix/client/v3/join/{}", encode(&format!("#tea:{name}"))),
        format!("/_matrix/client/v3/join/{}?via={}", encode("!somewhere:elsewhere.example"), encode(&name)),
    ];
    for state in ["answering garbage", "down"] {
        if state == "down" {
            peer.stop().await;
            // Media asked of a server that is down (a bare 404 would mean it has none).
            let media = format!("/_matrix/client/v1/media/download/{name}/somemedia");
            let response = a.server.get(&media, alice.token()).await;
            assert_error(&response, StatusCode::BAD_GATEWAY, "M_UNKNOWN");
        }
        for path in &asked_of_the_peer {
            let response = a.server.get(path, alice.token()).await;
            assert_error(&response, StatusCode::BAD_GATEWAY, "M_UNKNOWN");
            assert!(response.1["error"].as_str().unwrap().contains(&name), "{state}: {path}: {}", response.1);
        }
        for path in &joins {
            let response = a.server.post(path, alice.token(), json!({})).await;
            assert_error(&response, StatusCode::BAD_GATEWAY, "M_UNKNOWN");
        }
    }
}
