//! Blocking that holds everywhere (issue #21): one call (`PUT /_hearth/client/v1/block/{userId}`)
//! puts a user on the blocker's `m.ignored_user_list`, and from then on the blocked user
//! reaches the blocker by no path: invites (to a room or a new DM) are refused, and their
//! messages, typing, receipts and presence, their messages' notifications and unread counts,
//! and the blocker's profile are gone for them — while a third user, not blocked, still gets
//! through on each path (so each check can fail). Tips are in `creator_tips`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const PW: &str = "block-test-password";

fn block_path(user: &TestUser) -> String {
    format!("/_hearth/client/v1/block/{}", user.user_id)
}

async fn invite(server: &TestServer, from: &TestUser, room: &str, to: &TestUser) -> (StatusCode, Value) {
    let path = format!("/_matrix/client/v3/rooms/{room}/invite");
    server.post(&path, from.token(), json!({"user_id": to.user_id})).await
}

/// The users in the room's `m.typing` and `m.receipt` of a sync.
fn ephemeral_users(sync: &Value, room: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut typing, mut reading) = (BTreeSet::new(), BTreeSet::new());
    let events = sync["rooms"]["join"][room]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
    for event in events {
        match event["type"].as_str() {
            Some("m.typing") => typing.extend(
                event["content"]["user_ids"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()),
            ),
            Some("m.receipt") => {
                for by_type in event["content"].as_object().unwrap().values() {
                    for users in by_type.as_object().unwrap().values() {
                        reading.extend(users.as_object().unwrap().keys().cloned());
                    }
                }
            }
            _ => {}
        }
    }
    (typing, reading)
}

#[tokio::test]
async fn a_blocked_user_reaches_the_blocker_by_no_path() {
    let server = TestServer::start().await;
    let (users, room) = server.public_room_of(&["alice", "bob", "carol"], PW, json!({})).await;
    let (alice, bob, carol) = (&users[0], &users[1], &users[2]);

    // One button: the block is Alice's ignore list, which every client reads.
    let (status, body) = server.put(&block_path(bob), alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, listed) = server.get("/_hearth/client/v1/block", alice.token()).await;
    assert_eq!(listed, json!({"blocked": [bob.user_id]}));
    let ignore_list = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", alice.user_id);
    let (_, list) = server.get(&ignore_list, alice.token()).await;
    assert_eq!(list, json!({"ignored_users": {bob.user_id.clone(): {}}}));
    let own = server.put(&block_path(alice), alice.token(), json!({})).await;
    assert_error(&own, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");

    // Invites: refused from Bob, to a room or as a new DM, but not from Carol.
    let bobs_room = server.create_room(bob, json!({"preset": "private_chat"})).await;
    assert_error(&invite(&server, bob, &bobs_room, alice).await, StatusCode::FORBIDDEN, "M_INVITE_BLOCKED");
    let dm = json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [alice.user_id]});
    let refused = server.post("/_matrix/client/v3/createRoom", bob.token(), dm.clone()).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "M_INVITE_BLOCKED");
    let carols_dm = server.create_room(carol, dm).await;

    // Profile lookups: Alice's profile does not exist for Bob.
    let profile = format!("/_matrix/client/v3/profile/{}", alice.user_id);
    assert_error(&server.get(&profile, bob.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let name = format!("{profile}/displayname");
    assert_error(&server.get(&name, bob.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_eq!(server.get(&profile, carol.token()).await.0, StatusCode::OK);

    // Messages, typing, receipts, presence from both; Alice's sync has only Carol's.
    server.send_text(bob, &room, "b1", "from bob").await;
    let carols = server.send_text(carol, &room, "c1", "from carol").await;
    for user in [bob, carol] {
        let typing = format!("/_matrix/client/v3/rooms/{room}/typing/{}", user.user_id);
        let (status, body) = server.put(&typing, user.token(), json!({"typing": true, "timeout": 30000})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        server.read_up_to(user, &room, &carols).await;
        let presence = format!("/_matrix/client/v3/presence/{}/status", user.user_id);
        let (status, body) = server.put(&presence, user.token(), json!({"presence": "online"})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, sync) = server.get("/_matrix/client/v3/sync", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    let (typing, reading) = ephemeral_users(&sync, &room);
    assert_eq!(typing, BTreeSet::from([carol.user_id.clone()]), "{sync:#}");
    assert!(reading.contains(&carol.user_id) && !reading.contains(&bob.user_id), "{reading:?}");
    let present: BTreeSet<&str> = sync["presence"]["events"]
        .as_array()
        .map(|events| events.iter().filter_map(|e| e["sender"].as_str()).collect())
        .unwrap_or_default();
    assert!(present.contains(carol.user_id.as_str()) && !present.contains(bob.user_id.as_str()), "{present:?}");
    let senders: Vec<&str> = sync["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["sender"].as_str())
        .collect();
    assert_eq!(senders, [carol.user_id.as_str()], "{sync:#}");
    // Notifications and unread counts: Carol's message counts, Bob's does not.
    assert_eq!(sync["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 1, "{sync:#}");
    let (_, notifications) = server.get("/_matrix/client/v3/notifications", alice.token()).await;
    let notified: Vec<&str> = notifications["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["event"]["sender"].as_str())
        .collect();
    assert!(!notified.contains(&bob.user_id.as_str()), "{notifications:#}");
    assert!(sync["rooms"]["invite"].get(&carols_dm).is_some(), "Carol's DM invite arrives: {sync:#}");
    assert!(sync["rooms"]["invite"].get(&bobs_room).is_none());

    // Unblocking lets Bob through again.
    let (status, body) = server.delete(&block_path(bob), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.get("/_hearth/client/v1/block", alice.token()).await.1, json!({"blocked": []}));
    assert_eq!(invite(&server, bob, &bobs_room, alice).await.0, StatusCode::OK);
    assert_eq!(server.get(&profile, bob.token()).await.0, StatusCode::OK);
}
