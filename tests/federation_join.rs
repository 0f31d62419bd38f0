//! Membership across two Hearth servers federating over TLS on loopback (issue #16 item 6): a
//! user of B joins a room of A by alias and by id, chats both ways, leaves, is kicked and
//! banned — each step checked as the users on either side observe it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::federation::{FedServer, FederatedPair};
use common::{TestUser, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Federation is asynchronous: what one side did reaches the other within this.
const DELIVERY: Duration = Duration::from_secs(30);

async fn joined_members(server: &FedServer, user: &TestUser, room: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{room}/joined_members");
    let (status, body) = server.server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["joined"].as_object().unwrap().keys().cloned().collect()
}

/// The rooms `user`'s sync lists as left (an initial sync lists them only when asked to).
async fn left_rooms(server: &FedServer, user: &TestUser) -> Vec<String> {
    let path = format!("/_matrix/client/v3/sync?filter={}", encode(r#"{"room":{"include_leave":true}}"#));
    let (status, sync) = server.server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    sync["rooms"]["leave"].as_object().map(|rooms| rooms.keys().cloned().collect()).unwrap_or_default()
}

/// Polls `check` until it holds; panics with `what` after [`DELIVERY`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < DELIVERY, "{what}: not within {DELIVERY:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bodies of the `m.room.message` events `user` can read in `room`, oldest first.
async fn messages(server: &FedServer, user: &TestUser, room: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50");
    let (status, body) = server.server.get(&path, user.token()).await;
    if status != StatusCode::OK {
        return Vec::new();
    }
    let mut texts: Vec<String> = body["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "m.room.message")
        .filter_map(|event| event["content"]["body"].as_str().map(str::to_owned))
        .collect();
    texts.reverse();
    texts
}

async fn post(server: &FedServer, user: &TestUser, path: &str, body: Value) -> (StatusCode, Value) {
    server.server.post(path, user.token(), body).await
}

#[tokio::test]
async fn a_user_of_b_joins_a_room_of_a_by_alias_chats_both_ways_and_leaves() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let alice = a.server.register("alice", "alice's password").await;
    let bob = b.server.register("bob", "bob's password").await;
    let room =
        a.server.create_room(&alice, json!({"preset": "public_chat", "room_alias_name": "tea", "name": "Tea"})).await;
    let alias = format!("#tea:{}", a.name());

    // B resolves the alias by asking A, then joins through A.
    let (status, body) =
        b.server.get(&format!("/_matrix/client/v3/directory/room/{}", encode(&alias)), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], room);
    let (status, body) = post(b, &bob, &format!("/_matrix/client/v3/join/{}", encode(&alias)), json!({})).await;
    assert_eq!(status, StatusCode::OK, "bob joins by alias: {body}");
    assert_eq!(body["room_id"], room);

    // Both sides agree bob is in; bob's sync on B shows the room with its name.
    assert!(joined_members(a, &alice, &room).await.contains(&bob.user_id));
    assert!(joined_members(b, &bob, &room).await.contains(&alice.user_id), "B holds the room's state");
    let (status, sync) = b.server.get("/_matrix/client/v3/sync", bob.token()).await;
    assert_eq!(status, StatusCode::OK);
    let joined = &sync["rooms"]["join"][&room];
    let state: Vec<Value> = joined["state"]["events"].as_array().into_iter().flatten().cloned().collect();
    let timeline: Vec<Value> = joined["timeline"]["events"].as_array().into_iter().flatten().cloned().collect();
    assert!(
        state.iter().chain(&timeline).any(|event| event["type"] == "m.room.name" && event["content"]["name"] == "Tea"),
        "bob's sync shows the room's name: {joined}"
    );

    // A -> B and B -> A.
    a.server.send_text(&alice, &room, "a1", "hello from A").await;
    eventually("alice's message reaches bob", || async {
        messages(b, &bob, &room).await.contains(&"hello from A".to_owned())
    })
    .await;
    b.server.send_text(&bob, &room, "b1", "hello from B").await;
    eventually("bob's message reaches alice", || async {
        messages(a, &alice, &room).await.contains(&"hello from B".to_owned())
    })
    .await;

    b.server.leave(&bob, &room).await;
    eventually("A sees bob leave", || async { !joined_members(a, &alice, &room).await.contains(&bob.user_id) }).await;
}

#[tokio::test]
async fn a_user_of_b_joins_by_room_id_through_a_and_is_kicked_then_banned() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let alice = a.server.register("alice", "alice's password").await;
    let bob = b.server.register("bob", "bob's password").await;
    let room = a.server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let join_by_id = format!("/_matrix/client/v3/join/{}?via={}", encode(&room), encode(a.name().as_str()));

    // Without a server to ask, B cannot know where the room lives (v12 ids name no server).
    let (status, body) = post(b, &bob, &format!("/_matrix/client/v3/join/{}", encode(&room)), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, body) = post(b, &bob, &join_by_id, json!({})).await;
    assert_eq!(status, StatusCode::OK, "bob joins by id via A: {body}");
    assert!(joined_members(a, &alice, &room).await.contains(&bob.user_id));

    let (status, body) =
        post(a, &alice, &format!("/_matrix/client/v3/rooms/{room}/kick"), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("bob's sync on B shows the kick", || async { left_rooms(b, &bob).await.contains(&room) }).await;

    // Kicked, not banned: bob can come back.
    let (status, body) = post(b, &bob, &join_by_id, json!({})).await;
    assert_eq!(status, StatusCode::OK, "bob rejoins: {body}");
    assert!(joined_members(a, &alice, &room).await.contains(&bob.user_id));

    let (status, body) =
        post(a, &alice, &format!("/_matrix/client/v3/rooms/{room}/ban"), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!joined_members(a, &alice, &room).await.contains(&bob.user_id));
    eventually("bob's sync on B shows the ban", || async { left_rooms(b, &bob).await.contains(&room) }).await;
    let (status, body) = post(b, &bob, &join_by_id, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a banned user stays out: {body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN");
}
