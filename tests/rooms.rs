//! Rooms as users meet them: creating, talking, reading history and state, membership.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PW: &str = "room-test-password";

async fn send_text(server: &TestServer, user: &TestUser, room: &str, txn: &str, text: &str) -> (StatusCode, Value) {
    server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            user.token(),
            json!({"msgtype": "m.text", "body": text}),
        )
        .await
}

async fn history(server: &TestServer, user: &TestUser, room: &str) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"), user.token()).await
}

fn bodies(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .map(|chunk| {
            chunk
                .iter()
                .filter(|event| event["type"] == "m.room.message")
                .filter_map(|event| event["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_new_room_is_a_v12_room_whose_creator_can_talk_and_read_back() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({"name": "Tea", "topic": "Leaves"})).await;
    // v12 room ids are the create event's reference hash: no server part.
    assert!(room.starts_with('!') && !room.contains(':'), "{room}");

    let (status, sent) = send_text(&server, &alice, &room, "t1", "hello").await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let event_id = sent["event_id"].as_str().expect("event id");

    let (status, page) = history(&server, &alice, &room).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(bodies(&page), vec!["hello"]);
    let types: Vec<&str> = page["chunk"].as_array().expect("chunk").iter().filter_map(|e| e["type"].as_str()).collect();
    for expected in
        ["m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.name", "m.room.topic"]
    {
        assert!(types.contains(&expected), "{expected} in {types:?}");
    }

    let (status, event) = server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["content"]["body"], "hello");
    assert_eq!(event["sender"], alice.user_id);

    let (status, name) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["name"], "Tea");

    let (status, create) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.create/"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{create}");
    assert_eq!(create["room_version"], "12");

    let (status, joined) = server.get("/_matrix/client/v3/joined_rooms", alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(joined["joined_rooms"], json!([room]));
}

#[tokio::test]
async fn resending_a_transaction_returns_the_same_event_and_sends_nothing_new() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let first = send_text(&server, &alice, &room, "same-txn", "once").await;
    let second = send_text(&server, &alice, &room, "same-txn", "once").await;
    assert_eq!(first.0, StatusCode::OK);
    assert_eq!(first.1["event_id"], second.1["event_id"]);
    let (_, page) = history(&server, &alice, &room).await;
    assert_eq!(bodies(&page), vec!["once"]);
}

#[tokio::test]
async fn outsiders_cannot_send_or_read_a_private_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let eve = server.register("eve", PW).await;
    let room = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    send_text(&server, &alice, &room, "t1", "secret").await;

    assert_error(&send_text(&server, &eve, &room, "t1", "hi").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(&history(&server, &eve, &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(
        &server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), eve.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // An invite-only room refuses a join without an invitation.
    assert_error(
        &server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), eve.token(), json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn invited_users_join_and_see_shared_history() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    send_text(&server, &alice, &room, "t1", "before bob").await;
    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), alice.token(), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.post(&format!("/_matrix/client/v3/join/{room}"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    send_text(&server, &bob, &room, "t1", "bob here").await;

    let (status, page) = history(&server, &bob, &room).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    // history_visibility "shared": a member sees what was said before they came.
    assert_eq!(bodies(&page), vec!["bob here", "before bob"]);

    let (status, members) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{members}");
    assert_eq!(members["joined"][&bob.user_id]["display_name"], "bob");
}

#[tokio::test]
async fn members_without_power_cannot_change_state_and_banned_users_cannot_return() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (status, body) = server.post(&format!("/_matrix/client/v3/join/{room}"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let rename = server
        .put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), bob.token(), json!({"name": "Bob's now"}))
        .await;
    assert_error(&rename, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (_, name) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), alice.token()).await;
    assert_ne!(name["name"], "Bob's now");

    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/ban"),
            alice.token(),
            json!({"user_id": bob.user_id, "reason": "spam"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(&send_text(&server, &bob, &room, "t2", "let me in").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(
        &server.post(&format!("/_matrix/client/v3/join/{room}"), bob.token(), json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn every_supported_room_version_works() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    for version in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"] {
        let room = server.create_room(&alice, json!({"room_version": version, "preset": "public_chat"})).await;
        let (status, body) = server.post(&format!("/_matrix/client/v3/join/{room}"), bob.token(), json!({})).await;
        assert_eq!(status, StatusCode::OK, "v{version}: {body}");
        let (status, body) = send_text(&server, &bob, &room, &format!("v{version}"), "hi").await;
        assert_eq!(status, StatusCode::OK, "v{version}: {body}");
        let (_, create) =
            server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.create/"), bob.token()).await;
        assert_eq!(create["room_version"], version);
    }
    let unsupported = server.post("/_matrix/client/v3/createRoom", alice.token(), json!({"room_version": "13"})).await;
    assert_error(&unsupported, StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION");
}

#[tokio::test]
async fn the_event_verifier_notices_tampering() {
    // Every test's database is verified when its server is dropped; this proves the check
    // can fail.
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let (_, sent) = send_text(&server, &alice, &room, "t1", "original").await;
    let event_id = sent["event_id"].as_str().expect("event id").to_owned();
    let key_id = server.state.signing_key.key_id();
    let public_key = server.state.signing_key.public_key_base64();
    let verify = || {
        hearth::testing::rooms::verify::verify_all_events(
            &server.state.pool,
            &server.state.server_name,
            &key_id,
            &public_key,
        )
    };
    assert_eq!(verify().await.expect("verifies"), Vec::<String>::new());

    let original: String = sqlx::query_scalar(
        "SELECT e.json FROM events e JOIN event_ids i ON i.event_nid = e.event_nid WHERE i.event_id = $1",
    )
    .bind(&event_id)
    .fetch_one(&server.state.pool)
    .await
    .expect("stored event");
    let tampered = original.replace("original", "tampered");
    let set = |json: String| {
        let pool = server.state.pool.clone();
        let event_id = event_id.clone();
        async move {
            sqlx::query(
                "UPDATE events SET json = $2 WHERE event_nid = (SELECT event_nid FROM event_ids WHERE event_id = $1)",
            )
            .bind(event_id)
            .bind(json)
            .execute(&pool)
            .await
            .expect("update");
        }
    };
    set(tampered).await;
    let problems = verify().await.expect("verifies");
    assert!(problems.iter().any(|p| p.contains(&event_id)), "{problems:?}");
    set(original).await;
    assert_eq!(verify().await.expect("verifies"), Vec::<String>::new());
}

/// `/messages` with a room event filter (URL-encoded JSON in the `filter` parameter).
async fn filtered(server: &TestServer, user: &TestUser, room: &str, filter: Value) -> Value {
    let encoded = encode(&filter.to_string());
    let (status, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100&filter={encoded}"), user.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

#[tokio::test]
async fn message_filters_cut_exactly_what_they_say() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.post(&format!("/_matrix/client/v3/join/{room}"), bob.token(), json!({})).await;
    send_text(&server, &alice, &room, "a1", "from alice").await;
    send_text(&server, &bob, &room, "b1", "from bob").await;
    server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/img"),
            bob.token(),
            json!({"msgtype": "m.image", "body": "cat.png", "url": "mxc://hearth.test/cat"}),
        )
        .await;
    server
        .put(&format!("/_matrix/client/v3/rooms/{room}/send/org.example.custom/c1"), alice.token(), json!({"x": 1}))
        .await;

    let kinds = |page: &Value| -> Vec<String> {
        page["chunk"].as_array().expect("chunk").iter().filter_map(|e| e["type"].as_str().map(str::to_owned)).collect()
    };
    let only_messages = filtered(&server, &alice, &room, json!({"types": ["m.room.message"]})).await;
    assert_eq!(bodies(&only_messages), vec!["cat.png", "from bob", "from alice"]);
    assert!(kinds(&only_messages).iter().all(|k| k == "m.room.message"));

    let wildcard = filtered(&server, &alice, &room, json!({"types": ["org.example.*"]})).await;
    assert_eq!(kinds(&wildcard), vec!["org.example.custom"]);

    let no_state = filtered(&server, &alice, &room, json!({"not_types": ["m.room.*"]})).await;
    assert_eq!(kinds(&no_state), vec!["org.example.custom"]);

    let from_bob =
        filtered(&server, &alice, &room, json!({"types": ["m.room.message"], "senders": [bob.user_id]})).await;
    assert_eq!(bodies(&from_bob), vec!["cat.png", "from bob"]);
    let not_bob =
        filtered(&server, &alice, &room, json!({"types": ["m.room.message"], "not_senders": [bob.user_id]})).await;
    assert_eq!(bodies(&not_bob), vec!["from alice"]);

    let with_url = filtered(&server, &alice, &room, json!({"contains_url": true})).await;
    assert_eq!(bodies(&with_url), vec!["cat.png"]);

    // Lazy-loading members: the member events of the page's senders come along in `state`.
    let lazy = filtered(&server, &alice, &room, json!({"types": ["m.room.message"], "lazy_load_members": true})).await;
    let mut members: Vec<&str> =
        lazy["state"].as_array().expect("state").iter().filter_map(|e| e["state_key"].as_str()).collect();
    members.sort_unstable();
    assert_eq!(members, vec![alice.user_id.as_str(), bob.user_id.as_str()]);
    let eager = filtered(&server, &alice, &room, json!({"types": ["m.room.message"]})).await;
    assert!(eager.get("state").is_none_or(|state| state.as_array().is_some_and(Vec::is_empty)));

    // A malformed filter is the client's mistake.
    let (status, body) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&filter=%7Bnot-json"), alice.token()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// A v12 room id is its create event's hash, and one user's create events with the same
/// content in the same millisecond are the same event: each room must still be its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_user_creating_identical_rooms_at_once_gets_distinct_rooms() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let creations: Vec<_> = (0..12)
        .map(|_| {
            let http = server.http.clone();
            let url = server.url("/_matrix/client/v3/createRoom");
            let token = alice.access_token.clone();
            tokio::spawn(async move { send_json(&http, Method::POST, &url, Some(&token), Some(json!({}))).await })
        })
        .collect();
    let mut rooms = std::collections::HashSet::new();
    for creation in creations {
        let (status, body) = creation.await.expect("creation task");
        assert_eq!(status, StatusCode::OK, "{body}");
        rooms.insert(body["room_id"].as_str().expect("room_id").to_owned());
    }
    assert_eq!(rooms.len(), 12, "twelve distinct rooms");
    let (status, joined) = server.get("/_matrix/client/v3/joined_rooms", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    assert_eq!(joined["joined_rooms"].as_array().map(Vec::len), Some(12), "{joined}");
}

/// A filtered page is a full page of what passes: events the filter drops do not take up the
/// limit. The type patterns' only wildcard is `*`: characters that are wildcards elsewhere
/// (`_`, `%`) stand for themselves.
#[tokio::test]
async fn a_filtered_page_holds_limit_events_that_pass() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    for n in 0..4 {
        send_text(&server, &alice, &room, &format!("t{n}"), &format!("message {n}")).await;
        for m in 0..10 {
            let path = format!("/_matrix/client/v3/rooms/{room}/send/org.example.noise/n{n}-{m}");
            assert_eq!(server.put(&path, alice.token(), json!({"n": m})).await.0, StatusCode::OK);
        }
    }
    let encoded = |filter: Value| encode(&filter.to_string());
    let page = |filter: Value| {
        let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=3&filter={}", encoded(filter));
        let server = &server;
        let token = alice.token().map(str::to_owned);
        async move {
            let (status, page) = server.get(&path, token.as_deref()).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            page
        }
    };
    let messages = page(json!({"types": ["m.room.message"]})).await;
    assert_eq!(bodies(&messages), vec!["message 3", "message 2", "message 1"], "{messages}");
    let next = messages["end"].as_str().expect("a full page says where to go on");
    let path = format!(
        "/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=3&from={next}&filter={}",
        encoded(json!({"types": ["m.room.message"]}))
    );
    let (status, rest) = server.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    assert_eq!(bodies(&rest), vec!["message 0"], "{rest}");

    let literal = page(json!({"types": ["m.room.mess_ge", "m.room.%"]})).await;
    assert_eq!(literal["chunk"], json!([]), "{literal}");
    let not_noise = page(json!({"not_types": ["org.example.*", "m.room.member", "m.room.power_levels"]})).await;
    assert!(
        not_noise["chunk"].as_array().expect("chunk").iter().all(|event| event["type"] != "org.example.noise"),
        "{not_noise}"
    );
    assert_eq!(bodies(&not_noise), vec!["message 3", "message 2", "message 1"], "{not_noise}");
}
