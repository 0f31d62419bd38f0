//! Rooms as a federating server sees them: every stored event is a complete, signed PDU of its
//! room version, the DAG stays linear under concurrent senders, the state before and after
//! every event is right however long the snapshot chains grow, and malformed or oversized
//! events are refused without a trace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::{Method, StatusCode};
use ruma::RoomVersionId;
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::serde::Base64;
use ruma::signatures::{PublicKeyMap, Verified, reference_hash, verify_event};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

const PW: &str = "dag-test-password";

async fn put_state(server: &TestServer, user: &TestUser, room: &str, kind: &str, key: &str, content: Value) -> String {
    let (status, body) =
        server.put(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/{key}"), user.token(), content).await;
    assert_eq!(status, StatusCode::OK, "{kind}/{key}: {body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

/// One stored event: its id, its exact stored JSON and its stream position.
struct Stored {
    event_id: String,
    json: String,
    object: CanonicalJsonObject,
    value: Value,
    stream_position: i64,
}

/// The room's events as stored, in stream order.
async fn stored_events(server: &TestServer, room: &str) -> Vec<Stored> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT i.event_id, e.json, e.stream_position FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
         WHERE e.room_id = $1 ORDER BY e.stream_position",
    )
    .bind(room)
    .fetch_all(&server.state.pool)
    .await
    .expect("read events");
    rows.into_iter()
        .map(|(event_id, json, stream_position)| {
            let object: CanonicalJsonObject = serde_json::from_str(&json).expect("stored JSON is canonical JSON");
            let value: Value = serde_json::from_str(&json).expect("stored JSON");
            Stored { event_id, json, object, value, stream_position }
        })
        .collect()
}

fn key_map(server: &TestServer) -> PublicKeyMap {
    let key = &server.state.signing_key;
    let public = Base64::parse(key.public_key_base64()).expect("public key is base64");
    BTreeMap::from([(SERVER_NAME.to_owned(), BTreeMap::from([(key.key_id(), public)]))])
}

/// The ids of `prev_events` or `auth_events`: plain ids, or in room versions 1 and 2 pairs of
/// an id and its hashes.
fn ids(value: &Value) -> Vec<String> {
    let id_of = |entry: &Value| entry.as_str().or_else(|| entry[0].as_str()).expect("event id").to_owned();
    value.as_array().expect("array of event ids").iter().map(id_of).collect()
}

/// The spec's auth event selection ("Auth events selection"), computed from the state before
/// the event as the test itself replays it.
fn expected_auth_events(event: &Value, state: &HashMap<(String, String), String>, v12: bool) -> BTreeSet<String> {
    let kind = event["type"].as_str().expect("type");
    if kind == "m.room.create" {
        return BTreeSet::new();
    }
    let sender = event["sender"].as_str().expect("sender");
    let mut keys = vec![("m.room.power_levels", String::new()), ("m.room.member", sender.to_owned())];
    if !v12 {
        keys.push(("m.room.create", String::new()));
    }
    if kind == "m.room.member" {
        keys.push(("m.room.member", event["state_key"].as_str().expect("state_key").to_owned()));
        if matches!(event["content"]["membership"].as_str(), Some("join" | "invite" | "knock")) {
            keys.push(("m.room.join_rules", String::new()));
        }
    }
    keys.into_iter().filter_map(|(kind, key)| state.get(&(kind.to_owned(), key)).cloned()).collect()
}

/// Drives a room through the kinds of events a room sees: joins, invites, messages, state
/// changes, a kick and a leave.
async fn busy_room(server: &TestServer, alice: &TestUser, bob: &TestUser, carol: &TestUser, version: &str) -> String {
    let room = server
        .create_room(
            alice,
            json!({"room_version": version, "preset": "public_chat", "name": "Busy", "topic": "Everything"}),
        )
        .await;
    server.join(bob, &room).await;
    server.send_text(bob, &room, &format!("{version}-1"), "hello").await;
    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), alice.token(), json!({"user_id": carol.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.join(carol, &room).await;
    put_state(server, alice, &room, "m.room.topic", "", json!({"topic": "Something"})).await;
    put_state(server, alice, &room, "org.example.custom", "key", json!({"a": 1})).await;
    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/kick"), alice.token(), json!({"user_id": carol.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.send_text(alice, &room, &format!("{version}-2"), "bye carol").await;
    server.leave(bob, &room).await;
    room
}

#[tokio::test]
async fn every_event_is_a_signed_hashed_pdu_with_the_spec_auth_events_in_every_room_version() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let keys = key_map(&server);

    for version in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"] {
        let rules = RoomVersionId::try_from(version).expect("version").rules().expect("rules");
        let named_ids = rules.event_format.require_event_id;
        let v12 = version == "12";
        let room = busy_room(&server, &alice, &bob, &carol, version).await;
        let events = stored_events(&server, &room).await;
        assert!(events.len() >= 14, "v{version}: only {} events", events.len());

        let create = &events[0];
        assert_eq!(create.value["type"], "m.room.create", "v{version}: the first event creates the room");
        assert_eq!(create.value["content"]["room_version"], version);
        if v12 {
            // The room id is the create event's reference hash, and the create event has none.
            assert_eq!(room, format!("!{}", &create.event_id[1..]), "v12 room id");
            assert!(create.value.get("room_id").is_none(), "a v12 create event has no room_id: {}", create.json);
        } else {
            assert!(room.ends_with(&format!(":{SERVER_NAME}")), "v{version} room id {room}");
            assert_eq!(create.value["room_id"], room);
        }

        let mut depths: HashMap<String, u64> = HashMap::new();
        let mut state: HashMap<(String, String), String> = HashMap::new();
        let mut previous: Option<&str> = None;
        for event in &events {
            let what = format!("v{version} {} {}", event.value["type"], event.json);
            // Content hash and signature, checked as a receiving server would.
            assert!(event.value["hashes"]["sha256"].is_string(), "{what}");
            assert!(event.value["signatures"][SERVER_NAME][server.state.signing_key.key_id()].is_string(), "{what}");
            let verified = verify_event(&keys, &event.object, &rules).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(verified, Verified::All, "{what}");
            if named_ids {
                // Room versions 1 and 2: the event carries its id, `$opaque:origin`, and the
                // references are pairs of an id and its hashes.
                assert_eq!(event.value["event_id"], event.event_id.as_str(), "{what}");
                assert!(event.event_id.ends_with(&format!(":{SERVER_NAME}")), "{what}");
                let pairs = event.value["prev_events"].as_array().into_iter().flatten();
                assert!(pairs.clone().all(|pair| pair[0].is_string() && pair[1].is_object()), "{what}");
            } else {
                // The event id is the reference hash; the stored JSON carries no event_id.
                let hash = reference_hash(&event.object, &rules).expect("reference hash");
                assert_eq!(event.event_id, format!("${hash}"), "{what}");
                assert!(event.value.get("event_id").is_none(), "{what}");
            }
            assert_eq!(CanonicalJsonValue::Object(event.object.clone()).to_string(), event.json, "{what}");
            if event.event_id != create.event_id {
                assert_eq!(event.value["room_id"], room, "{what}");
            }

            // A linear DAG: each event follows the one before it, one level deeper.
            let prev = ids(&event.value["prev_events"]);
            assert!(prev.len() <= 10, "{what}");
            assert_eq!(prev, previous.map(str::to_owned).into_iter().collect::<Vec<_>>(), "{what}");
            let depth = event.value["depth"].as_u64().expect("depth");
            let expected_depth = prev.iter().map(|id| depths[id]).max().unwrap_or(0) + 1;
            assert_eq!(depth, expected_depth, "{what}");
            depths.insert(event.event_id.clone(), depth);

            let auth: BTreeSet<String> = ids(&event.value["auth_events"]).into_iter().collect();
            assert_eq!(auth.len(), event.value["auth_events"].as_array().map_or(0, Vec::len), "no duplicates: {what}");
            assert_eq!(auth, expected_auth_events(&event.value, &state, v12), "{what}");
            if event.event_id != create.event_id {
                assert_eq!(auth.contains(&create.event_id), !v12, "create event among the auth events: {what}");
            }

            if let Some(state_key) = event.value["state_key"].as_str() {
                let kind = event.value["type"].as_str().expect("type").to_owned();
                state.insert((kind, state_key.to_owned()), event.event_id.clone());
            }
            previous = Some(&event.event_id);
        }

        // The edge tables say what the JSON says.
        for event in &events {
            let prev: Vec<String> = sqlx::query_scalar(
                "SELECT p.event_id FROM event_edges g JOIN event_ids i ON i.event_nid = g.event_nid
                 JOIN event_ids p ON p.event_nid = g.prev_event_nid WHERE i.event_id = $1",
            )
            .bind(&event.event_id)
            .fetch_all(&server.state.pool)
            .await
            .expect("edges");
            assert_eq!(prev, ids(&event.value["prev_events"]));
            let auth: BTreeSet<String> = sqlx::query_scalar(
                "SELECT a.event_id FROM event_auth_edges g JOIN event_ids i ON i.event_nid = g.event_nid
                 JOIN event_ids a ON a.event_nid = g.auth_event_nid WHERE i.event_id = $1",
            )
            .bind(&event.event_id)
            .fetch_all(&server.state.pool)
            .await
            .expect("auth edges")
            .into_iter()
            .collect();
            assert_eq!(auth, ids(&event.value["auth_events"]).into_iter().collect::<BTreeSet<_>>());
        }
    }
}

