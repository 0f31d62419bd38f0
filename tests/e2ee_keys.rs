//! End-to-end encryption keys over raw HTTP: what clients upload is what others get back, with
//! signatures the server checked; one-time keys go to exactly one claimer; device-list changes
//! reach exactly the users who share a room, through `/sync` and `/keys/changes`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::{Method, StatusCode};
use ruma::serde::Base64;
use ruma::signatures::{Ed25519KeyPair, sign_json};
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const PW: &str = "e2ee-keys-test-password";

/// An ed25519 key pair named `ed25519:<version>`.
struct Key {
    pair: Ed25519KeyPair,
    public: String,
}

impl Key {
    /// A device's key: named after the device.
    fn device(device_id: &str) -> Key {
        let der = Ed25519KeyPair::generate();
        let pair = Ed25519KeyPair::from_der(&der, device_id.to_owned()).expect("load");
        let public = Base64::<ruma::serde::base64::Standard>::new(pair.public_key().to_vec()).encode();
        Key { pair, public }
    }

    /// A cross-signing key: named after its public key.
    fn cross_signing() -> Key {
        let der = Ed25519KeyPair::generate();
        let probe = Ed25519KeyPair::from_der(&der, "x".to_owned()).expect("load");
        let public = Base64::<ruma::serde::base64::Standard>::new(probe.public_key().to_vec()).encode();
        Key { pair: Ed25519KeyPair::from_der(&der, public.clone()).expect("load"), public }
    }

    /// `object` signed by this key as `entity`.
    fn sign(&self, entity: &str, object: Value) -> Value {
        let mut canonical: CanonicalJsonObject = match CanonicalJsonValue::try_from(object).expect("canonical") {
            CanonicalJsonValue::Object(object) => object,
            other => panic!("not an object: {other:?}"),
        };
        sign_json(entity, &self.pair, &mut canonical).expect("sign");
        serde_json::to_value(&canonical).expect("json")
    }
}

fn device_keys(user: &TestUser, key: &Key) -> Value {
    let object = json!({
        "user_id": user.user_id,
        "device_id": user.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", user.device_id): "curve25519publickeyfortests",
            format!("ed25519:{}", user.device_id): key.public,
        },
    });
    key.sign(&user.user_id, object)
}

fn cross_signing_key(user: &TestUser, usage: &str, key: &Key) -> Value {
    json!({ "user_id": user.user_id, "usage": [usage], "keys": { format!("ed25519:{}", key.public): key.public } })
}

async fn upload(server: &TestServer, user: &TestUser, body: Value) -> (StatusCode, Value) {
    server.post("/_matrix/client/v3/keys/upload", user.token(), body).await
}

/// Uploads device keys signed by a fresh device key; returns that key.
async fn upload_device_keys(server: &TestServer, user: &TestUser) -> Key {
    let key = Key::device(&user.device_id);
    let response = upload(server, user, json!({ "device_keys": device_keys(user, &key) })).await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    key
}

