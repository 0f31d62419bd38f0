//! To-device messages and presence as clients meet them through `/sync` (DESIGN §3):
//! to-device messages reach exactly the devices they name, wake a waiting sync, arrive until
//! acknowledged and never again; presence reaches the users who share a room and no one else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PW: &str = "to-device-test-password";

/// `GET /sync` path; `extra` is appended verbatim.
fn sync_path(since: Option<&str>, timeout_ms: u64, extra: &str) -> String {
    let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
    if let Some(since) = since {
        path.push_str(&format!("&since={}", encode(since)));
    }
    path.push_str(extra);
    path
}

/// Syncs without touching presence, so that to-device tests see only what they send.
const QUIET: &str = "&set_presence=offline";

async fn sync(server: &TestServer, user: &TestUser, path: &str) -> Value {
    let (status, body) = server.get(path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

fn next_batch(response: &Value) -> String {
    response["next_batch"].as_str().unwrap_or_else(|| panic!("next_batch in {response}")).to_owned()
}

fn to_device(response: &Value) -> Vec<Value> {
    response["to_device"]["events"].as_array().cloned().unwrap_or_default()
}

fn presence_of(response: &Value, user: &TestUser) -> Vec<Value> {
    response["presence"]["events"]
        .as_array()
        .map(|events| events.iter().filter(|event| event["sender"] == user.user_id.as_str()).cloned().collect())
        .unwrap_or_default()
}

async fn send_to_device(server: &TestServer, sender: &TestUser, txn: &str, messages: Value) {
    let path = format!("/_matrix/client/v3/sendToDevice/m.test.ping/{txn}");
    let (status, body) = server.put(&path, sender.token(), json!({ "messages": messages })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn create_room(server: &TestServer, user: &TestUser) -> String {
    let (status, body) =
        server.post("/_matrix/client/v3/createRoom", user.token(), json!({"preset": "public_chat"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["room_id"].as_str().expect("room_id").to_owned()
}

fn presence_path(user: &TestUser) -> String {
    format!("/_matrix/client/v3/presence/{}/status", user.user_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_one_device_wakes_its_sync_and_arrives_once_and_never_on_another_device() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob_a = server.register("bob", PW).await;
    let bob_b = server.login("bob", PW).await;
    let a0 = next_batch(&sync(&server, &bob_a, &sync_path(None, 0, QUIET)).await);
    let b0 = next_batch(&sync(&server, &bob_b, &sync_path(None, 0, QUIET)).await);

    let path = sync_path(Some(&a0), 10_000, QUIET);
    let (client, url, token) = (server.http.clone(), server.url(&path), bob_a.access_token.clone());
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let (status, body) = send_json(&client, reqwest::Method::GET, &url, Some(&token), None).await;
        (status, body, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_to_device(&server, &alice, "t1", json!({ &bob_a.user_id: { &bob_a.device_id: {"n": 1} } })).await;
    let (status, first, elapsed) = waiting.await.expect("sync task");
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(elapsed < Duration::from_secs(9), "the sync waited {elapsed:?} although a message arrived");
    let expected = vec![json!({"sender": alice.user_id, "type": "m.test.ping", "content": {"n": 1}})];
    assert_eq!(to_device(&first), expected, "{first}");

    // The response was lost: the same `since` delivers the message again.
    let again = sync(&server, &bob_a, &sync_path(Some(&a0), 0, QUIET)).await;
    assert_eq!(to_device(&again), expected, "{again}");
    // Moving past it acknowledges it: never again, and it is gone from the database.
    let a1 = next_batch(&again);
    let after = sync(&server, &bob_a, &sync_path(Some(&a1), 0, QUIET)).await;
    assert!(to_device(&after).is_empty(), "{after}");
    assert_eq!(server.count("SELECT count(*) FROM to_device_messages").await, 0);

    // Bob's other device never sees it.
    let other = sync(&server, &bob_b, &sync_path(Some(&b0), 0, QUIET)).await;
    assert!(to_device(&other).is_empty(), "{other}");
    let other_initial = sync(&server, &bob_b, &sync_path(None, 0, QUIET)).await;
    assert!(to_device(&other_initial).is_empty(), "{other_initial}");
}

#[tokio::test]
async fn all_devices_get_a_star_message_once_even_when_the_send_is_retried() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob_a = server.register("bob", PW).await;
    let bob_b = server.login("bob", PW).await;
    let a0 = next_batch(&sync(&server, &bob_a, &sync_path(None, 0, QUIET)).await);
    let b0 = next_batch(&sync(&server, &bob_b, &sync_path(None, 0, QUIET)).await);

    let messages = json!({
        &bob_a.user_id: { "*": {"n": "all"} },
        // Skipped silently: unknown local user and device, remote user.
        "@nobody:hearth.test": { "X": {} },
        "@carol:elsewhere.test": { "*": {} },
    });
    send_to_device(&server, &alice, "retried", messages.clone()).await;
    send_to_device(&server, &alice, "retried", messages).await;
    send_to_device(&server, &alice, "unknown-device", json!({ &bob_a.user_id: { "NOSUCHDEVICE": {} } })).await;

    for (device, since) in [(&bob_a, &a0), (&bob_b, &b0)] {
        let response = sync(&server, device, &sync_path(Some(since), 0, QUIET)).await;
        let events = to_device(&response);
        assert_eq!(events.len(), 1, "one message for {}: {response}", device.device_id);
        assert_eq!(events[0]["content"], json!({"n": "all"}));
        let next = sync(&server, device, &sync_path(Some(&next_batch(&response)), 0, QUIET)).await;
        assert!(to_device(&next).is_empty(), "{next}");
    }
}

#[tokio::test]
async fn a_message_sent_before_the_first_sync_arrives_on_it_and_a_deleted_device_loses_its_queue() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob_a = server.register("bob", PW).await;
    let bob_b = server.login("bob", PW).await;
    send_to_device(&server, &alice, "early", json!({ &bob_a.user_id: { "*": {"early": true} } })).await;

    let initial = sync(&server, &bob_a, &sync_path(None, 0, QUIET)).await;
    assert_eq!(to_device(&initial).len(), 1, "{initial}");
    assert_eq!(to_device(&initial)[0]["content"], json!({"early": true}));
    assert_eq!(server.count("SELECT count(*) FROM to_device_messages").await, 2);

    // Bob deletes device B before it ever synced: its queue goes with it.
    let path = format!("/_matrix/client/v3/devices/{}", bob_b.device_id);
    let (status, challenge) = server.delete(&path, bob_a.token(), Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    let session = challenge["session"].as_str().expect("a UIA session");
    let (status, body) = server.delete(&path, bob_a.token(), Some(json!({"auth": bob_a.password_auth(session)}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.count("SELECT count(*) FROM to_device_messages").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_users_sharing_a_room_and_no_stranger() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = create_room(&server, &alice).await;
    server.join(&bob, &room).await;
    let bob0 = next_batch(&sync(&server, &bob, &sync_path(None, 0, QUIET)).await);
    let carol0 = next_batch(&sync(&server, &carol, &sync_path(None, 0, QUIET)).await);

    let (status, body) =
        server.put(&presence_path(&alice), alice.token(), json!({"presence": "online", "status_msg": "here"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let response = sync(&server, &bob, &sync_path(Some(&bob0), 10_000, QUIET)).await;
    let events = presence_of(&response, &alice);
    assert_eq!(events.len(), 1, "{response}");
    assert_eq!(events[0]["type"], "m.presence");
    let content = &events[0]["content"];
    assert_eq!(content["presence"], "online", "{content}");
    assert_eq!(content["status_msg"], "here", "{content}");
    assert_eq!(content["currently_active"], true, "{content}");
    assert!(content["last_active_ago"].as_u64().is_some_and(|ago| ago < 60_000), "{content}");
    // Once: the next window does not repeat it.
    let next = sync(&server, &bob, &sync_path(Some(&next_batch(&response)), 0, QUIET)).await;
    assert!(presence_of(&next, &alice).is_empty(), "{next}");
    // An initial sync shows everyone's current presence.
    let initial = sync(&server, &bob, &sync_path(None, 0, QUIET)).await;
    assert_eq!(presence_of(&initial, &alice).len(), 1, "{initial}");

    let stranger = sync(&server, &carol, &sync_path(Some(&carol0), 0, QUIET)).await;
    assert!(presence_of(&stranger, &alice).is_empty(), "{stranger}");
    let stranger_initial = sync(&server, &carol, &sync_path(None, 0, QUIET)).await;
    assert!(presence_of(&stranger_initial, &alice).is_empty(), "{stranger_initial}");

    // `set_presence` on /sync changes presence once, not on every sync.
    let bob1 = next_batch(&next);
    sync(&server, &alice, &sync_path(None, 0, "&set_presence=unavailable")).await;
    sync(&server, &alice, &sync_path(None, 0, "&set_presence=unavailable")).await;
    let changed = sync(&server, &bob, &sync_path(Some(&bob1), 0, QUIET)).await;
    let events = presence_of(&changed, &alice);
    assert_eq!(events.len(), 1, "{changed}");
    assert_eq!(events[0]["content"]["presence"], "unavailable", "{changed}");
    assert_eq!(events[0]["content"]["status_msg"], "here", "the status message is kept: {changed}");
    let bob2 = next_batch(&changed);
    sync(&server, &alice, &sync_path(None, 0, "&set_presence=unavailable")).await;
    let quiet = sync(&server, &bob, &sync_path(Some(&bob2), 0, QUIET)).await;
    assert!(presence_of(&quiet, &alice).is_empty(), "an unchanged set_presence writes nothing: {quiet}");
}

#[tokio::test]
async fn presence_of_strangers_and_of_others_is_refused() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = create_room(&server, &alice).await;
    server.join(&bob, &room).await;
    let (status, body) = server.put(&presence_path(&alice), alice.token(), json!({"presence": "unavailable"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = server.get(&presence_path(&alice), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["presence"], "unavailable", "{body}");
    assert!(body["last_active_ago"].is_u64(), "{body}");
    let (status, body) = server.get(&presence_path(&alice), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_error(&server.get(&presence_path(&alice), carol.token()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(
        &server.put(&presence_path(&bob), alice.token(), json!({"presence": "offline"})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let bad = server.put(&presence_path(&alice), alice.token(), json!({"presence": "dancing"})).await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST, "{}", bad.1);
}

/// A client's `/sync` that changes presence (`set_presence`) keeps the status message; one
/// that raced a `PUT /presence` used to write back the message it had read before the PUT,
/// so the message the user had just set was lost (seen with matrix-js-sdk going idle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_change_from_sync_never_undoes_a_status_message_set_meanwhile() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let path = presence_path(&alice);
    for round in 0..40 {
        let message = format!("status {round}");
        // Each round the PUT says online and the sync unavailable, so the sync always writes.
        let put = server.put(&path, alice.token(), json!({"presence": "online", "status_msg": message}));
        let sync = server.get("/_matrix/client/v3/sync?timeout=0&set_presence=unavailable", alice.token());
        let ((put_status, put_body), (sync_status, sync_body)) = tokio::join!(put, sync);
        assert_eq!(put_status, StatusCode::OK, "{put_body}");
        assert_eq!(sync_status, StatusCode::OK, "{sync_body}");
        let (_, presence) = server.get(&path, alice.token()).await;
        assert_eq!(presence["status_msg"], message.as_str(), "round {round}: {presence}");
    }
}

#[tokio::test]
async fn joining_a_room_brings_the_presence_of_those_now_sharing_it() {
    // Presence that did not change in the window still reaches a user who newly shares a room
    // with its owner (Synapse sends it for newly joined rooms): otherwise a client would show
    // its new room's members as offline until each changes presence.
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = create_room(&server, &alice).await;
    let (status, body) =
        server.put(&presence_path(&alice), alice.token(), json!({"presence": "online", "status_msg": "hi"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.put(&presence_path(&bob), bob.token(), json!({"presence": "unavailable"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bob0 = next_batch(&sync(&server, &bob, &sync_path(None, 0, QUIET)).await);
    let alice0 = next_batch(&sync(&server, &alice, &sync_path(None, 0, QUIET)).await);
    assert!(presence_of(&sync(&server, &bob, &sync_path(None, 0, QUIET)).await, &alice).is_empty(), "strangers");

    server.join(&bob, &room).await;
    let bobs = sync(&server, &bob, &sync_path(Some(&bob0), 0, QUIET)).await;
    let events = presence_of(&bobs, &alice);
    assert_eq!(events.len(), 1, "bob learns alice's presence: {bobs}");
    assert_eq!(
        (events[0]["content"]["presence"].as_str(), events[0]["content"]["status_msg"].as_str()),
        (Some("online"), Some("hi"))
    );
    let alices = sync(&server, &alice, &sync_path(Some(&alice0), 0, QUIET)).await;
    let events = presence_of(&alices, &bob);
    assert_eq!(events.len(), 1, "and alice bob's: {alices}");
    assert_eq!(events[0]["content"]["presence"], "unavailable");
    // Once: the next window does not repeat it.
    let again = sync(&server, &bob, &sync_path(Some(&next_batch(&bobs)), 0, QUIET)).await;
    assert!(presence_of(&again, &alice).is_empty(), "{again}");
}