#[tokio::test]
async fn a_tampered_event_fails_verification() {
    // The verification above is only worth something if it notices a change.
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    server.send_text(&alice, &room, "t", "original").await;
    let events = stored_events(&server, &room).await;
    let message = events.last().expect("message");
    let rules = RoomVersionId::V12.rules().expect("rules");
    let keys = key_map(&server);
    assert_eq!(verify_event(&keys, &message.object, &rules).expect("verifies"), Verified::All);

    let mut content_changed = message.value.clone();
    content_changed["content"]["body"] = json!("forged");
    let content_changed: CanonicalJsonObject = serde_json::from_value(content_changed).expect("object");
    // The signature covers the redacted form, so only the content hash notices.
    let verified = verify_event(&keys, &content_changed, &rules).expect("signature over the redacted form");
    assert_eq!(verified, Verified::Signatures);

    let mut ts_changed = message.value.clone();
    ts_changed["origin_server_ts"] = json!(1);
    let ts_changed: CanonicalJsonObject = serde_json::from_value(ts_changed).expect("object");
    assert!(verify_event(&keys, &ts_changed, &rules).is_err());
}

/// Starts `count` tasks that each send one message into `room` at once, taking turns
/// between `users`.
fn send_concurrently(
    server: &TestServer,
    users: &[&TestUser],
    room: &str,
    count: usize,
) -> Vec<tokio::task::JoinHandle<(String, String)>> {
    (0..count)
        .map(|i| {
            let http = server.http.clone();
            let url = server.url(&format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/c{i}"));
            let token = users[i % users.len()].access_token.clone();
            let text = format!("{room} message {i}");
            tokio::spawn(async move {
                let (status, body) =
                    send_json(&http, Method::PUT, &url, Some(&token), Some(json!({"msgtype": "m.text", "body": text})))
                        .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                (text, body["event_id"].as_str().expect("event_id").to_owned())
            })
        })
        .collect()
}

/// Concurrent senders per room (the rooms issue asks for 50).
const SENDERS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_keep_each_room_a_single_chain() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
        server.join(&bob, &room).await;
        rooms.push(room);
    }

    // 50 senders into each room, all rooms at once.
    let handles: Vec<_> =
        rooms.iter().map(|room| (room.clone(), send_concurrently(&server, &[&alice, &bob], room, SENDERS))).collect();
    let mut sent: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (room, room_handles) in handles {
        for handle in room_handles {
            sent.entry(room.clone()).or_default().push(handle.await.expect("sender task"));
        }
    }

    let positions: i64 = server.count("SELECT count(*) FROM events WHERE stream_position IS NOT NULL").await;
    let distinct: i64 = server.count("SELECT count(DISTINCT stream_position) FROM events").await;
    assert_eq!(positions, distinct, "stream positions are unique");

    for room in &rooms {
        let messages = &sent[room];
        assert_eq!(messages.len(), SENDERS);
        let events = stored_events(&server, room).await;
        for (_, event_id) in messages {
            assert_eq!(events.iter().filter(|e| &e.event_id == event_id).count(), 1, "{event_id} stored once");
        }
        let stored_messages = events.iter().filter(|e| e.value["type"] == "m.room.message").count();
        assert_eq!(stored_messages, SENDERS, "exactly the sent messages are stored");

        // One chain: each event's only prev_event is the event before it in stream order.
        for pair in events.windows(2) {
            assert!(pair[0].stream_position < pair[1].stream_position);
            assert_eq!(ids(&pair[1].value["prev_events"]), vec![pair[0].event_id.clone()], "{}", pair[1].json);
            assert_eq!(
                pair[1].value["depth"].as_u64().expect("depth"),
                pair[0].value["depth"].as_u64().expect("depth") + 1
            );
        }
        let extremities: Vec<String> = sqlx::query_scalar(
            "SELECT i.event_id FROM forward_extremities f JOIN event_ids i ON i.event_nid = f.event_nid
             WHERE f.room_id = $1",
        )
        .bind(room)
        .fetch_all(&server.state.pool)
        .await
        .expect("extremities");
        assert_eq!(extremities, vec![events.last().expect("events").event_id.clone()], "one forward extremity");

        // A client paging through the room sees every message exactly once.
        let (status, page) =
            server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1000"), alice.token()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let mut seen = message_bodies(&page);
        seen.sort();
        let mut expected: Vec<String> = messages.iter().map(|(text, _)| text.clone()).collect();
        expected.sort();
        assert_eq!(seen, expected);
    }
}

