//! Re-sending a piece of state that is already the room's (same type, key, content and
//! sender) creates nothing and answers with the event that stands, as Synapse does: clients
//! that re-apply settings must not fill the timeline with copies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "state-resend-test-pw";

async fn put_state(server: &TestServer, user: &TestUser, room: &str, path: &str, content: Value) -> String {
    let (status, body) =
        server.put(&format!("/_matrix/client/v3/rooms/{room}/state/{path}"), user.token(), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

/// The event ids of `kind` in the room's timeline, oldest first, as `viewer` pages it.
async fn timeline_ids(server: &TestServer, viewer: &TestUser, room: &str, kind: &str) -> Vec<String> {
    let (status, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=100"), viewer.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|event| event["type"] == kind)
        .map(|event| event["event_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn identical_state_sent_again_answers_with_the_standing_event() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let mut power =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels"), alice.token()).await.1;
    power["events"]["m.room.topic"] = json!(0);
    put_state(&server, &alice, &room, "m.room.power_levels", power).await;

    let first = put_state(&server, &alice, &room, "m.room.topic", json!({"topic": "hello"})).await;
    let again = put_state(&server, &alice, &room, "m.room.topic/", json!({"topic": "hello"})).await;
    assert_eq!(again, first, "the same state again is the event that stands");
    assert_eq!(timeline_ids(&server, &bob, &room, "m.room.topic").await, vec![first.clone()]);

    // Another sender, or other content, is a change.
    let by_bob = put_state(&server, &bob, &room, "m.room.topic", json!({"topic": "hello"})).await;
    assert_ne!(by_bob, first);
    let changed = put_state(&server, &bob, &room, "m.room.topic", json!({"topic": "hello again"})).await;
    let back = put_state(&server, &bob, &room, "m.room.topic", json!({"topic": "hello"})).await;
    assert_ne!(back, by_bob, "the standing topic is \"hello again\", so \"hello\" is a change");
    assert_eq!(timeline_ids(&server, &bob, &room, "m.room.topic").await, vec![first, by_bob, changed, back]);
}

#[tokio::test]
async fn a_redacted_state_event_sent_again_is_a_new_event() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let topic = put_state(&server, &alice, &room, "m.room.topic", json!({"topic": "secret"})).await;
    let (status, body) =
        server.put(&format!("/_matrix/client/v3/rooms/{room}/redact/{topic}/r1"), alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The room's topic is now empty; setting it again must set it.
    let again = put_state(&server, &alice, &room, "m.room.topic", json!({"topic": "secret"})).await;
    assert_ne!(again, topic);
    let (_, current) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic"), alice.token()).await;
    assert_eq!(current, json!({"topic": "secret"}));
}

#[tokio::test]
async fn a_repeated_ban_or_invite_writes_nothing_new() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    for _ in 0..2 {
        let ban = json!({"user_id": bob.user_id, "reason": "spam"});
        let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/ban"), alice.token(), ban).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let invite = json!({"user_id": carol.user_id});
        let (status, body) =
            server.post(&format!("/_matrix/client/v3/rooms/{room}/invite"), alice.token(), invite).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let members = timeline_ids(&server, &alice, &room, "m.room.member").await;
    assert_eq!(members.len(), 3, "alice's join, one ban, one invite: {members:?}");
    // A ban for another reason is a new event.
    let ban = json!({"user_id": bob.user_id, "reason": "more spam"});
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/ban"), alice.token(), ban).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(timeline_ids(&server, &alice, &room, "m.room.member").await.len(), 4);
}
