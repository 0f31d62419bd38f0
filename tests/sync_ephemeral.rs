//! Typing notifications, read receipts and read markers as `/sync` delivers them, through
//! real HTTP: typing wakes a long-poll and expires on its own, receipts arrive exactly once,
//! private receipts reach only their owner, and bad requests change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PW: &str = "ephemeral-test-password";

async fn create_room(server: &TestServer, user: &TestUser) -> String {
    let (status, body) =
        server.post("/_matrix/client/v3/createRoom", user.token(), json!({"preset": "public_chat"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["room_id"].as_str().expect("room_id").to_owned()
}

async fn send(server: &TestServer, user: &TestUser, room: &str, txn: &str) -> String {
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            user.token(),
            json!({"msgtype": "m.text", "body": txn}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

async fn sync(server: &TestServer, user: &TestUser, since: Option<&str>, timeout_ms: u64) -> Value {
    let path = match since {
        Some(since) => format!("/_matrix/client/v3/sync?since={since}&timeout={timeout_ms}"),
        None => "/_matrix/client/v3/sync".to_owned(),
    };
    let (status, body) = server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn next_batch(body: &Value) -> String {
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

fn ephemeral<'a>(body: &'a Value, room: &str, kind: &str) -> Vec<&'a Value> {
    body["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .map(|events| events.iter().filter(|event| event["type"] == kind).collect())
        .unwrap_or_default()
}

fn typing_users(event: &Value) -> Vec<String> {
    event["content"]["user_ids"]
        .as_array()
        .expect("user_ids")
        .iter()
        .map(|user| user.as_str().expect("user id").to_owned())
        .collect()
}

/// The receipts of `kind` by `user` in the room's `m.receipt` events of one response.
fn receipts_by(body: &Value, room: &str, kind: &str, user: &str) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for event in ephemeral(body, room, "m.receipt") {
        for (event_id, types) in event["content"].as_object().expect("receipt content") {
            if let Some(receipt) = types.get(kind).and_then(|users| users.get(user)) {
                found.push((event_id.clone(), receipt.clone()));
            }
        }
    }
    found
}

async fn two_users_in_a_room(server: &TestServer) -> (TestUser, TestUser, String) {
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = create_room(server, &alice).await;
    server.join(&bob, &room).await;
    (alice, bob, room)
}

#[tokio::test]
async fn typing_wakes_a_long_poll_and_expires_without_further_requests() {
    let server = TestServer::start().await;
    let (alice, bob, room) = two_users_in_a_room(&server).await;
    let token = next_batch(&sync(&server, &alice, None, 0).await);

    // Alice waits; bob starts typing while she does.
    let poll = {
        let http = server.http.clone();
        let url = server.url(&format!("/_matrix/client/v3/sync?since={token}&timeout=20000"));
        let alice_token = alice.access_token.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let body: Value =
                http.get(url).bearer_auth(alice_token).send().await.expect("sync").json().await.expect("json");
            (body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = format!("/_matrix/client/v3/rooms/{room}/typing/{}", bob.user_id);
    let (status, body) = server.put(&path, bob.token(), json!({"typing": true, "timeout": 500})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (body, waited) = poll.await.expect("poll task");
    assert!(waited < Duration::from_secs(10), "the long-poll woke on typing, took {waited:?}");
    let typing = ephemeral(&body, &room, "m.typing");
    assert_eq!(typing.len(), 1, "{body}");
    assert_eq!(typing_users(typing[0]), vec![bob.user_id.clone()]);

    // Bob does nothing more; within a few seconds alice sees him stop.
    let mut since = next_batch(&body);
    let deadline = Instant::now() + Duration::from_secs(15);
    let stopped = loop {
        assert!(Instant::now() < deadline, "bob never stopped typing in alice's sync");
        let body = sync(&server, &alice, Some(&since), 5000).await;
        since = next_batch(&body);
        if let Some(event) = ephemeral(&body, &room, "m.typing").first() {
            break typing_users(event);
        }
    };
    assert!(stopped.is_empty(), "bob stopped typing: {stopped:?}");

    // The stop is delivered once: a later sync is empty for typing.
    let body = sync(&server, &alice, Some(&since), 0).await;
    assert!(ephemeral(&body, &room, "m.typing").is_empty(), "{body}");
}

#[tokio::test]
async fn typing_without_a_timeout_is_accepted_with_a_default() {
    // The spec makes `timeout` optional; ruma's request type requires it, clients leave it out.
    let server = TestServer::start().await;
    let (alice, bob, room) = two_users_in_a_room(&server).await;
    let token = next_batch(&sync(&server, &alice, None, 0).await);
    let path = format!("/_matrix/client/v3/rooms/{room}/typing/{}", bob.user_id);
    let (status, body) = server.put(&path, bob.token(), json!({"typing": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body = sync(&server, &alice, Some(&token), 0).await;
    let typing = ephemeral(&body, &room, "m.typing");
    assert_eq!(typing.len(), 1, "{body}");
    assert_eq!(typing_users(typing[0]), vec![bob.user_id.clone()], "bob types until the default timeout");

    // Stopping needs no timeout either, and a timeout that is not a number is still refused.
    let (status, stopped) = server.put(&path, bob.token(), json!({"typing": false})).await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    let body = sync(&server, &alice, Some(&next_batch(&body)), 0).await;
    let typing = ephemeral(&body, &room, "m.typing");
    assert_eq!(typing.len(), 1, "{body}");
    assert!(typing_users(typing[0]).is_empty(), "{body}");
    let bad = server.put(&path, bob.token(), json!({"typing": true, "timeout": "soon"})).await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "M_BAD_JSON");
}

#[tokio::test]
async fn typing_is_only_for_yourself_in_rooms_you_are_in() {
    let server = TestServer::start().await;
    let (alice, bob, room) = two_users_in_a_room(&server).await;
    let carol = server.register("carol", PW).await;

    let path = format!("/_matrix/client/v3/rooms/{room}/typing/{}", alice.user_id);
    let response = server.put(&path, bob.token(), json!({"typing": true, "timeout": 30000})).await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    let path = format!("/_matrix/client/v3/rooms/{room}/typing/{}", carol.user_id);
    let response = server.put(&path, carol.token(), json!({"typing": true, "timeout": 30000})).await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(server.count("SELECT count(*) FROM typing").await, 0);

    // Explicit stop: typing, then not.
    let path = format!("/_matrix/client/v3/rooms/{room}/typing/{}", bob.user_id);
    let token = next_batch(&sync(&server, &alice, None, 0).await);
    assert_eq!(server.put(&path, bob.token(), json!({"typing": true, "timeout": 30000})).await.0, StatusCode::OK);
    let body = sync(&server, &alice, Some(&token), 5000).await;
    assert_eq!(typing_users(ephemeral(&body, &room, "m.typing")[0]), vec![bob.user_id.clone()]);
    // An initial sync shows who types now.
    let initial = sync(&server, &alice, None, 0).await;
    assert_eq!(typing_users(ephemeral(&initial, &room, "m.typing")[0]), vec![bob.user_id.clone()]);
    assert_eq!(server.put(&path, bob.token(), json!({"typing": false})).await.0, StatusCode::OK);
    let body = sync(&server, &alice, Some(&next_batch(&body)), 5000).await;
    assert!(typing_users(ephemeral(&body, &room, "m.typing")[0]).is_empty(), "{body}");
}

#[tokio::test]
async fn a_read_receipt_arrives_exactly_once() {
    let server = TestServer::start().await;
    let (alice, bob, room) = two_users_in_a_room(&server).await;
    let event_id = send(&server, &alice, &room, "hello").await;
    let token = next_batch(&sync(&server, &alice, None, 0).await);

    let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}");
    let (status, body) = server.post(&path, bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let body = sync(&server, &alice, Some(&token), 5000).await;
    let receipts = receipts_by(&body, &room, "m.read", &bob.user_id);
    assert_eq!(receipts.len(), 1, "{body}");
    assert_eq!(receipts[0].0, event_id);
    assert!(receipts[0].1["ts"].is_i64(), "{body}");
    let token = next_batch(&body);
    let body = sync(&server, &alice, Some(&token), 0).await;
    assert!(receipts_by(&body, &room, "m.read", &bob.user_id).is_empty(), "delivered twice: {body}");

    // An initial sync shows the current receipts.
    let initial = sync(&server, &alice, None, 0).await;
    assert_eq!(receipts_by(&initial, &room, "m.read", &bob.user_id).len(), 1, "{initial}");

    // A threaded receipt carries its thread.
    let second = send(&server, &alice, &room, "again").await;
    let token = next_batch(&sync(&server, &alice, Some(&token), 0).await);
    let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{second}");
    let (status, body) = server.post(&path, bob.token(), json!({"thread_id": "main"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body = sync(&server, &alice, Some(&token), 5000).await;
    let receipts = receipts_by(&body, &room, "m.read", &bob.user_id);
    assert_eq!(receipts.len(), 1, "{body}");
    assert_eq!(receipts[0].1["thread_id"], "main", "{body}");
}

#[tokio::test]
async fn an_older_receipt_does_not_move_the_receipt_back() {
    let server = TestServer::start().await;
    let (alice, bob, room) = two_users_in_a_room(&server).await;
    let first = send(&server, &alice, &room, "one").await;
    let second = send(&server, &alice, &room, "two").await;
    for event_id in [&second, &first] {
        let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}");
        assert_eq!(server.post(&path, bob.token(), json!({})).await.0, StatusCode::OK);
    }
    let initial = sync(&server, &alice, None, 0).await;
    let receipts = receipts_by(&initial, &room, "m.read", &bob.user_id);
    assert_eq!(receipts.len(), 1, "{initial}");
    assert_eq!(receipts[0].0, second);
}

#[tokio::test]
async fn private_receipts_reach_only_their_owner() {
    let server = TestServer::start().await;
    let (alice, bob, room) = two_users_in_a_room(&server).await;
    let event_id = send(&server, &alice, &room, "secret").await;
    let alice_token = next_batch(&sync(&server, &alice, None, 0).await);
    let bob_token = next_batch(&sync(&server, &bob, None, 0).await);

    let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read.private/{event_id}");
    assert_eq!(server.post(&path, bob.token(), json!({})).await.0, StatusCode::OK);
    // A public change afterwards, so alice's sync has something to return.
    send(&server, &alice, &room, "after").await;

    let body = sync(&server, &bob, Some(&bob_token), 5000).await;
    let own = receipts_by(&body, &room, "m.read.private", &bob.user_id);
    assert_eq!(own.len(), 1, "{body}");
    assert_eq!(own[0].0, event_id);

    let body = sync(&server, &alice, Some(&alice_token), 5000).await;
    assert!(!body.to_string().contains("m.read.private"), "leaked to alice: {body}");
    let initial = sync(&server, &alice, None, 0).await;
    assert!(!initial.to_string().contains("m.read.private"), "leaked to alice: {initial}");
    let initial = sync(&server, &bob, None, 0).await;
    assert_eq!(receipts_by(&initial, &room, "m.read.private", &bob.user_id).len(), 1, "{initial}");
}

#[tokio::test]
async fn read_markers_set_fully_read_and_the_receipt() {
    let server = TestServer::start().await;
    let (alice, bob, room) = two_users_in_a_room(&server).await;
    let event_id = send(&server, &alice, &room, "read me").await;
    let bob_token = next_batch(&sync(&server, &bob, None, 0).await);

    let path = format!("/_matrix/client/v3/rooms/{room}/read_markers");
    let (status, body) = server.post(&path, bob.token(), json!({"m.fully_read": event_id, "m.read": event_id})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let body = sync(&server, &bob, Some(&bob_token), 5000).await;
    let account_data = &body["rooms"]["join"][&room]["account_data"]["events"];
    let fully_read = account_data
        .as_array()
        .and_then(|events| events.iter().find(|event| event["type"] == "m.fully_read"))
        .unwrap_or_else(|| panic!("no m.fully_read in {body}"));
    assert_eq!(fully_read["content"]["event_id"], event_id.as_str());
    assert_eq!(receipts_by(&body, &room, "m.read", &bob.user_id).len(), 1, "{body}");

    let path = format!("/_matrix/client/v3/user/{}/rooms/{room}/account_data/m.fully_read", bob.user_id);
    let (status, content) = server.get(&path, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{content}");
    assert_eq!(content["event_id"], event_id.as_str());
}

#[tokio::test]
async fn bad_receipts_get_the_spec_errors_and_change_nothing() {
    let server = TestServer::start().await;
    let (alice, bob, room) = two_users_in_a_room(&server).await;
    let carol = server.register("carol", PW).await;
    let event_id = send(&server, &alice, &room, "hi").await;
    let other_room = create_room(&server, &alice).await;
    let elsewhere = send(&server, &alice, &other_room, "elsewhere").await;

    let unknown = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/$nosuchevent");
    assert_error(&server.post(&unknown, bob.token(), json!({})).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let wrong_room = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{elsewhere}");
    assert_error(&server.post(&wrong_room, bob.token(), json!({})).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}");
    assert_error(&server.post(&path, carol.token(), json!({})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let bad_type = format!("/_matrix/client/v3/rooms/{room}/receipt/m.nonsense/{event_id}");
    assert_error(&server.post(&bad_type, bob.token(), json!({})).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let bad_thread = server.post(&path, bob.token(), json!({"thread_id": "nonsense"})).await;
    assert_eq!(bad_thread.0, StatusCode::BAD_REQUEST, "{}", bad_thread.1);

    let markers = format!("/_matrix/client/v3/rooms/{room}/read_markers");
    let response =
        server.post(&markers, bob.token(), json!({"m.fully_read": event_id, "m.read": "$nosuchevent"})).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response = server.post(&markers, carol.token(), json!({"m.fully_read": event_id})).await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    assert_eq!(server.count("SELECT count(*) FROM receipts").await, 0);
    assert_eq!(server.count("SELECT count(*) FROM account_data WHERE data_type = 'm.fully_read'").await, 0);
}