/// Concurrent sends to a room share commits; one that the auth rules refuse must fail alone,
/// and a retransmission racing its original must still be one event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_send_among_concurrent_ones_fails_alone_and_retries_stay_one_event() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let before = stored_events(&server, &room).await.len();

    let allowed = send_concurrently(&server, &[&alice, &bob], &room, 30);
    // Bob may not change the power levels: every one of these is refused.
    let refused: Vec<_> = (0..10)
        .map(|i| {
            let http = server.http.clone();
            let url = server.url(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"));
            let token = bob.access_token.clone();
            tokio::spawn(async move {
                send_json(&http, Method::PUT, &url, Some(&token), Some(json!({"users": {"@x:y": i}}))).await
            })
        })
        .collect();
    // The same transaction twice at once: a client retrying before its first answer.
    let retries: Vec<_> = (0..2)
        .map(|_| {
            let http = server.http.clone();
            let url = server.url(&format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/retried"));
            let token = alice.access_token.clone();
            tokio::spawn(async move {
                send_json(&http, Method::PUT, &url, Some(&token), Some(json!({"msgtype": "m.text", "body": "once"})))
                    .await
            })
        })
        .collect();

    let mut sent = Vec::new();
    for handle in allowed {
        sent.push(handle.await.expect("sender task").1);
    }
    for handle in refused {
        let response = handle.await.expect("refused task");
        assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    let mut retried = Vec::new();
    for handle in retries {
        let (status, body) = handle.await.expect("retry task");
        assert_eq!(status, StatusCode::OK, "{body}");
        retried.push(body["event_id"].as_str().expect("event_id").to_owned());
    }
    assert_eq!(retried[0], retried[1], "a retransmission gets the first attempt's event");

    let events = stored_events(&server, &room).await;
    assert_eq!(events.len(), before + 30 + 1, "the 30 messages and the retried one, nothing refused");
    assert!(events[before..].iter().all(|e| e.value["type"] == "m.room.message"));
    for event_id in sent.iter().chain(&retried[..1]) {
        assert_eq!(events.iter().filter(|e| &e.event_id == event_id).count(), 1, "{event_id} stored once");
    }
    for pair in events.windows(2) {
        assert_eq!(ids(&pair[1].value["prev_events"]), vec![pair[0].event_id.clone()], "one chain");
    }
}

/// `(type, state_key) -> event_id` maps, as the various views show them.
type StateMap = BTreeMap<(String, String), String>;

fn state_map_of_client_events(events: &Value) -> StateMap {
    events
        .as_array()
        .expect("state events")
        .iter()
        .map(|event| {
            (
                (
                    event["type"].as_str().expect("type").to_owned(),
                    event["state_key"].as_str().expect("state_key").to_owned(),
                ),
                event["event_id"].as_str().expect("event_id").to_owned(),
            )
        })
        .collect()
}

fn state_map_of_entries(entries: Vec<hearth::testing::db::state::StateEntry>) -> StateMap {
    entries.into_iter().map(|entry| ((entry.event_type, entry.state_key), entry.event_id)).collect()
}

/// Checks, for every event of the room, that the stored state before and after it is what
/// replaying the room from its create event gives, and that the current state, the state after
/// the last event and what a member reads with `GET /state` all agree.
async fn check_state(server: &TestServer, reader: &TestUser, room: &str) -> StateMap {
    let pool = &server.state.pool;
    let rows: Vec<(String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT i.event_id, e.json, e.state_before, e.state_after FROM events e
         JOIN event_ids i ON i.event_nid = e.event_nid WHERE e.room_id = $1 ORDER BY e.stream_position",
    )
    .bind(room)
    .fetch_all(pool)
    .await
    .expect("events");
    let mut replayed = StateMap::new();
    for (event_id, json, before, after) in rows {
        let before = before.expect("state before");
        let after = after.expect("state after");
        let stored_before =
            state_map_of_entries(hearth::testing::db::state::snapshot_state(pool, before).await.expect("before"));
        assert_eq!(stored_before, replayed, "state before {event_id}");
        let event: Value = serde_json::from_str(&json).expect("json");
        if let Some(state_key) = event["state_key"].as_str() {
            replayed.insert((event["type"].as_str().expect("type").to_owned(), state_key.to_owned()), event_id.clone());
        }
        let stored_after =
            state_map_of_entries(hearth::testing::db::state::snapshot_state(pool, after).await.expect("after"));
        assert_eq!(stored_after, replayed, "state after {event_id}");
    }
    let current = state_map_of_entries(hearth::testing::db::state::current_state(pool, room).await.expect("current"));
    assert_eq!(current, replayed, "current state");
    let (status, client_state) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), reader.token()).await;
    assert_eq!(status, StatusCode::OK, "{client_state}");
    assert_eq!(state_map_of_client_events(&client_state), replayed, "GET /state");
    replayed
}

