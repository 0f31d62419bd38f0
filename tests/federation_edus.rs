#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
//! EDUs across servers (issue #18 item 1): typing, read receipts, presence, to-device messages
//! and device-list changes of a user on one Hearth reach a user of another Hearth through
//! `/sync`, riding the durable federation queue; private receipts never leave their server,
//! presence goes only to servers sharing a room, and a to-device message delivered twice
//! (same message id) is shown once.
//!
//! Encryption keys across servers (item 2): a client's `/keys/query` and `/keys/claim` reach
//! the remote user's server, remote device lists are cached and kept current from EDUs, and a
//! gap in them is closed by exactly one fetch of the whole list.
//!
//! One pair of Hearths on loopback TLS serves each walk-through, to keep CI short.

use crate::common;

use common::federation::FederatedPair;
use common::{TestServer, TestUser};
use hearth::testing::federation::inbound::transaction::{IncomingTransaction, receive};
use reqwest::StatusCode;
use ruma::CanonicalJsonValue;
use ruma::api::federation::transactions::edu::Edu;
use ruma::serde::{Base64, Raw};
use ruma::signatures::{Ed25519KeyPair, sign_json};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PW: &str = "edu-test-pw";

/// A user's sync position, and the sections they saw since.
struct Syncer<'a> {
    server: &'a TestServer,
    user: &'a TestUser,
    since: String,
}

impl<'a> Syncer<'a> {
    async fn start(server: &'a TestServer, user: &'a TestUser) -> Syncer<'a> {
        let (status, body) = server.get("/_matrix/client/v3/sync", user.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Syncer { server, user, since: body["next_batch"].as_str().unwrap().to_owned() }
    }

    /// Syncs on until `found` picks something out of a response (which it returns), failing
    /// after 30 s with `what`.
    async fn until<T>(&mut self, what: &str, found: impl Fn(&Value) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "{} never saw {what}", self.user.user_id);
            let path = format!("/_matrix/client/v3/sync?timeout=1000&since={}", self.since);
            let (status, body) = self.server.get(&path, self.user.token()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            self.since = body["next_batch"].as_str().unwrap().to_owned();
            if let Some(value) = found(&body) {
                return value;
            }
        }
    }

    /// The next sync's body, waiting up to `timeout_ms`.
    async fn next(&mut self, timeout_ms: u64) -> Value {
        let path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}&since={}", self.since);
        let (status, body) = self.server.get(&path, self.user.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        self.since = body["next_batch"].as_str().unwrap().to_owned();
        body
    }
}

fn ephemeral<'b>(body: &'b Value, room: &str, kind: &str) -> Vec<&'b Value> {
    body["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .map(|events| events.iter().filter(|event| event["type"] == kind).collect())
        .unwrap_or_default()
}