async fn query(server: &TestServer, user: &TestUser, wanted: Value) -> Value {
    let (status, body) =
        server.post("/_matrix/client/v3/keys/query", user.token(), json!({ "device_keys": wanted })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn claim(server: &TestServer, user: &TestUser, owner: &TestUser) -> Value {
    let body = json!({ "one_time_keys": { &owner.user_id: { &owner.device_id: "signed_curve25519" } } });
    let (status, body) = server.post("/_matrix/client/v3/keys/claim", user.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn sync(server: &TestServer, user: &TestUser, since: Option<&str>, timeout_ms: u64) -> Value {
    let mut path = format!("/_matrix/client/v3/sync?set_presence=offline&timeout={timeout_ms}");
    if let Some(since) = since {
        path.push_str(&format!("&since={}", encode(since)));
    }
    let (status, body) = server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn next_batch(body: &Value) -> String {
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

fn users(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .map(|users| users.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn set(items: &[&TestUser]) -> BTreeSet<String> {
    items.iter().map(|user| user.user_id.clone()).collect()
}

async fn create_room(server: &TestServer, user: &TestUser) -> String {
    let (status, body) =
        server.post("/_matrix/client/v3/createRoom", user.token(), json!({"preset": "public_chat"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["room_id"].as_str().expect("room_id").to_owned()
}

async fn join(server: &TestServer, user: &TestUser, room: &str) {
    let (status, body) = server.post(&format!("/_matrix/client/v3/join/{room}"), user.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn leave(server: &TestServer, user: &TestUser, room: &str) {
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), user.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn key_changes(server: &TestServer, user: &TestUser, from: &str, to: &str) -> Value {
    let path = format!("/_matrix/client/v3/keys/changes?from={}&to={}", encode(from), encode(to));
    let (status, body) = server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn uploaded_keys_come_back_from_query_with_the_device_name_and_counts_are_reported() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let key = Key::device(&alice.device_id);
    let uploaded = device_keys(&alice, &key);
    let one_time: Value = (0..3)
        .map(|i| (format!("signed_curve25519:K{i}"), key.sign(&alice.user_id, json!({ "key": format!("otk{i}") }))))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let fallback = json!({ "signed_curve25519:F1": key.sign(&alice.user_id, json!({"key": "fb1", "fallback": true})) });
    let (status, body) = upload(
        &server,
        &alice,
        json!({ "device_keys": uploaded, "one_time_keys": one_time, "fallback_keys": fallback }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["one_time_key_counts"], json!({"signed_curve25519": 3}));
    // Uploading the same keys again is fine and adds no one-time key twice.
    let (status, body) = upload(&server, &alice, json!({ "device_keys": uploaded, "one_time_keys": one_time })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["one_time_key_counts"], json!({"signed_curve25519": 3}));

    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/devices/{}", alice.device_id),
            alice.token(),
            json!({"display_name": "Alice's laptop"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let body = query(&server, &bob, json!({ &alice.user_id: [], "@someone:elsewhere.example": [] })).await;
    let got = &body["device_keys"][&alice.user_id][&alice.device_id];
    let mut expected = uploaded.clone();
    expected["unsigned"] = json!({"device_display_name": "Alice's laptop"});
    assert_eq!(got, &expected, "{body}");
    assert!(body["failures"]["elsewhere.example"].is_object(), "{body}");
    // Asking for one device by id, and for one that does not exist.
    let body = query(&server, &bob, json!({ &alice.user_id: [&alice.device_id, "NOPE"] })).await;
    assert_eq!(body["device_keys"][&alice.user_id].as_object().map(|d| d.len()), Some(1), "{body}");
    let body = query(&server, &bob, json!({ &bob.user_id: [] })).await;
    assert_eq!(body["device_keys"][&bob.user_id], json!({}), "{body}");

    // The device sees its counts (and unused fallback key) in every sync.
    let first = sync(&server, &alice, None, 0).await;
    assert_eq!(first["device_one_time_keys_count"], json!({"signed_curve25519": 3}), "{first}");
    assert_eq!(first["device_unused_fallback_key_types"], json!(["signed_curve25519"]), "{first}");
    claim(&server, &bob, &alice).await;
    let later = sync(&server, &alice, Some(&next_batch(&first)), 0).await;
    assert_eq!(later["device_one_time_keys_count"], json!({"signed_curve25519": 2}), "{later}");
    // A claim is not news that ends a long-poll, but the answer it times out with carries the
    // counts as they are then, not as they were when it began waiting.
    let since = next_batch(&later);
    let waiting = sync(&server, &alice, Some(&since), 1_500);
    let claiming = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        claim(&server, &bob, &alice).await
    };
    let (timed_out, _) = tokio::join!(waiting, claiming);
    assert!(timed_out.get("rooms").is_none(), "nothing new: {timed_out}");
    assert_eq!(timed_out["device_one_time_keys_count"], json!({"signed_curve25519": 1}), "{timed_out}");
    // A device without keys still gets the fields, so clients know to upload.
    let bobs = sync(&server, &bob, None, 0).await;
    assert_eq!(bobs["device_one_time_keys_count"], json!({"signed_curve25519": 0}), "{bobs}");
    assert_eq!(bobs["device_unused_fallback_key_types"], json!([]), "{bobs}");
}

#[tokio::test]
async fn keys_for_another_user_or_device_or_badly_signed_or_changed_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let key = Key::device(&alice.device_id);

    let mut as_bob = alice.clone();
    as_bob.user_id = bob.user_id.clone();
    let response = upload(&server, &alice, json!({ "device_keys": device_keys(&as_bob, &key) })).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let mut other_device = alice.clone();
    other_device.device_id = "OTHERDEVICE".to_owned();
    let response =
        upload(&server, &alice, json!({ "device_keys": device_keys(&other_device, &Key::device("OTHERDEVICE")) }))
            .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    // Signed by some other key than the one it publishes.
    let mut forged = device_keys(&alice, &key);
    forged["keys"][format!("ed25519:{}", alice.device_id)] = json!(Key::device(&alice.device_id).public);
    let response = upload(
        &server,
        &alice,
        json!({ "device_keys": forged, "one_time_keys": {"signed_curve25519:A": {"key": "k"}} }),
    )
    .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    // Nothing of the refused requests was stored, not even their one-time keys.
    let body = query(&server, &bob, json!({ &alice.user_id: [], &bob.user_id: [] })).await;
    assert_eq!(body["device_keys"], json!({ &alice.user_id: {}, &bob.user_id: {} }), "{body}");
    assert_eq!(server.count("SELECT count(*) FROM e2e_one_time_keys").await, 0);

    // Once a device has identity keys, other identity keys for it are refused; the first stay.
    let original = device_keys(&alice, &key);
    assert_eq!(upload(&server, &alice, json!({ "device_keys": original })).await.0, StatusCode::OK);
    let replacement = device_keys(&alice, &Key::device(&alice.device_id));
    let response = upload(&server, &alice, json!({ "device_keys": replacement })).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let body = query(&server, &bob, json!({ &alice.user_id: [] })).await;
    let stored = &body["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(stored["keys"], original["keys"], "{body}");
}

#[tokio::test]
async fn malformed_key_requests_get_spec_errors() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let response =
        server.request_raw(Method::POST, "/_matrix/client/v3/keys/upload", alice.token(), b"{not json".to_vec()).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_NOT_JSON");
    let response = upload(&server, &alice, json!({ "device_keys": "a string" })).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let response = upload(&server, &alice, json!({ "one_time_keys": {"signed_curve25519:A": 42} })).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let response = server.post("/_matrix/client/v3/keys/query", alice.token(), json!({ "device_keys": [] })).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let response = server
        .post("/_matrix/client/v3/keys/claim", alice.token(), json!({ "one_time_keys": {"not a user": {}} }))
        .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let response = server.get("/_matrix/client/v3/keys/changes?from=garbage&to=h1_0", alice.token()).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let response = server.get("/_matrix/client/v3/keys/changes?from=h1_0", alice.token()).await;
    assert!(response.0.is_client_error(), "{response:?}");
    let response =
        server.post("/_matrix/client/v3/keys/device_signing/upload", alice.token(), json!({"master_key": 1})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let response = server.post("/_matrix/client/v3/keys/upload", None, json!({})).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_claims_hand_out_each_one_time_key_once_then_the_fallback_key() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let key = Key::device(&alice.device_id);
    let one_time: serde_json::Map<String, Value> = (0..10)
        .map(|i| (format!("signed_curve25519:K{i:02}"), key.sign(&alice.user_id, json!({ "key": format!("otk{i}") }))))
        .collect();
    let fallback = key.sign(&alice.user_id, json!({"key": "fallback", "fallback": true}));
    let response = upload(
        &server,
        &alice,
        json!({ "one_time_keys": one_time, "fallback_keys": {"signed_curve25519:FB": fallback} }),
    )
    .await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);

    let claims = (0..20).map(|_| {
        let (client, url, token) =
            (server.http.clone(), server.url("/_matrix/client/v3/keys/claim"), bob.access_token.clone());
        let body = json!({ "one_time_keys": { &alice.user_id: { &alice.device_id: "signed_curve25519" } } });
        tokio::spawn(async move { send_json(&client, Method::POST, &url, Some(&token), Some(body)).await })
    });
    let mut one_time_ids = Vec::new();
    let mut fallbacks = 0;
    for claim in claims.collect::<Vec<_>>() {
        let (status, body) = claim.await.expect("claim task");
        assert_eq!(status, StatusCode::OK, "{body}");
        let keys = body["one_time_keys"][&alice.user_id][&alice.device_id].as_object().expect("a key").clone();
        assert_eq!(keys.len(), 1, "{body}");
        let (id, value) = keys.into_iter().next().expect("one key");
        if id == "signed_curve25519:FB" {
            assert_eq!(value, fallback);
            fallbacks += 1;
        } else {
            assert_eq!(value, one_time[&id], "{id}");
            one_time_ids.push(id);
        }
    }
    let distinct: BTreeSet<&String> = one_time_ids.iter().collect();
    assert_eq!((one_time_ids.len(), distinct.len(), fallbacks), (10, 10, 10), "{one_time_ids:?}");
    // The fallback key keeps being handed out, and the device learns it was used.
    let body = claim(&server, &bob, &alice).await;
    assert!(body["one_time_keys"][&alice.user_id][&alice.device_id]["signed_curve25519:FB"].is_object(), "{body}");
    let synced = sync(&server, &alice, None, 0).await;
    assert_eq!(synced["device_one_time_keys_count"], json!({"signed_curve25519": 0}), "{synced}");
    assert_eq!(synced["device_unused_fallback_key_types"], json!([]), "{synced}");
    // Unknown devices and remote users just get nothing (remote servers are failures).
    let body = json!({ "one_time_keys": { &alice.user_id: { "NODEVICE": "signed_curve25519" }, "@x:remote.example": { "D": "signed_curve25519" } } });
    let (status, body) = server.post("/_matrix/client/v3/keys/claim", bob.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["one_time_keys"], json!({}), "{body}");
    assert!(body["failures"]["remote.example"].is_object(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_changes_reach_exactly_the_users_who_share_a_room_and_wake_a_waiting_sync() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = create_room(&server, &alice).await;
    join(&server, &bob, &room).await;
    let alice_laptop = server.login("alice", PW).await;
    let since = next_batch(&sync(&server, &alice, None, 0).await);

    // Bob's upload wakes Alice's waiting sync, which has nothing else to say.
    let path = format!("/_matrix/client/v3/sync?set_presence=offline&timeout=10000&since={}", encode(&since));
    let (client, url, token) = (server.http.clone(), server.url(&path), alice.access_token.clone());
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let response = send_json(&client, Method::GET, &url, Some(&token), None).await;
        (response, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    upload_device_keys(&server, &bob).await;
    let ((status, woken), elapsed) = waiting.await.expect("sync task");
    assert_eq!(status, StatusCode::OK, "{woken}");
    assert!(elapsed < Duration::from_secs(8), "the sync waited {elapsed:?} although bob's keys changed");
    assert_eq!(users(&woken["device_lists"]["changed"]), set(&[&bob]), "{woken}");

    // Carol shares no room with Alice: her keys are none of Alice's business. Alice's other
    // device is.
    upload_device_keys(&server, &carol).await;
    upload_device_keys(&server, &alice_laptop).await;
    let after = sync(&server, &alice, Some(&next_batch(&woken)), 0).await;
    assert_eq!(users(&after["device_lists"]["changed"]), set(&[&alice]), "{after}");
    let end = next_batch(&after);
    let changes = key_changes(&server, &alice, &since, &end).await;
    assert_eq!(users(&changes["changed"]), set(&[&alice, &bob]), "{changes}");
    assert_eq!(users(&changes["left"]), BTreeSet::new(), "{changes}");
    // An empty window has no changes, and the next sync has none either.
    let changes = key_changes(&server, &alice, &end, &end).await;
    assert_eq!(users(&changes["changed"]), BTreeSet::new(), "{changes}");
    let quiet = sync(&server, &alice, Some(&end), 0).await;
    assert!(quiet.get("device_lists").is_none(), "{quiet}");

    // Carol joining makes her keys Alice's business: she appears as changed.
    join(&server, &carol, &room).await;
    let joined = sync(&server, &alice, Some(&end), 0).await;
    assert!(users(&joined["device_lists"]["changed"]).contains(&carol.user_id), "{joined}");
    let carols = sync(&server, &carol, Some(&next_batch(&sync(&server, &carol, None, 0).await)), 0).await;
    assert!(carols.get("device_lists").is_none(), "{carols}");
}

#[tokio::test]
async fn leaving_the_only_shared_room_shows_up_in_left() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let shared = create_room(&server, &alice).await;
    let other = create_room(&server, &alice).await;
    join(&server, &bob, &shared).await;
    join(&server, &carol, &shared).await;
    join(&server, &carol, &other).await;
    let since = next_batch(&sync(&server, &alice, None, 0).await);

    leave(&server, &bob, &shared).await;
    leave(&server, &carol, &shared).await; // Carol still shares `other` with Alice.
    let body = sync(&server, &alice, Some(&since), 0).await;
    assert_eq!(users(&body["device_lists"]["left"]), set(&[&bob]), "{body}");
    let changes = key_changes(&server, &alice, &since, &next_batch(&body)).await;
    assert_eq!(users(&changes["left"]), set(&[&bob]), "{changes}");
    // Bob sees it from his side too.
    let bobs = key_changes(&server, &bob, &since, &next_batch(&body)).await;
    assert_eq!(users(&bobs["left"]), set(&[&alice, &carol]), "{bobs}");
}

#[tokio::test]
async fn cross_signing_keys_are_published_and_replacing_them_needs_the_password() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = create_room(&server, &alice).await;
    join(&server, &bob, &room).await;
    let since = next_batch(&sync(&server, &bob, None, 0).await);
    let (master, self_signing, user_signing) = (Key::cross_signing(), Key::cross_signing(), Key::cross_signing());
    let master_json = cross_signing_key(&alice, "master", &master);
    let ssk = master.sign(&alice.user_id, cross_signing_key(&alice, "self_signing", &self_signing));
    let usk = master.sign(&alice.user_id, cross_signing_key(&alice, "user_signing", &user_signing));
    let path = "/_matrix/client/v3/keys/device_signing/upload";

    // A self-signing key the master key did not sign is refused.
    let unsigned_ssk = cross_signing_key(&alice, "self_signing", &self_signing);
    let response =
        server.post(path, alice.token(), json!({"master_key": master_json, "self_signing_key": unsigned_ssk})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let mut bobs_key = master_json.clone();
    bobs_key["user_id"] = json!(bob.user_id);
    let response = server.post(path, alice.token(), json!({"master_key": bobs_key})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");

    // The first upload needs no password.
    let first = json!({"master_key": master_json, "self_signing_key": ssk, "user_signing_key": usk});
    let (status, body) = server.post(path, alice.token(), first.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Retrying the same upload is fine too.
    let (status, body) = server.post(path, alice.token(), first).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let body = query(&server, &bob, json!({ &alice.user_id: [] })).await;
    assert_eq!(body["master_keys"][&alice.user_id], master_json, "{body}");
    assert_eq!(body["self_signing_keys"][&alice.user_id], ssk, "{body}");
    assert!(body.get("user_signing_keys").is_none_or(|keys| keys.get(&alice.user_id).is_none()), "{body}");
    let body = query(&server, &alice, json!({ &alice.user_id: [] })).await;
    assert_eq!(body["user_signing_keys"][&alice.user_id], usk, "{body}");
    let changed = sync(&server, &bob, Some(&since), 0).await;
    assert_eq!(users(&changed["device_lists"]["changed"]), set(&[&alice]), "{changed}");

    // Replacing the master key: 401 with the password flow, then accepted with the password.
    let new_master = Key::cross_signing();
    let replacement = json!({"master_key": cross_signing_key(&alice, "master", &new_master)});
    let (status, challenge) = server.post(path, alice.token(), replacement.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    assert_eq!(challenge["flows"], json!([{"stages": ["m.login.password"]}]), "{challenge}");
    let session = challenge["session"].as_str().expect("session").to_owned();
    let body = query(&server, &bob, json!({ &alice.user_id: [] })).await;
    assert_eq!(body["master_keys"][&alice.user_id], master_json, "the unauthenticated replacement changed nothing");
    let mut wrong = alice.clone();
    wrong.password = "not-the-password".to_owned();
    let mut with_wrong = replacement.clone();
    with_wrong["auth"] = wrong.password_auth(&session);
    assert_eq!(server.post(path, alice.token(), with_wrong).await.0, StatusCode::UNAUTHORIZED);
    let mut with_auth = replacement.clone();
    with_auth["auth"] = alice.password_auth(&session);
    let (status, body) = server.post(path, alice.token(), with_auth).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body = query(&server, &bob, json!({ &alice.user_id: [] })).await;
    assert_eq!(body["master_keys"][&alice.user_id], replacement["master_key"], "{body}");
}

#[tokio::test]
async fn uploaded_signatures_are_checked_merged_into_queries_and_bad_ones_reported() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let alice_device = upload_device_keys(&server, &alice).await;
    let path = "/_matrix/client/v3/keys/device_signing/upload";
    let (master, self_signing, user_signing) = (Key::cross_signing(), Key::cross_signing(), Key::cross_signing());
    let master_json = cross_signing_key(&alice, "master", &master);
    let keys = json!({
        "master_key": master_json,
        "self_signing_key": master.sign(&alice.user_id, cross_signing_key(&alice, "self_signing", &self_signing)),
        "user_signing_key": master.sign(&alice.user_id, cross_signing_key(&alice, "user_signing", &user_signing)),
    });
    assert_eq!(server.post(path, alice.token(), keys).await.0, StatusCode::OK);
    let bob_master = Key::cross_signing();
    let bob_master_json = cross_signing_key(&bob, "master", &bob_master);
    assert_eq!(server.post(path, bob.token(), json!({"master_key": bob_master_json})).await.0, StatusCode::OK);

    // Alice's self-signing key signs her device; her device signs her master key; her
    // user-signing key signs Bob's master key. A forged signature on her device fails.
    let stored_device = query(&server, &alice, json!({ &alice.user_id: [] })).await["device_keys"][&alice.user_id]
        [&alice.device_id]
        .clone();
    let mut device = stored_device.clone();
    device.as_object_mut().expect("object").remove("unsigned");
    let device_signed = self_signing.sign(&alice.user_id, device.clone());
    let master_signed = alice_device.sign(&alice.user_id, master_json.clone());
    let bob_signed = user_signing.sign(&alice.user_id, bob_master_json.clone());
    let body = json!({
        &alice.user_id: { &alice.device_id: device_signed, &master.public: master_signed },
        &bob.user_id: { &bob_master.public: bob_signed },
    });
    let (status, response) = server.post("/_matrix/client/v3/keys/signatures/upload", alice.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert!(response.get("failures").is_none_or(|f| f == &json!({})), "{response}");

    let ssk_id = format!("ed25519:{}", self_signing.public);
    let body = query(&server, &bob, json!({ &alice.user_id: [], &bob.user_id: [] })).await;
    let signed_device = &body["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(
        signed_device["signatures"][&alice.user_id][&ssk_id],
        device_signed["signatures"][&alice.user_id][&ssk_id]
    );
    let device_key_id = format!("ed25519:{}", alice.device_id);
    assert!(body["master_keys"][&alice.user_id]["signatures"][&alice.user_id][&device_key_id].is_string(), "{body}");
    // Whom Alice verified is hers to know: her signature on Bob's master key reaches her
    // queries, not Bob's (nor anyone else's).
    let usk_id = format!("ed25519:{}", user_signing.public);
    assert!(body["master_keys"][&bob.user_id]["signatures"].get(&alice.user_id).is_none(), "{body}");
    let body = query(&server, &alice, json!({ &bob.user_id: [] })).await;
    assert!(body["master_keys"][&bob.user_id]["signatures"][&alice.user_id][&usk_id].is_string(), "{body}");

    // A signature made with another key under the self-signing key's name is refused.
    let forged = Key::cross_signing();
    let mut bad = forged.sign(&alice.user_id, device.clone());
    let forged_signature = bad["signatures"][&alice.user_id][format!("ed25519:{}", forged.public)].clone();
    bad["signatures"] = json!({ &alice.user_id: { &ssk_id: forged_signature } });
    let body = json!({ &alice.user_id: { &alice.device_id: bad }, &bob.user_id: { "NOTAKEY": {"x": 1} } });
    let (status, response) = server.post("/_matrix/client/v3/keys/signatures/upload", alice.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["failures"][&alice.user_id][&alice.device_id]["errcode"], "M_INVALID_SIGNATURE", "{response}");
    assert_eq!(response["failures"][&bob.user_id]["NOTAKEY"]["errcode"], "M_INVALID_SIGNATURE", "{response}");
    let body = query(&server, &bob, json!({ &alice.user_id: [] })).await;
    assert_eq!(body["device_keys"][&alice.user_id][&alice.device_id], *signed_device, "the forged signature was kept");
}

#[tokio::test]
async fn deleting_a_device_removes_its_keys_and_counts_as_a_change() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = create_room(&server, &alice).await;
    join(&server, &bob, &room).await;
    let phone = server.login("alice", PW).await;
    upload_device_keys(&server, &alice).await;
    let phone_key = upload_device_keys(&server, &phone).await;
    let otk = phone_key.sign(&alice.user_id, json!({"key": "a2V5"}));
    assert_eq!(upload(&server, &phone, json!({"one_time_keys": {"signed_curve25519:A": otk}})).await.0, StatusCode::OK);
    let since = next_batch(&sync(&server, &bob, None, 0).await);

    let path = format!("/_matrix/client/v3/devices/{}", phone.device_id);
    let (status, challenge) = server.delete(&path, alice.token(), Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    let session = challenge["session"].as_str().expect("session");
    let (status, body) = server.delete(&path, alice.token(), Some(json!({"auth": alice.password_auth(session)}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let body = sync(&server, &bob, Some(&since), 0).await;
    assert_eq!(users(&body["device_lists"]["changed"]), set(&[&alice]), "{body}");
    let body = query(&server, &bob, json!({ &alice.user_id: [] })).await;
    let devices: Vec<&String> = body["device_keys"][&alice.user_id].as_object().expect("devices").keys().collect();
    assert_eq!(devices, vec![&alice.device_id], "{body}");
    assert_eq!(server.count("SELECT count(*) FROM e2e_one_time_keys").await, 0);

    // So is a password change that logs out the other devices.
    let tablet = server.login("alice", PW).await;
    upload_device_keys(&server, &tablet).await;
    let since = next_batch(&body_of_sync(&server, &bob).await);
    let change = json!({"new_password": "a-new-e2ee-password", "logout_devices": true});
    let (status, challenge) = server.post("/_matrix/client/v3/account/password", alice.token(), change.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    let mut with_auth = change;
    with_auth["auth"] = alice.password_auth(challenge["session"].as_str().expect("session"));
    let (status, body) = server.post("/_matrix/client/v3/account/password", alice.token(), with_auth).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body = sync(&server, &bob, Some(&since), 0).await;
    assert_eq!(users(&body["device_lists"]["changed"]), set(&[&alice]), "{body}");
    let body = query(&server, &bob, json!({ &alice.user_id: [] })).await;
    let devices: Vec<&String> = body["device_keys"][&alice.user_id].as_object().expect("devices").keys().collect();
    assert_eq!(devices, vec![&alice.device_id], "{body}");

    // Logging out is deleting the device too.
    let since = next_batch(&body_of_sync(&server, &bob).await);
    let (status, _) = server.post("/_matrix/client/v3/logout", alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let body = sync(&server, &bob, Some(&since), 0).await;
    assert_eq!(users(&body["device_lists"]["changed"]), set(&[&alice]), "{body}");
    let body = query(&server, &bob, json!({ &alice.user_id: [] })).await;
    assert_eq!(body["device_keys"][&alice.user_id], json!({}), "{body}");
}

async fn body_of_sync(server: &TestServer, user: &TestUser) -> Value {
    sync(server, user, None, 0).await
}

#[tokio::test]
async fn encrypted_to_device_payloads_arrive_unchanged_and_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let since = next_batch(&sync(&server, &bob, None, 0).await);
    let content = json!({
        "algorithm": "m.olm.v1.curve25519-aes-sha2",
        "sender_key": "Xk9vN1bQ/yK+2mZ7gQmN0pL4sQe6bT3cR5wY8uI1oP0",
        "ciphertext": {
            "curve25519keyofbob": { "type": 0, "body": "AwogT0xNIGNpcGhlcnRleHQg4pyTIFx1MDAwMSDwn5iA\u{1F600}==" }
        },
        "extra": {"nested": [1, 2.5, "three", null, true], "big": 9007199254740991_i64}
    });
    let path = "/_matrix/client/v3/sendToDevice/m.room.encrypted/txn1";
    let messages = json!({ "messages": { &bob.user_id: { &bob.device_id: content } } });
    let (status, body) = server.put(path, alice.token(), messages.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A retry of the same transaction delivers nothing twice.
    assert_eq!(server.put(path, alice.token(), messages).await.0, StatusCode::OK);

    let body = sync(&server, &bob, Some(&since), 0).await;
    let events = body["to_device"]["events"].as_array().expect("events").clone();
    assert_eq!(events, vec![json!({"sender": alice.user_id, "type": "m.room.encrypted", "content": content})]);
    let after = sync(&server, &bob, Some(&next_batch(&body)), 0).await;
    assert!(after.get("to_device").is_none_or(|t| t["events"] == json!([])), "{after}");
}

#[tokio::test]
async fn guests_may_publish_query_and_claim_keys_but_not_cross_sign() {
    let server = TestServer::start_with(|config| config.registration.allow_guests = true).await;
    let (status, body) = server.post("/_matrix/client/v3/register?kind=guest", None, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let guest = TestUser {
        user_id: body["user_id"].as_str().expect("user_id").to_owned(),
        access_token: body["access_token"].as_str().expect("token").to_owned(),
        device_id: body["device_id"].as_str().expect("device_id").to_owned(),
        password: String::new(),
    };
    let alice = server.register("alice", PW).await;
    let key = upload_device_keys(&server, &guest).await;
    let otk = key.sign(&guest.user_id, json!({"key": "Z3Vlc3Q"}));
    assert_eq!(upload(&server, &guest, json!({"one_time_keys": {"signed_curve25519:G": otk}})).await.0, StatusCode::OK);
    let body = query(&server, &guest, json!({ &alice.user_id: [] })).await;
    assert_eq!(body["device_keys"][&alice.user_id], json!({}), "{body}");
    let body = claim(&server, &alice, &guest).await;
    assert_eq!(body["one_time_keys"][&guest.user_id][&guest.device_id]["signed_curve25519:G"], otk, "{body}");
    let master = cross_signing_key(&guest, "master", &Key::cross_signing());
    let response = server
        .post("/_matrix/client/v3/keys/device_signing/upload", guest.token(), json!({"master_key": master}))
        .await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN");
}

#[tokio::test]
async fn a_deactivated_account_publishes_no_keys() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    upload_device_keys(&server, &alice).await;
    let master = Key::cross_signing();
    let path = "/_matrix/client/v3/keys/device_signing/upload";
    let body = json!({"master_key": cross_signing_key(&alice, "master", &master)});
    assert_eq!(server.post(path, alice.token(), body).await.0, StatusCode::OK);
    let body = query(&server, &bob, json!({ &alice.user_id: [] })).await;
    assert!(body["master_keys"][&alice.user_id].is_object(), "{body}");

    let (status, challenge) = server.post("/_matrix/client/v3/account/deactivate", alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    let auth = alice.password_auth(challenge["session"].as_str().expect("session"));
    let (status, body) =
        server.post("/_matrix/client/v3/account/deactivate", alice.token(), json!({"auth": auth})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body = query(&server, &bob, json!({ &alice.user_id: [] })).await;
    assert_eq!(body["device_keys"][&alice.user_id], json!({}), "{body}");
    assert!(body.get("master_keys").is_none_or(|keys| keys.get(&alice.user_id).is_none()), "{body}");
}