#[tokio::test]
async fn state_before_and_after_every_event_survives_long_snapshot_chains() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat", "name": "Zero"})).await;
    check_state(&server, &alice, &room).await;

    put_state(&server, &alice, &room, "m.room.name", "", json!({"name": "One"})).await;
    server.join(&bob, &room).await;
    server.join(&carol, &room).await;
    server.send_text(&carol, &room, "m1", "between state changes").await;
    server.leave(&bob, &room).await;
    put_state(&server, &alice, &room, "m.room.name", "", json!({"name": "Two"})).await;
    let state = check_state(&server, &alice, &room).await;
    assert!(state.contains_key(&("m.room.member".to_owned(), bob.user_id.clone())));
    let (_, name) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), alice.token()).await;
    assert_eq!(name, json!({"name": "Two"}));

    // Far more state changes than one delta chain may hold.
    let changes = 2 * hearth::testing::db::state::MAX_CHAIN_LENGTH as usize + 9;
    for i in 0..changes {
        put_state(&server, &alice, &room, "m.room.topic", "", json!({"topic": format!("topic {i}")})).await;
        if i % 7 == 3 {
            put_state(&server, &alice, &room, "org.example.counter", &format!("k{i}"), json!({"i": i})).await;
        }
        if i % 11 == 5 {
            server.leave(&carol, &room).await;
            server.join(&carol, &room).await;
        }
        let (status, topic) =
            server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"), carol.token()).await;
        assert_eq!(status, StatusCode::OK, "{topic}");
        assert_eq!(topic, json!({"topic": format!("topic {i}")}));
        let (status, all) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), carol.token()).await;
        assert_eq!(status, StatusCode::OK, "{all}");
        let all = state_map_of_client_events(&all);
        assert_eq!(all.len(), state.len() + 1 + (i + 4) / 7, "after change {i}: {all:?}");
    }
    let last = check_state(&server, &carol, &room).await;
    assert_eq!(last.len(), state.len() + 1 + (changes + 3) / 7);
    let longest = server.count("SELECT max(chain_length)::bigint FROM state_snapshots").await;
    assert!(longest <= i64::from(hearth::testing::db::state::MAX_CHAIN_LENGTH), "chains stay bounded: {longest}");
}

