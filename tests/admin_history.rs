//! A room's history for admins: `POST /_synapse/admin/v1/purge_history` and its status, and
//! `GET /v1/rooms/{roomId}/messages`, driven over HTTP against Synapse's documented answers;
//! purged events are no longer served by `/messages`, state events and later events are.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

/// Polls a history purge until it is no longer active.
async fn finished_purge(server: &TestServer, root: &TestUser, purge_id: &str) -> Value {
    for _ in 0..200 {
        let (status, body) =
            server.get(&format!("/_synapse/admin/v1/purge_history_status/{purge_id}"), root.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] != "active" {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the purge {purge_id} did not finish in 10 s");
}

/// The bodies of messages and the types of state events `user` gets from `/messages`, oldest
/// first.
async fn history(server: &TestServer, user: &TestUser, room: &str) -> (Vec<String>, Vec<String>) {
    let (status, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100", encode(room)), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let chunk = page["chunk"].as_array().unwrap();
    let bodies = chunk.iter().rev().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect();
    let state = chunk
        .iter()
        .rev()
        .filter(|e| e.get("state_key").is_some())
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    (bodies, state)
}

async fn purge(server: &TestServer, root: &TestUser, path: &str, body: Value) -> Value {
    let (status, answer) = server.post(path, root.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    finished_purge(server, root, answer["purge_id"].as_str().unwrap()).await
}

#[tokio::test]
async fn purged_history_is_no_longer_served_but_state_and_later_events_are() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(server.send_text(&alice, &room, &format!("t{n}"), &format!("m{n}")).await);
        if n == 3 {
            let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.topic", encode(&room));
            let (status, _) = server.put(&path, alice.token(), json!({"topic": "kept"})).await;
            assert_eq!(status, StatusCode::OK);
        }
    }
    let all: Vec<String> = (0..10).map(|n| format!("m{n}")).collect();
    assert_eq!(history(&server, &bob, &room).await.0, all);
    let path = format!("/_synapse/admin/v1/purge_history/{}", encode(&room));

    // By default local users' events are kept: they may be the only copy.
    let done = purge(&server, &root, &format!("{path}/{}", encode(&ids[6])), json!({})).await;
    assert_eq!(done, json!({"status": "complete"}));
    assert_eq!(history(&server, &bob, &room).await.0, all);

    // With delete_local_events, the messages before m6 go; the state (the topic set after m3
    // included) and m6 onwards stay.
    let done =
        purge(&server, &root, &format!("{path}/{}", encode(&ids[6])), json!({"delete_local_events": true})).await;
    assert_eq!(done, json!({"status": "complete"}));
    let (bodies, state) = history(&server, &bob, &room).await;
    assert_eq!(bodies, ["m6", "m7", "m8", "m9"]);
    assert!(state.contains(&"m.room.create".to_owned()) && state.contains(&"m.room.topic".to_owned()), "{state:?}");
    let (_, topic) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/state/m.room.topic", encode(&room)), bob.token()).await;
    assert_eq!(topic["topic"], "kept");
    let (status, sync) = server.get("/_matrix/client/v3/sync", bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");

    // Up to a time: everything sent before now, but the last event (the room's tip) stays; the
    // room goes on.
    let done =
        purge(&server, &root, &path, json!({"purge_up_to_ts": 4_000_000_000_000_i64, "delete_local_events": true}))
            .await;
    assert_eq!(done, json!({"status": "complete"}));
    assert_eq!(history(&server, &bob, &room).await.0, ["m9"]);
    server.send_text(&bob, &room, "after", "after the purge").await;
    assert_eq!(history(&server, &alice, &room).await.0, ["m9", "after the purge"]);

    // An admin reads the history without being a member (Synapse's defaults: forwards, 10).
    let messages = format!("/_synapse/admin/v1/rooms/{}/messages", encode(&room));
    let (status, page) = server.get(&format!("{messages}?dir=b&limit=2"), root.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let bodies: Vec<&str> =
        page["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert_eq!(bodies, ["after the purge", "m9"]);
    let (_, next) =
        server.get(&format!("{messages}?dir=b&limit=100&from={}", page["end"].as_str().unwrap()), root.token()).await;
    assert!(next["chunk"].as_array().unwrap().iter().all(|e| e["content"]["body"].is_null()), "{next}");
    let (_, forwards) = server.get(&messages, root.token()).await;
    assert_eq!(forwards["chunk"][0]["type"], "m.room.create", "{forwards}");
    let filtered = format!("{messages}?dir=b&filter={}", encode(r#"{"types":["m.room.topic"]}"#));
    let (_, topics) = server.get(&filtered, root.token()).await;
    assert_eq!(topics["chunk"].as_array().unwrap().len(), 1, "{topics}");
    let response = server.get(&messages, alice.token()).await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let response = server.get(&format!("{messages}?filter=nonsense"), root.token()).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");

    // Errors, in Synapse's words.
    let response = server.post(&path, root.token(), json!({})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    let response = server.post(&format!("{path}/{}", encode("$nosuchevent")), root.token(), json!({})).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response = server
        .post("/_synapse/admin/v1/purge_history/%21nosuch%3Ahearth.test", root.token(), json!({"purge_up_to_ts": 1}))
        .await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response = server.get("/_synapse/admin/v1/purge_history_status/nosuchpurge", root.token()).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response = server.post(&path, alice.token(), json!({"purge_up_to_ts": 1})).await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

/// synapse-admin's room page asks for the event nearest a time: an admin finds it in a room they
/// are not in, in either direction.
#[tokio::test]
async fn an_admin_finds_the_event_nearest_a_time() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", "admin-password").await;
    let alice = server.register("alice", "alice-password").await;
    let room = server.create_room(&alice, json!({})).await;
    let sent = server.send_message(&alice, &room, "t1", json!({"msgtype": "m.text", "body": "hello"})).await;
    let path = |query: &str| format!("/_synapse/admin/v1/rooms/{}/timestamp_to_event?{query}", encode(&room));

    let (status, first) = server.get(&path("ts=0"), root.token()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(first["origin_server_ts"].as_i64().unwrap() > 0, "{first}");
    let (status, last) = server.get(&path("ts=4000000000000&dir=b"), root.token()).await;
    assert_eq!(status, StatusCode::OK, "{last}");
    assert_eq!(last["event_id"], sent, "the newest event is alice's message");
    assert_ne!(first["event_id"], sent);

    assert_error(
        &server.get(&path("ts=4000000000000&dir=f"), root.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(&server.get(&path("dir=f"), root.token()).await, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    assert_error(&server.get(&path("ts=1&dir=up"), root.token()).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let unknown = "/_synapse/admin/v1/rooms/%21nosuch%3Ahearth.test/timestamp_to_event?ts=0";
    assert_error(&server.get(unknown, root.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

/// synapse-admin's room page opens an event in its context: an admin reads it in a room whose
/// history is hidden from non-members, and the events around it.
#[tokio::test]
async fn an_admin_reads_an_event_in_its_context() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", "admin-password").await;
    let alice = server.register("alice", "alice-password").await;
    let members_only =
        json!({"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}});
    let room = server.create_room(&alice, json!({"initial_state": [members_only]})).await;
    let mut sent = Vec::new();
    for (txn, body) in [("c1", "one"), ("c2", "two"), ("c3", "three")] {
        sent.push(server.send_message(&alice, &room, txn, json!({"msgtype": "m.text", "body": body})).await);
    }
    let path = |event: &str, query: &str| {
        format!("/_synapse/admin/v1/rooms/{}/context/{}{query}", encode(&room), encode(event))
    };
    // A non-member's client API is refused; the admin API is not.
    let client = format!("/_matrix/client/v3/rooms/{}/context/{}", encode(&room), encode(&sent[1]));
    assert_ne!(server.get(&client, root.token()).await.0, StatusCode::OK);
    let (status, body) = server.get(&path(&sent[1], "?limit=2"), root.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["event"]["content"]["body"], "two");
    assert_eq!(body["events_before"][0]["event_id"], sent[0]);
    assert_eq!(body["events_after"][0]["event_id"], sent[2]);
    assert!(body["start"].is_string() && body["end"].is_string(), "{body}");
    assert!(body["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"), "{body}");

    assert_error(&server.get(&path("$nosuchevent", ""), root.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let unknown = "/_synapse/admin/v1/rooms/%21nosuch%3Ahearth.test/context/%24nosuchevent";
    assert_error(&server.get(unknown, root.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}
