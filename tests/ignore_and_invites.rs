//! Ignore lists (`m.ignored_user_list`) in `/messages`, `/context` and `/sync`, and
//! `m.invite_permission_config` refusing invites with `M_INVITE_BLOCKED`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn say(server: &TestServer, user: &TestUser, room: &str, text: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{text}");
    let (status, body) = server.put(&path, user.token(), json!({"msgtype": "m.text", "body": text})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

async fn set_account_data(server: &TestServer, user: &TestUser, kind: &str, content: Value) {
    let path = format!("/_matrix/client/v3/user/{}/account_data/{kind}", user.user_id);
    let (status, body) = server.put(&path, user.token(), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// `(sender, body)` of the messages `/messages` gives `user`, oldest first.
async fn messages(server: &TestServer, user: &TestUser, room: &str) -> Vec<(String, String)> {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100");
    let (status, body) = server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut texts: Vec<(String, String)> = body["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|event| event["type"] == "m.room.message")
        .map(|event| {
            (
                event["sender"].as_str().unwrap_or_default().to_owned(),
                event["content"]["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    texts.reverse();
    texts
}

#[tokio::test]
async fn ignored_users_vanish_from_messages_context_and_invites_until_unignored() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let carol = server.register("carol", "pw").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    server.join(&carol, &room).await;
    say(&server, &bob, &room, "bob-1").await;
    let carol_event = say(&server, &carol, &room, "carol-1").await;
    say(&server, &bob, &room, "bob-2").await;
    let all = vec![
        (bob.user_id.clone(), "bob-1".to_owned()),
        (carol.user_id.clone(), "carol-1".to_owned()),
        (bob.user_id.clone(), "bob-2".to_owned()),
    ];
    assert_eq!(messages(&server, &alice, &room).await, all);

    set_account_data(&server, &alice, "m.ignored_user_list", json!({"ignored_users": {bob.user_id.clone(): {}}})).await;
    // Effective at once: bob's messages are gone, carol's stay, and bob's membership (state) stays.
    assert_eq!(messages(&server, &alice, &room).await, vec![(carol.user_id.clone(), "carol-1".to_owned())]);
    let (status, body) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bob_join = body["chunk"].as_array().expect("chunk").iter().any(|event| {
        event["type"] == "m.room.member"
            && event["state_key"] == bob.user_id.as_str()
            && event["sender"] == bob.user_id.as_str()
    });
    assert!(bob_join, "state events of ignored users stay: {body}");
    // Others are not affected by alice's list.
    assert_eq!(messages(&server, &carol, &room).await, all);

    // `/context` around carol's message leaves bob's out too.
    let (status, body) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/context/{carol_event}?limit=10"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // An empty `events_after` (bob-2 hidden) may be left out of the response.
    let around: Vec<&Value> =
        ["events_before", "events_after"].iter().flat_map(|key| body[*key].as_array().into_iter().flatten()).collect();
    assert!(!around.is_empty(), "carol's and bob's joins are around: {body}");
    assert!(
        around.iter().all(|event| !(event["type"] == "m.room.message" && event["sender"] == bob.user_id.as_str())),
        "no message of bob around: {body}"
    );

    // Blocking holds for invites: bob's are refused, to a room or as a new DM (the spec only
    // asks that they not be delivered; Hearth refuses them, issue #21), and none reaches alice.
    let bob_room = server.create_room(&bob, json!({"preset": "private_chat"})).await;
    let response = server
        .post(&format!("/_matrix/client/v3/rooms/{bob_room}/invite"), bob.token(), json!({"user_id": alice.user_id}))
        .await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_INVITE_BLOCKED");
    let dm = json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [alice.user_id]});
    let response = server.post("/_matrix/client/v3/createRoom", bob.token(), dm).await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_INVITE_BLOCKED");
    let (status, sync) = server.get("/_matrix/client/v3/sync", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    assert!(sync["rooms"]["invite"].as_object().is_none_or(|invites| invites.is_empty()), "no invite: {sync}");
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert!(
        timeline.as_array().is_none_or(|events| events
            .iter()
            .all(|e| !(e["type"] == "m.room.message" && e["sender"] == bob.user_id.as_str()))),
        "bob's messages are not synced: {timeline}"
    );

    // Un-ignoring brings bob's messages back.
    set_account_data(&server, &alice, "m.ignored_user_list", json!({"ignored_users": {}})).await;
    assert_eq!(messages(&server, &alice, &room).await, all);
}

#[tokio::test]
async fn invite_permission_config_blocks_invites_with_m_invite_blocked() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = server.create_room(&bob, json!({"preset": "private_chat"})).await;

    set_account_data(&server, &alice, "m.invite_permission_config", json!({"default_action": "block"})).await;
    let members_before = server.count("SELECT count(*) FROM events").await;
    let response = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), bob.token(), json!({"user_id": alice.user_id}))
        .await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_INVITE_BLOCKED");
    let rooms_before = server.count("SELECT count(*) FROM rooms").await;
    let response = server
        .post("/_matrix/client/v3/createRoom", bob.token(), json!({"invite": [alice.user_id], "is_direct": true}))
        .await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_INVITE_BLOCKED");
    // Nothing was sent: no invite event, no half-made room.
    assert_eq!(server.count("SELECT count(*) FROM events").await, members_before);
    assert_eq!(server.count("SELECT count(*) FROM rooms").await, rooms_before);

    // Unknown or missing actions allow invites, as the spec says.
    set_account_data(&server, &alice, "m.invite_permission_config", json!({"default_action": "something-new"})).await;
    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), bob.token(), json!({"user_id": alice.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    set_account_data(&server, &alice, "m.invite_permission_config", json!({})).await;
    server.create_room(&bob, json!({"invite": [alice.user_id]})).await;
}