/// How many events, event ids and transaction records exist (nothing may change on a refusal).
async fn footprint(server: &TestServer) -> (i64, i64, i64) {
    (
        server.count("SELECT count(*) FROM events").await,
        server.count("SELECT count(*) FROM event_ids").await,
        server.count("SELECT count(*) FROM event_transactions").await,
    )
}

#[tokio::test]
async fn oversized_and_non_canonical_events_are_refused_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let send = |txn: &str| format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let state = |kind: &str| format!("/_matrix/client/v3/rooms/{room}/state/{kind}/");
    let before = footprint(&server).await;

    let huge = "x".repeat(70_000);
    assert_error(
        &server.put(&send("big"), alice.token(), json!({"msgtype": "m.text", "body": huge})).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    assert_error(
        &server.put(&state("m.room.topic"), alice.token(), json!({"topic": huge})).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    // Just over the limit once signed: the whole PDU counts, not only the content.
    let almost = "x".repeat(65_536 - 200);
    assert_error(
        &server.put(&send("edge"), alice.token(), json!({"msgtype": "m.text", "body": almost})).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );

    for (txn, raw) in [
        ("float", r#"{"msgtype": "m.text", "body": "x", "n": 1.5}"#),
        ("nested-float", r#"{"msgtype": "m.text", "body": "x", "n": {"deep": [0.25]}}"#),
        ("exponent", r#"{"msgtype": "m.text", "body": "x", "n": 1e3}"#),
        ("big-int", r#"{"msgtype": "m.text", "body": "x", "n": 9007199254740992}"#),
        ("small-int", r#"{"msgtype": "m.text", "body": "x", "n": -9007199254740992}"#),
        ("huge-int", r#"{"msgtype": "m.text", "body": "x", "n": 18446744073709551615}"#),
    ] {
        let response = server.request_raw(Method::PUT, &send(txn), alice.token(), raw.as_bytes().to_vec()).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
        let response = server
            .request_raw(Method::PUT, &state("org.example.numbers"), alice.token(), raw.as_bytes().to_vec())
            .await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }

    for (txn, raw) in [("array", "[1, 2]"), ("string", r#""text""#), ("number", "7"), ("null", "null")] {
        let (status, body) = server.request_raw(Method::PUT, &send(txn), alice.token(), raw.as_bytes().to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw}: {body}");
        assert!(matches!(body["errcode"].as_str(), Some("M_BAD_JSON" | "M_NOT_JSON")), "{raw}: {body}");
        let (status, body) =
            server.request_raw(Method::PUT, &state("m.room.topic"), alice.token(), raw.as_bytes().to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw}: {body}");
        assert!(matches!(body["errcode"].as_str(), Some("M_BAD_JSON" | "M_NOT_JSON")), "{raw}: {body}");
    }
    assert_eq!(footprint(&server).await, before, "refused events leave nothing behind");

    // The limits are where the spec puts them: the largest integer and a large event pass,
    // and a refused transaction id is still free to use.
    let (status, body) = server
        .put(
            &send("big"),
            alice.token(),
            json!({"msgtype": "m.text", "body": "x".repeat(60_000), "n": 9007199254740991i64}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .put(&send("float"), alice.token(), json!({"msgtype": "m.text", "body": "y", "n": -9007199254740991i64}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (after_events, _, after_transactions) = footprint(&server).await;
    assert_eq!((after_events, after_transactions), (before.0 + 2, before.2 + 2));
}

#[tokio::test]
async fn a_transaction_id_is_a_retransmission_only_on_the_same_room_and_event_type() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let first = server.create_room(&alice, json!({})).await;
    let second = server.create_room(&alice, json!({})).await;
    let send = |room: &str, kind: &str| {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/{kind}/same");
        let body = json!({"msgtype": "m.text", "body": format!("{kind} in {room}")});
        let (server, alice) = (&server, &alice);
        async move { server.put(&path, alice.token(), body).await }
    };
    let (status, in_first) = send(&first, "m.room.message").await;
    assert_eq!(status, StatusCode::OK, "{in_first}");
    let (status, in_second) = send(&second, "m.room.message").await;
    assert_eq!(status, StatusCode::OK, "{in_second}");
    let (status, other_type) = send(&first, "org.example.note").await;
    assert_eq!(status, StatusCode::OK, "{other_type}");
    let (status, again) = send(&second, "m.room.message").await;
    assert_eq!(status, StatusCode::OK, "{again}");

    assert_ne!(in_first["event_id"], in_second["event_id"]);
    assert_ne!(in_first["event_id"], other_type["event_id"]);
    assert_eq!(again["event_id"], in_second["event_id"], "a retransmission returns the original event");
    for (room, event) in [(&first, &in_first), (&second, &in_second), (&first, &other_type)] {
        let (status, fetched) = server
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/event/{}", event["event_id"].as_str().expect("id")),
                alice.token(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{fetched}");
        assert_eq!(fetched["room_id"], room.as_str());
    }
    let second_messages = stored_events(&server, &second).await;
    assert_eq!(second_messages.iter().filter(|e| e.value["type"] == "m.room.message").count(), 1);
}

/// Sends appended in one shared transaction (a batch) carry the room's extremities and auth
/// state from one to the next: each must still see every change appended before it — a ban
/// refuses the banned user's next send — and a refused send, rolled back to its savepoint,
/// must leave nothing behind for the next one, which names the last stored event as parent.
#[tokio::test]
async fn sends_in_one_batch_see_the_changes_appended_before_them() {
    use hearth::testing::rooms::build::EventTemplate;
    use hearth::testing::rooms::send::{Appender, Transaction};
    use sqlx::Acquire;

    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let before = stored_events(&server, &room).await.len();
    let room_id = ruma::RoomId::parse(&room).expect("room id");
    let alice_id = ruma::UserId::parse(&alice.user_id).expect("user id");
    let bob_id = ruma::UserId::parse(&bob.user_id).expect("user id");
    let message = |body: &str| EventTemplate::message("m.room.message", json!({"msgtype": "m.text", "body": body}));

    let mut tx = server.state.pool.begin().await.expect("transaction");
    let held = server.state.room_locks.lock_in(&mut tx, &room_id).await.expect("room lock");
    let mut reservation = server.state.streams.reserve();
    let mut appender = Appender::new(server.state.rooms(), &held);
    let mut outcomes = Vec::new();
    let sends = [
        (&bob_id, message("from bob"), None),
        (&alice_id, EventTemplate::state("m.room.member", bob_id.as_str(), json!({"membership": "ban"})), None),
        (&bob_id, message("bob, banned"), None),
        (&alice_id, message("from alice"), Some("txn-1")),
        (&alice_id, message("from alice, retried"), Some("txn-1")),
    ];
    for (sender, template, txn_id) in sends {
        let transaction = txn_id.map(|txn_id| Transaction { device_id: &alice.device_id, txn_id });
        let mut savepoint = tx.begin().await.expect("savepoint");
        let outcome = appender.append(&mut savepoint, &mut reservation, sender, template, transaction).await;
        match outcome {
            Ok(_) => savepoint.commit().await.expect("release"),
            Err(_) => savepoint.rollback().await.expect("rollback"),
        }
        outcomes.push(outcome.map(|appended| appended.event_id().to_string()).map_err(|error| error.to_string()));
    }
    drop(appender);
    tx.commit().await.expect("commit");
    drop(held);
    reservation.committed().await.expect("positions");

    assert!(outcomes[0].is_ok() && outcomes[1].is_ok(), "{outcomes:?}");
    assert!(outcomes[2].is_err(), "a banned user's send is refused: {outcomes:?}");
    assert_eq!(outcomes[3], outcomes[4], "a retransmission in the same batch is the first attempt's event");
    let events = stored_events(&server, &room).await;
    let bodies: Vec<_> = events[before..].iter().map(|e| e.value["content"]["body"].clone()).collect();
    assert_eq!(bodies, vec![json!("from bob"), Value::Null, json!("from alice")], "the refused send left nothing");
    for pair in events.windows(2) {
        assert_eq!(ids(&pair[1].value["prev_events"]), vec![pair[0].event_id.clone()], "one chain");
    }
    let depths: Vec<_> = events.iter().map(|e| e.value["depth"].as_u64().expect("depth")).collect();
    assert!(depths.windows(2).all(|pair| pair[1] == pair[0] + 1), "depths count up: {depths:?}");
}
