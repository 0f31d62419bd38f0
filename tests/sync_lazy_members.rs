//! Lazy-loaded members (spec: "Lazy-loading room members"): a device is not sent a member
//! event it already has (unless it asks for redundant members), a gappy sync still sends the
//! members who changed in the gap, and `/context` honours the filter too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;

const PW: &str = "lazy-members-test-pw";

async fn sync(server: &TestServer, user: &TestUser, since: Option<&str>, filter: &Value) -> Value {
    let mut path = format!("/_matrix/client/v3/sync?timeout=0&filter={}", encode(&filter.to_string()));
    if let Some(since) = since {
        path.push_str(&format!("&since={}", encode(since)));
    }
    let (status, body) = server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn lazy(limit: u32, redundant: bool) -> Value {
    json!({"room": {
        "timeline": {"limit": limit},
        "state": {"lazy_load_members": true, "include_redundant_members": redundant},
    }})
}

/// The member events' state keys in a room's `state` section.
fn state_members(body: &Value, room: &str) -> HashSet<String> {
    body["rooms"]["join"][room]["state"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|event| event["type"] == "m.room.member")
                .map(|event| event["state_key"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn next_batch(body: &Value) -> String {
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

#[tokio::test]
async fn a_device_is_not_sent_a_member_it_already_has_unless_it_asks() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let bobs_phone = server.login("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    server.join(&carol, &room).await;
    server.send_text(&alice, &room, "t0", "first").await;
    let initial = sync(&server, &bob, None, &lazy(1, false)).await;
    let members = state_members(&initial, &room);
    assert!(members.contains(&alice.user_id), "the sender's member event: {initial}");
    assert!(!members.contains(&carol.user_id), "carol has not spoken: {initial}");
    let since = next_batch(&initial);

    server.send_text(&alice, &room, "t1", "second").await;
    let body = sync(&server, &bob, Some(&since), &lazy(1, false)).await;
    assert_eq!(body["rooms"]["join"][&room]["timeline"]["events"][0]["content"]["body"], "second", "{body}");
    assert!(!state_members(&body, &room).contains(&alice.user_id), "alice's member event was sent already: {body}");
    let after_second = next_batch(&body);
    // Asking for redundant members gets it again; another device of bob's never had it.
    let body = sync(&server, &bob, Some(&since), &lazy(1, true)).await;
    assert!(state_members(&body, &room).contains(&alice.user_id), "{body}");
    let phone_initial = sync(&server, &bobs_phone, None, &lazy(1, false)).await;
    assert!(state_members(&phone_initial, &room).contains(&alice.user_id), "{phone_initial}");

    // Only what a response the client acknowledged (by syncing from its token) carried counts
    // as had: a client that lost an answer and syncs from the same token again gets it again.
    server.send_text(&carol, &room, "c1", "hello").await;
    let answer = sync(&server, &bob, Some(&after_second), &lazy(1, false)).await;
    assert!(state_members(&answer, &room).contains(&carol.user_id), "carol now speaks: {answer}");
    let lost_and_retried = sync(&server, &bob, Some(&after_second), &lazy(1, false)).await;
    assert!(state_members(&lost_and_retried, &room).contains(&carol.user_id), "{lost_and_retried}");
    server.send_text(&carol, &room, "c2", "again").await;
    let acknowledged = sync(&server, &bob, Some(&next_batch(&answer)), &lazy(1, false)).await;
    assert!(!state_members(&acknowledged, &room).contains(&carol.user_id), "{acknowledged}");
    // An initial sync starts afresh.
    let retry_initial = sync(&server, &bob, None, &lazy(1, false)).await;
    assert!(state_members(&retry_initial, &room).contains(&carol.user_id), "{retry_initial}");

    // A changed member event is news, not redundant.
    let since = next_batch(&retry_initial);
    let name = format!("/_matrix/client/v3/profile/{}/displayname", carol.user_id);
    assert_eq!(server.put(&name, carol.token(), json!({"displayname": "Carol C."})).await.0, StatusCode::OK);
    server.send_text(&carol, &room, "c3", "renamed").await;
    let body = sync(&server, &bob, Some(&since), &lazy(5, false)).await;
    let entry = &body["rooms"]["join"][&room];
    let state = entry["state"]["events"].as_array().unwrap();
    let seen: Vec<&Value> = state.iter().chain(entry["timeline"]["events"].as_array().unwrap()).collect();
    assert!(seen.iter().any(|event| event["content"]["displayname"] == "Carol C."), "{entry}");
}

#[tokio::test]
async fn context_honours_lazy_loading() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    server.join(&carol, &room).await;
    server.send_text(&alice, &room, "t1", "one").await;
    let middle = server.send_text(&bob, &room, "t2", "two").await;
    server.send_text(&alice, &room, "t3", "three").await;

    let members = |body: &Value| -> HashSet<String> {
        body["state"]
            .as_array()
            .expect("state")
            .iter()
            .filter(|event| event["type"] == "m.room.member")
            .map(|event| event["state_key"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = format!("/_matrix/client/v3/rooms/{room}/context/{middle}?limit=2");
    let (status, full) = server.get(&path, carol.token()).await;
    assert_eq!(status, StatusCode::OK, "{full}");
    assert_eq!(members(&full).len(), 3, "without lazy loading every member: {full}");
    let filter = encode(&json!({"lazy_load_members": true}).to_string());
    let (status, lazy) = server.get(&format!("{path}&filter={filter}"), carol.token()).await;
    assert_eq!(status, StatusCode::OK, "{lazy}");
    let expected: HashSet<String> = [alice.user_id.clone(), bob.user_id.clone()].into_iter().collect();
    assert_eq!(members(&lazy), expected, "only the senders of the events returned: {lazy}");
    assert!(
        lazy["state"].as_array().unwrap().iter().any(|event| event["type"] == "m.room.create"),
        "other state stays"
    );
}
