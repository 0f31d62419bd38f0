//! Account erasure (`POST /account/deactivate` with `erase: true`; spec: "Account
//! deactivation"): users who join a room afterwards are served the erased user's earlier
//! events redacted, while members who were there when the events were sent keep seeing them
//! (as Synapse does: pruned unless the reader was joined at the event).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "erasure-test-pw";

async fn deactivate(server: &TestServer, user: &TestUser, erase: bool) {
    const DEACTIVATE: &str = "/_matrix/client/v3/account/deactivate";
    let (status, challenge) = server.post(DEACTIVATE, user.token(), json!({"erase": erase})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    let session = challenge["session"].as_str().expect("session");
    let body = json!({"erase": erase, "auth": user.password_auth(session)});
    let (status, body) = server.post(DEACTIVATE, user.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The message event `event_id` as `viewer` reads it through /messages, /event and /sync.
async fn seen_by(server: &TestServer, viewer: &TestUser, room: &str, event_id: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    let (status, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"), viewer.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    seen.extend(page["chunk"].as_array().unwrap().iter().filter(|e| e["event_id"] == event_id).cloned());
    let (status, event) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"), viewer.token()).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    seen.push(event);
    let (status, sync) =
        server.get("/_matrix/client/v3/sync?filter={\"room\":{\"timeline\":{\"limit\":50}}}", viewer.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    let timeline = sync["rooms"]["join"][room]["timeline"]["events"].as_array().expect("timeline");
    seen.extend(timeline.iter().filter(|e| e["event_id"] == event_id).cloned());
    assert_eq!(seen.len(), 3, "the event is served by all three: {seen:?}");
    seen
}

/// Alice's public room, where bob says `text` and then deactivates his account (erasing it or
/// not), after which carol joins. Returns the server, alice, carol, the room and bob's event.
async fn bob_speaks_and_leaves(erase: bool, text: &str) -> (TestServer, TestUser, TestUser, String, String) {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let said = server.send_text(&bob, &room, "t1", text).await;
    deactivate(&server, &bob, erase).await;
    server.join(&carol, &room).await;
    (server, alice, carol, room, said)
}

#[tokio::test]
async fn an_erased_users_messages_are_redacted_for_those_who_join_afterwards() {
    let (server, alice, carol, room, said) = bob_speaks_and_leaves(true, "something bob regrets").await;
    for event in seen_by(&server, &carol, &room, &said).await {
        assert_eq!(event["content"], json!({}), "carol joined after the erasure: {event}");
        assert_eq!(event["sender"], "@bob:hearth.test");
    }
    // Alice was in the room when bob spoke: what she saw stays.
    for event in seen_by(&server, &alice, &room, &said).await {
        assert_eq!(event["content"]["body"], "something bob regrets", "{event}");
    }
}

#[tokio::test]
async fn deactivation_without_erasure_keeps_messages_for_newcomers() {
    let (server, _, carol, room, said) = bob_speaks_and_leaves(false, "bob stands by this").await;
    for event in seen_by(&server, &carol, &room, &said).await {
        assert_eq!(event["content"]["body"], "bob stands by this", "{event}");
    }
}