fn to_device_bodies(body: &Value) -> Vec<String> {
    body["to_device"]["events"]
        .as_array()
        .map(|events| events.iter().filter_map(|event| event["content"]["body"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn typing_receipts_presence_to_device_and_device_lists_cross_servers() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let (alice, bob, room) = pair.alice_and_bob_in_a_room(PW).await;
    let carol = a.server.register("carol", PW).await;
    let mut alice_sync = Syncer::start(&a.server, &alice).await;
    let mut bob_sync = Syncer::start(&b.server, &bob).await;

    // Typing on A shows in bob's sync on B, and so does the stop.
    let typing_path = format!("/_matrix/client/v3/rooms/{room}/typing/{}", alice.user_id);
    let (status, body) = a.server.put(&typing_path, alice.token(), json!({"typing": true, "timeout": 30000})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let typing_users = |body: &Value| {
        let events = ephemeral(body, &room, "m.typing");
        events.first().map(|event| event["content"]["user_ids"].clone())
    };
    let typists = bob_sync.until("alice typing", |body| typing_users(body).filter(|ids| ids != &json!([]))).await;
    assert_eq!(typists, json!([alice.user_id]));
    let (status, body) = a.server.put(&typing_path, alice.token(), json!({"typing": false})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let typists = bob_sync.until("alice stop typing", typing_users).await;
    assert_eq!(typists, json!([]), "alice stopped typing");
    // A timeout that runs out on A stops her on B too, long before B's own timeout would.
    let (status, body) = a.server.put(&typing_path, alice.token(), json!({"typing": true, "timeout": 2000})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let typists = bob_sync.until("alice typing again", |body| typing_users(body).filter(|ids| ids != &json!([]))).await;
    assert_eq!(typists, json!([alice.user_id]));
    let started = Instant::now();
    let typists = bob_sync.until("alice's typing time out", typing_users).await;
    assert_eq!(typists, json!([]), "alice's typing timed out");
    assert!(started.elapsed() < Duration::from_secs(20), "the stop came from A, not B's timeout");

    // Bob's public read receipt on B reaches alice on A; his private one stays on B.
    let first = a.server.send_text(&alice, &room, "m1", "first").await;
    let second = a.server.send_text(&alice, &room, "m2", "second").await;
    let bob_saw = |body: &Value| {
        let timeline = body["rooms"]["join"][room.as_str()]["timeline"]["events"].as_array()?;
        timeline.iter().any(|event| event["event_id"] == second.as_str()).then_some(())
    };
    bob_sync.until("alice's messages", bob_saw).await;
    let private = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read.private/{second}");
    let (status, body) = b.server.post(&private, bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    b.server.read_up_to(&bob, &room, &first).await;
    let read = alice_sync
        .until("bob's receipt", |body| {
            let events = ephemeral(body, &room, "m.receipt");
            let receipt = events.first()?["content"][first.as_str()]["m.read"][bob.user_id.as_str()].clone();
            (!receipt.is_null()).then_some(receipt)
        })
        .await;
    assert!(read["ts"].is_u64(), "the receipt keeps its timestamp: {read}");
    let private_on_a = a
        .server
        .count(&format!("SELECT COUNT(*) FROM receipts WHERE user_id = '{}' AND receipt_type <> 'm.read'", bob.user_id))
        .await;
    assert_eq!(private_on_a, 0, "bob's private receipt never left B");

    // Alice's presence reaches bob; carol shares no room with anyone on B, so B hears
    // nothing of hers.
    let presence = |user: &TestUser, message: &str| {
        (
            format!("/_matrix/client/v3/presence/{}/status", user.user_id),
            json!({"presence": "online", "status_msg": message}),
        )
    };
    let (path, body) = presence(&carol, "carol is here");
    let (status, answer) = a.server.put(&path, carol.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (path, body) = presence(&alice, "edu test");
    let (status, answer) = a.server.put(&path, alice.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let seen = bob_sync
        .until("alice's presence", |body| {
            let events = body["presence"]["events"].as_array()?;
            events.iter().find(|event| event["sender"] == alice.user_id.as_str()).map(|event| event["content"].clone())
        })
        .await;
    assert_eq!(seen["presence"], "online", "{seen}");
    assert_eq!(seen["status_msg"], "edu test", "{seen}");
    let carol_on_b =
        b.server.count(&format!("SELECT COUNT(*) FROM presence WHERE user_id = '{}'", carol.user_id)).await;
    assert_eq!(carol_on_b, 0, "carol's presence went only where she shares a room");

    // A to-device message from alice to bob's device arrives once, even when its EDU is
    // delivered again in another transaction.
    let path = "/_matrix/client/v3/sendToDevice/m.test/td-1";
    let messages = json!({"messages": {bob.user_id.as_str(): {bob.device_id.as_str(): {"body": "psst"}}}});
    let (status, body) = a.server.put(path, alice.token(), messages).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = bob_sync
        .until("alice's to-device message", |body| Some(to_device_bodies(body)).filter(|got| !got.is_empty()))
        .await;
    assert_eq!(got, vec!["psst".to_owned()]);
    let edu = json!({"edu_type": "m.direct_to_device", "content": {
        "sender": alice.user_id, "type": "m.test", "message_id": "replayed",
        "messages": {bob.user_id.as_str(): {bob.device_id.as_str(): {"body": "once"}}},
    }});
    let edus: Vec<Raw<Edu>> = vec![Raw::from_json(serde_json::value::to_raw_value(&edu).unwrap())];
    for txn_id in ["replay-1", "replay-2"] {
        let txn = IncomingTransaction { origin: a.name(), txn_id, claimed_origin: a.name(), pdus: &[], edus: &edus };
        receive(b.state().fed(), txn).await.unwrap();
    }
    let got =
        bob_sync.until("the replayed message", |body| Some(to_device_bodies(body)).filter(|got| !got.is_empty())).await;
    assert_eq!(got, vec!["once".to_owned()], "the message id was stored once");
    assert!(to_device_bodies(&bob_sync.next(500).await).is_empty(), "nothing came twice");

    // Bob's device list changes on B (a second device logs out): alice's sync on A says so.
    let second_device = b.server.login("bob", PW).await;
    let (status, body) = b.server.post("/_matrix/client/v3/logout", second_device.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    alice_sync
        .until("bob's device list change", |body| {
            let changed = body["device_lists"]["changed"].as_array()?;
            changed.iter().any(|user| user == bob.user_id.as_str()).then_some(())
        })
        .await;

    // Everything was acknowledged: nothing is left in either queue.
    for (server, other) in [(&a.server, b.name().as_str()), (&b.server, a.name().as_str())] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.count(&format!("SELECT COUNT(*) FROM federation_edu_queue WHERE destination = '{other}'")).await
            > 0
        {
            assert!(Instant::now() < deadline, "EDUs for {other} were never acknowledged");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A fresh ed25519 key of `user`'s device, named after the device, that signs what the
/// device uploads (the server checks device keys' signatures).
struct DeviceKey(Ed25519KeyPair);

impl DeviceKey {
    fn new(user: &TestUser) -> DeviceKey {
        DeviceKey(Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), user.device_id.clone()).unwrap())
    }

    fn sign(&self, user: &TestUser, object: Value) -> Value {
        let CanonicalJsonValue::Object(mut canonical) = CanonicalJsonValue::try_from(object).unwrap() else { panic!() };
        sign_json(&user.user_id, &self.0, &mut canonical).unwrap();
        serde_json::to_value(&canonical).unwrap()
    }

    fn device_keys(&self, user: &TestUser) -> Value {
        let public = Base64::<ruma::serde::base64::Standard>::new(self.0.public_key().to_vec()).encode();
        self.sign(
            user,
            json!({
                "user_id": user.user_id,
                "device_id": user.device_id,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {
                    format!("curve25519:{}", user.device_id): "curve25519publickeyfortests",
                    format!("ed25519:{}", user.device_id): public,
                },
            }),
        )
    }
}

async fn remote_resyncs(server: &TestServer, user: &TestUser) -> i64 {
    server
        .count(&format!(
            "SELECT COALESCE(SUM(resyncs), 0)::BIGINT FROM remote_device_lists WHERE user_id = '{}'",
            user.user_id
        ))
        .await
}

/// A device-list update EDU from `origin` about `user`, as a transaction of its own.
async fn deliver_device_update(
    b: &common::federation::FedServer,
    origin: &ruma::ServerName,
    txn_id: &str,
    updates: &[Value],
) {
    let edus: Vec<Raw<Edu>> = updates
        .iter()
        .map(|content| {
            let edu = json!({"edu_type": "m.device_list_update", "content": content});
            Raw::from_json(serde_json::value::to_raw_value(&edu).unwrap())
        })
        .collect();
    let txn = IncomingTransaction { origin, txn_id, claimed_origin: origin, pdus: &[], edus: &edus };
    receive(b.state().fed(), txn).await.unwrap();
}

#[tokio::test]
async fn remote_keys_are_queried_and_claimed_and_the_device_list_stays_current() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let (alice, bob, _room) = pair.alice_and_bob_in_a_room(PW).await;
    let key = DeviceKey::new(&bob);
    let upload = json!({
        "device_keys": key.device_keys(&bob),
        "one_time_keys": {"signed_curve25519:otk1": key.sign(&bob, json!({"key": "onetime1"}))},
        "fallback_keys": {"signed_curve25519:fb1": key.sign(&bob, json!({"key": "fallback", "fallback": true}))},
    });
    let (status, body) = b.server.post("/_matrix/client/v3/keys/upload", bob.token(), upload).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Alice's query reaches B (through one fetch of bob's list, as they share a room); a
    // server that cannot be reached is named in `failures` and holds nothing else up.
    let query = |users: Value| json!({"device_keys": users, "timeout": 3000});
    let wanted = query(json!({bob.user_id.as_str(): [], "@nobody:127.0.0.1:1": []}));
    let (status, body) = a.server.post("/_matrix/client/v3/keys/query", alice.token(), wanted).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let device = &body["device_keys"][bob.user_id.as_str()][bob.device_id.as_str()];
    assert_eq!(device["device_id"], bob.device_id.as_str(), "{body}");
    assert!(device["signatures"][bob.user_id.as_str()].is_object(), "bob's keys keep his signature: {body}");
    assert!(body["failures"]["127.0.0.1:1"].is_object(), "the unreachable server is named: {body}");
    assert_eq!(remote_resyncs(&a.server, &bob).await, 1, "bob's list was fetched once");

    // Claims: the one-time key once, then the fallback key.
    let claim = json!({"one_time_keys": {bob.user_id.as_str(): {bob.device_id.as_str(): "signed_curve25519"}}});
    let mut claimed = Vec::new();
    for _ in 0..2 {
        let (status, body) = a.server.post("/_matrix/client/v3/keys/claim", alice.token(), claim.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let keys = body["one_time_keys"][bob.user_id.as_str()][bob.device_id.as_str()].as_object().cloned();
        claimed.extend(keys.unwrap_or_default().keys().cloned());
    }
    assert_eq!(claimed, vec!["signed_curve25519:otk1".to_owned(), "signed_curve25519:fb1".to_owned()]);

    // Bob's new device reaches A's copy through its EDU, without another fetch.
    let phone = b.server.login("bob", PW).await;
    let (status, body) = b
        .server
        .post(
            "/_matrix/client/v3/keys/upload",
            phone.token(),
            json!({"device_keys": DeviceKey::new(&phone).device_keys(&phone)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let phone_on_a = || async {
        let wanted = query(json!({bob.user_id.as_str(): []}));
        let (_, body) = a.server.post("/_matrix/client/v3/keys/query", alice.token(), wanted).await;
        body["device_keys"][bob.user_id.as_str()][phone.device_id.as_str()].is_object()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !phone_on_a().await {
        assert!(Instant::now() < deadline, "bob's new device never reached A");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(remote_resyncs(&a.server, &bob).await, 1, "the EDU kept the copy current");

    // An update that follows one A never got is a gap: A fetches the list whole, once, and
    // an update its copy already covers changes nothing.
    let cached: i64 =
        a.server.count(&format!("SELECT stream_id FROM remote_device_lists WHERE user_id = '{}'", bob.user_id)).await;
    let ghost = json!({
        "user_id": bob.user_id, "device_id": "GHOST", "stream_id": cached + 1000, "prev_id": [cached + 999],
        "keys": {"user_id": bob.user_id, "device_id": "GHOST", "algorithms": [], "keys": {}},
    });
    let stale = json!({"user_id": bob.user_id, "device_id": "STALE", "stream_id": cached, "prev_id": [cached - 1], "deleted": true});
    deliver_device_update(a, b.name(), "gap-1", &[ghost, stale]).await;
    assert_eq!(remote_resyncs(&a.server, &bob).await, 2, "exactly one resync for the gap");
    let wanted = query(json!({bob.user_id.as_str(): []}));
    let (_, body) = a.server.post("/_matrix/client/v3/keys/query", alice.token(), wanted).await;
    let devices = body["device_keys"][bob.user_id.as_str()].as_object().cloned().unwrap_or_default();
    let mut names: Vec<&str> = devices.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected = vec![bob.device_id.as_str(), phone.device_id.as_str()];
    expected.sort_unstable();
    assert_eq!(names, expected, "A holds B's real list, not the ghost: {body}");
}
