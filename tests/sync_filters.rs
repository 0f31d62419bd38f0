//! Sync filters cut exactly what they say, section by section.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "sync-filter-pw";

async fn sync(server: &TestServer, user: &TestUser, filter: Value) -> Value {
    let (status, body) =
        server.get(&format!("/_matrix/client/v3/sync?filter={}", encode(&filter.to_string())), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn types(section: &Value) -> Vec<String> {
    section["events"]
        .as_array()
        .map(|events| events.iter().filter_map(|e| e["type"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn each_section_filter_cuts_only_its_section() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let (_, created) = server
        .post("/_matrix/client/v3/createRoom", alice.token(), json!({"preset": "public_chat", "name": "Filters"}))
        .await;
    let room = created["room_id"].as_str().expect("room").to_owned();
    server.post(&format!("/_matrix/client/v3/join/{room}"), bob.token(), json!({})).await;
    for (kind, content) in [("org.example.keep", json!({"a": 1})), ("org.example.drop", json!({"b": 2}))] {
        let path = format!("/_matrix/client/v3/user/{}/account_data/{kind}", alice.user_id);
        assert_eq!(server.put(&path, alice.token(), content).await.0, StatusCode::OK);
    }
    let (status, _) = server
        .put(&format!("/_matrix/client/v3/presence/{}/status", bob.user_id), bob.token(), json!({"presence": "online"}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let unfiltered = sync(&server, &alice, json!({})).await;
    let global = types(&unfiltered["account_data"]);
    assert!(
        global.contains(&"org.example.keep".to_owned()) && global.contains(&"org.example.drop".to_owned()),
        "{global:?}"
    );
    assert!(!types(&unfiltered["presence"]).is_empty(), "presence is there without a filter: {unfiltered}");

    let filtered = sync(
        &server,
        &alice,
        json!({
            "account_data": {"types": ["org.example.keep"]},
            "presence": {"not_types": ["m.presence"]},
            "room": {"state": {"types": ["m.room.name"]}},
        }),
    )
    .await;
    assert_eq!(types(&filtered["account_data"]), vec!["org.example.keep"]);
    assert!(types(&filtered["presence"]).is_empty(), "{filtered}");
    let joined = &filtered["rooms"]["join"][&room];
    let state = types(&joined["state"]);
    assert!(state.iter().all(|kind| kind == "m.room.name"), "{state:?}");
    // The timeline is governed by its own filter, untouched by the state filter.
    assert!(!types(&joined["timeline"]).is_empty(), "{joined}");

    let by_sender = sync(&server, &alice, json!({"room": {"state": {"senders": [bob.user_id]}}})).await;
    let state_events = by_sender["rooms"]["join"][&room]["state"]["events"].as_array().cloned().unwrap_or_default();
    assert!(state_events.iter().all(|e| e["sender"] == bob.user_id.as_str()), "{state_events:?}");
}

/// A messages-only timeline filter reaches back past many events it drops: a member catching
/// up across a burst of state events (here 40 topic changes, two pages' worth) still gets the
/// messages from before the burst, and the window's state changes are still reported.
#[tokio::test]
async fn a_type_filtered_timeline_reaches_past_a_burst_of_other_events() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let (_, created) =
        server.post("/_matrix/client/v3/createRoom", alice.token(), json!({"preset": "public_chat"})).await;
    let room = created["room_id"].as_str().expect("room").to_owned();
    server.post(&format!("/_matrix/client/v3/join/{room}"), bob.token(), json!({})).await;
    let filter = json!({"room": {"timeline": {"types": ["m.room.message"], "limit": 5}}});
    let first = sync(&server, &bob, filter.clone()).await;
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();

    for (txn, body) in [("m1", "before one"), ("m2", "before two")] {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
        assert_eq!(
            server.put(&path, alice.token(), json!({"msgtype": "m.text", "body": body})).await.0,
            StatusCode::OK
        );
    }
    for n in 0..40 {
        let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic");
        assert_eq!(server.put(&path, alice.token(), json!({"topic": format!("topic {n}")})).await.0, StatusCode::OK);
    }
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/m3");
    assert_eq!(server.put(&path, alice.token(), json!({"msgtype": "m.text", "body": "after"})).await.0, StatusCode::OK);

    let (status, body) = server
        .get(&format!("/_matrix/client/v3/sync?since={since}&filter={}", encode(&filter.to_string())), bob.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let joined = &body["rooms"]["join"][&room];
    let bodies: Vec<&str> = joined["timeline"]["events"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|event| event["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["before one", "before two", "after"], "{joined}");
    assert_eq!(joined["timeline"]["limited"], false, "the whole window's messages are there: {joined}");
    // The state section is the state at the timeline's start, before the topic changed (the
    // changes themselves are in the window but left out of the timeline by the filter).
    assert!(
        types(&joined["state"]).iter().all(|kind| kind != "m.room.topic"),
        "the topic had not changed before the timeline began: {joined}"
    );

    // With the first message outside the limit the timeline is limited, and the state at its
    // start (after 40 topic changes) carries the last topic before it.
    let tight = json!({"room": {"timeline": {"types": ["m.room.message"], "limit": 1}}});
    let (status, body) = server
        .get(&format!("/_matrix/client/v3/sync?since={since}&filter={}", encode(&tight.to_string())), bob.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let joined = &body["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true, "{joined}");
    let topics: Vec<&Value> =
        joined["state"]["events"].as_array().expect("state").iter().filter(|e| e["type"] == "m.room.topic").collect();
    assert_eq!(topics.len(), 1, "{joined}");
    assert_eq!(topics[0]["content"]["topic"], "topic 39", "{joined}");
}

#[tokio::test]
async fn include_leave_lists_left_rooms_in_an_initial_sync() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let left = server.create_room(&alice, json!({"preset": "public_chat", "name": "Left"})).await;
    let banned = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let forgotten = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    for room in [&left, &banned, &forgotten] {
        server.join(&bob, room).await;
    }
    server.send_text(&bob, &left, "t1", "goodbye").await;
    server.leave(&bob, &left).await;
    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{banned}/ban"), alice.token(), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.leave(&bob, &forgotten).await;
    assert_eq!(
        server.post(&format!("/_matrix/client/v3/rooms/{forgotten}/forget"), bob.token(), json!({})).await.0,
        StatusCode::OK
    );

    // Without it, an initial sync shows only the rooms one is in.
    let plain = sync(&server, &bob, json!({})).await;
    assert!(plain["rooms"]["leave"].as_object().is_none_or(|rooms| rooms.is_empty()), "{plain}");

    let with_leave = sync(&server, &bob, json!({"room": {"include_leave": true}})).await;
    let leave = with_leave["rooms"]["leave"].as_object().expect("rooms.leave");
    let mut listed: Vec<&String> = leave.keys().collect();
    listed.sort();
    let mut expected = vec![&left, &banned];
    expected.sort();
    assert_eq!(listed, expected, "left and banned, not forgotten: {with_leave}");
    // Each as it was when the user left: the timeline up to the leave, and the state then.
    let timeline = leave[&left]["timeline"]["events"].as_array().expect("timeline");
    let last = timeline.last().expect("events");
    assert_eq!((last["type"].as_str(), last["content"]["membership"].as_str()), (Some("m.room.member"), Some("leave")));
    assert!(timeline.iter().any(|event| event["content"]["body"] == "goodbye"), "{timeline:?}");
    let state = leave[&left]["state"]["events"].as_array().expect("state");
    let named =
        state.iter().chain(timeline).any(|event| event["type"] == "m.room.name" && event["content"]["name"] == "Left");
    assert!(named, "the room's name is known: {state:?} {timeline:?}");
    let banned_timeline = leave[&banned]["timeline"]["events"].as_array().expect("timeline");
    assert_eq!(banned_timeline.last().expect("events")["content"]["membership"], "ban");
}

#[tokio::test]
async fn a_room_whose_news_the_filter_removes_entirely_is_left_out() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let other = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    server.join(&bob, &other).await;
    let filter = json!({"room": {"timeline": {"types": ["m.room.message"]}}});
    let since = sync(&server, &bob, filter.clone()).await["next_batch"].as_str().unwrap().to_owned();

    // Only events the filter removes happen in the first room; a message in the other.
    for txn in ["r1", "r2"] {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/org.example.noise/{txn}");
        assert_eq!(server.put(&path, alice.token(), json!({"n": txn})).await.0, StatusCode::OK);
    }
    server.send_text(&alice, &other, "m1", "news").await;
    let path = format!("/_matrix/client/v3/sync?since={since}&timeout=0&filter={}", encode(&filter.to_string()));
    let (status, body) = server.get(&path, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let joined = body["rooms"]["join"].as_object().expect("rooms.join");
    assert!(joined.get(&room).is_none(), "nothing of the first room passes the filter: {body}");
    assert_eq!(joined[&other]["timeline"]["events"][0]["content"]["body"], "news", "{body}");

    // Messages a filter leaves out change the unread counts, but an entry with nothing else
    // in it is not sent (as Synapse: the counts alone do not make a room news).
    let since = body["next_batch"].as_str().unwrap().to_owned();
    let members_only = json!({"room": {"timeline": {"types": ["m.room.member"]}}});
    server.send_text(&alice, &room, "m2", "left out").await;
    let path = format!("/_matrix/client/v3/sync?since={since}&timeout=0&filter={}", encode(&members_only.to_string()));
    let (status, body) = server.get(&path, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["rooms"]["join"].get(&room).is_none(), "the filter removed all the room's news: {body}");

    // The same for what the state, ephemeral and account data filters remove.
    let since = body["next_batch"].as_str().unwrap().to_owned();
    let strict = json!({"room": {
        "timeline": {"types": ["m.room.message"]},
        "state": {"types": ["m.room.name"]},
        "ephemeral": {"not_types": ["m.typing"]},
        "account_data": {"not_types": ["org.example.hidden"]},
    }});
    let topic = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic");
    assert_eq!(server.put(&topic, alice.token(), json!({"topic": "filtered"})).await.0, StatusCode::OK);
    let typing = format!("/_matrix/client/v3/rooms/{room}/typing/{}", alice.user_id);
    assert_eq!(server.put(&typing, alice.token(), json!({"typing": true, "timeout": 30000})).await.0, StatusCode::OK);
    let data = format!("/_matrix/client/v3/user/{}/rooms/{room}/account_data/org.example.hidden", bob.user_id);
    assert_eq!(server.put(&data, bob.token(), json!({"x": 1})).await.0, StatusCode::OK);
    let path = format!("/_matrix/client/v3/sync?since={since}&timeout=0&filter={}", encode(&strict.to_string()));
    let (status, body) = server.get(&path, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["rooms"]["join"].get(&room).is_none(), "every section's filter removed the room's news: {body}");
}

/// Element names an uploaded filter in every `/sync`: the filter is read from the database once
/// per process, and every sync still applies it (a filter never changes once stored). Another
/// user naming the same id gets their own filter, or an error when they have none.
#[tokio::test]
async fn an_uploaded_filter_is_read_once_and_applied_to_every_sync() {
    let server = TestServer::start().await;
    common::statements::enable(&server).await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat", "name": "Stored"})).await;
    for n in 0..3 {
        server.send_text(&alice, &room, &format!("stored-{n}"), &format!("message {n}")).await;
    }
    let definition = json!({"room": {"timeline": {"limit": 1, "types": ["m.room.message"]}}});
    let (status, uploaded) =
        server.post(&format!("/_matrix/client/v3/user/{}/filter", alice.user_id), alice.token(), definition).await;
    assert_eq!(status, StatusCode::OK, "{uploaded}");
    let filter_id = uploaded["filter_id"].as_str().expect("filter id").to_owned();

    common::statements::reset(&server).await;
    for _ in 0..5 {
        let (status, body) = server.get(&format!("/_matrix/client/v3/sync?filter={filter_id}"), alice.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let timeline = &body["rooms"]["join"][&room]["timeline"];
        assert_eq!(types(timeline), vec!["m.room.message"], "the stored filter applies: {body}");
        assert_eq!(timeline["events"][0]["content"]["body"], "message 2", "{body}");
        assert_eq!(timeline["limited"], true, "{body}");
    }
    let statements = common::statements::statements(&server).await;
    let (_, listing) = common::statements::listing(&statements);
    let reads = common::statements::calls(&statements, "FROM filters WHERE");
    assert_eq!(reads, 1, "five syncs naming one filter read it {reads} times:\n{listing}");

    // Bob has no filter of that id: his sync naming it is refused, not served Alice's.
    let (status, body) = server.get(&format!("/_matrix/client/v3/sync?filter={filter_id}"), bob.token()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errcode"], "M_INVALID_PARAM", "{body}");
}
