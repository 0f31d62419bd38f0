//! `/sync` as clients meet it (DESIGN §3): initial and incremental syncs, long-polling,
//! limited timelines, invites and leaves, account data, and the stream invariant — a client
//! that syncs with token N receives every change after N exactly once, in order, whatever the
//! concurrency of writers, across two Hearth processes on one database and across a restart.
//!
//! Assertions accept any placement the spec allows (a state event may arrive in `state` or in
//! `timeline`; empty sections may be omitted) and are strict on exactly-once delivery and order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::node::*;
use common::*;
use hearth::signing_key::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PW: &str = "sync-test-password";

/// How long a helper keeps syncing for something that must arrive before it gives up.
const PATIENCE: Duration = Duration::from_secs(30);

async fn register(api: &impl Api, username: &str) -> TestUser {
    let (status, body) = api
        .call(
            Method::POST,
            "/_matrix/client/v3/register",
            None,
            Some(json!({"username": username, "password": PW, "auth": {"type": "m.login.dummy"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "registration of {username} failed: {body}");
    TestUser {
        user_id: body["user_id"].as_str().expect("user_id").to_owned(),
        access_token: body["access_token"].as_str().expect("access_token").to_owned(),
        device_id: body["device_id"].as_str().expect("device_id").to_owned(),
        password: PW.to_owned(),
    }
}

async fn create_room(api: &impl Api, user: &TestUser, body: Value) -> String {
    let (status, response) = api.call(Method::POST, "/_matrix/client/v3/createRoom", user.token(), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response["room_id"].as_str().expect("room_id").to_owned()
}

async fn join(api: &impl Api, user: &TestUser, room: &str) {
    let (status, body) =
        api.call(Method::POST, &format!("/_matrix/client/v3/join/{room}"), user.token(), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Sends a text message; returns its event id.
async fn send_text(api: &impl Api, user: &TestUser, room: &str, txn: &str, text: &str) -> String {
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            user.token(),
            Some(json!({"msgtype": "m.text", "body": text})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "sending {text:?}: {body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

/// `GET /sync` path. `extra` is appended verbatim (e.g. `&full_state=true`).
fn sync_path(since: Option<&str>, timeout_ms: u64, extra: &str) -> String {
    let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
    if let Some(since) = since {
        path.push_str(&format!("&since={}", encode(since)));
    }
    path.push_str(extra);
    path
}

/// `&filter=…` with an inline JSON filter.
fn filter_param(filter: &Value) -> String {
    format!("&filter={}", encode(&filter.to_string()))
}

/// A successful sync response; every one carries a usable `next_batch`.
async fn sync(api: &impl Api, user: &TestUser, path: &str) -> Value {
    let (status, body) = api.call(Method::GET, path, user.token(), None).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    next_batch(&body);
    // Clients deserialise every section they find: a section is an object or absent.
    for section in ["rooms", "account_data", "presence", "to_device", "device_lists"] {
        assert!(body.get(section).is_none_or(Value::is_object), "{section} is not an object: {body}");
    }
    body
}

fn next_batch(response: &Value) -> String {
    let token = response["next_batch"].as_str().unwrap_or_else(|| panic!("a sync response has next_batch: {response}"));
    assert!(!token.is_empty(), "next_batch is not empty: {response}");
    token.to_owned()
}

/// `rooms.join.{room}` (or `rooms.invite`, `rooms.leave`), if the response lists the room there.
fn room_in<'a>(response: &'a Value, section: &str, room: &str) -> Option<&'a Value> {
    response["rooms"][section].get(room)
}

fn section_events(room: &Value, key: &str) -> Vec<Value> {
    room[key]["events"].as_array().cloned().unwrap_or_default()
}

/// The timeline events a response carries for a joined room (none if the room is absent).
fn timeline(response: &Value, room: &str) -> Vec<Value> {
    room_in(response, "join", room).map(|r| section_events(r, "timeline")).unwrap_or_default()
}

/// Everything a response tells about a room's state: `state.events` then `timeline.events`.
fn state_and_timeline(room: &Value) -> Vec<Value> {
    let mut events = section_events(room, "state");
    events.extend(section_events(room, "timeline"));
    events
}

fn find_state<'a>(events: &'a [Value], kind: &str, state_key: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["type"] == kind && e["state_key"] == state_key)
}

fn event_ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["event_id"].as_str().unwrap_or_else(|| panic!("event has an id: {e}")).to_owned()).collect()
}

fn message_bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

fn no_rooms(response: &Value) -> bool {
    ["join", "invite", "leave", "knock"]
        .iter()
        .all(|section| response["rooms"][section].as_object().is_none_or(serde_json::Map::is_empty))
}

/// Long-polls from `since` until `done` holds for the responses gathered so far; returns
/// them all (so callers can count what arrived across several responses) and the last token.
async fn sync_until(
    api: &impl Api,
    user: &TestUser,
    since: &str,
    extra: &str,
    mut done: impl FnMut(&[Value]) -> bool,
) -> (Vec<Value>, String) {
    let deadline = Instant::now() + PATIENCE;
    let mut since = since.to_owned();
    let mut responses = Vec::new();
    loop {
        let response = sync(api, user, &sync_path(Some(&since), 5000, extra)).await;
        since = next_batch(&response);
        responses.push(response);
        if done(&responses) {
            return (responses, since);
        }
        assert!(Instant::now() < deadline, "what was expected did not arrive within {PATIENCE:?}: {responses:#?}");
    }
}

/// All timeline events for `room` across `responses`, in the order they were delivered.
fn timelines(responses: &[Value], room: &str) -> Vec<Value> {
    responses.iter().flat_map(|r| timeline(r, room)).collect()
}

/// Starts `GET path` in the background; resolves to the response and how long it took.
fn spawn_sync(api: &impl Api, user: &TestUser, path: String) -> tokio::task::JoinHandle<(StatusCode, Value, Duration)> {
    let client = api.client().clone();
    let url = format!("{}{path}", api.base());
    let token = user.access_token.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let (status, body) = send_json(&client, Method::GET, &url, Some(&token), None).await;
        (status, body, started.elapsed())
    })
}

// ---------------------------------------------------------------------------------------------
// 1. Initial sync

#[tokio::test]
async fn an_initial_sync_lists_the_users_rooms_with_their_state() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"name": "Tea", "topic": "Leaves"})).await;
    let said = send_text(&server, &alice, &room, "t1", "first words").await;
    let bobs_room = create_room(&server, &bob, json!({"name": "Bob's"})).await;

    let response = sync(&server, &alice, &sync_path(None, 0, "")).await;
    let joined = room_in(&response, "join", &room).unwrap_or_else(|| panic!("{room} under rooms.join: {response}"));
    let events = state_and_timeline(joined);
    let create = find_state(&events, "m.room.create", "").unwrap_or_else(|| panic!("m.room.create: {joined}"));
    assert_eq!(create["content"]["room_version"], "12", "{create}");
    let member = find_state(&events, "m.room.member", &alice.user_id)
        .unwrap_or_else(|| panic!("alice's member event: {joined}"));
    assert_eq!(member["content"]["membership"], "join", "{member}");
    let name = find_state(&events, "m.room.name", "").unwrap_or_else(|| panic!("m.room.name: {joined}"));
    assert_eq!(name["content"]["name"], "Tea");
    // The timeline ends with the room's latest event, in client format.
    let last = section_events(joined, "timeline").last().cloned().unwrap_or_else(|| panic!("a timeline: {joined}"));
    assert_eq!(last["event_id"], said, "{joined}");
    assert_eq!(last["sender"], alice.user_id);
    assert_eq!(last["content"]["body"], "first words");
    assert!(last["origin_server_ts"].is_u64(), "{last}");
    // Only her rooms: not Bob's, and nothing under invite or leave.
    assert!(room_in(&response, "join", &bobs_room).is_none(), "{response}");
    assert!(room_in(&response, "invite", &room).is_none() && room_in(&response, "leave", &room).is_none());

    let carol = register(&server, "carol").await;
    let response = sync(&server, &carol, &sync_path(None, 0, "")).await;
    assert!(no_rooms(&response), "a user without rooms syncs no rooms: {response}");
}

// ---------------------------------------------------------------------------------------------
// 2. Incremental sync

#[tokio::test]
async fn an_incremental_sync_delivers_each_new_message_once() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &room).await;
    let initial = sync(&server, &alice, &sync_path(None, 0, "")).await;
    let t0 = next_batch(&initial);

    let hello = send_text(&server, &bob, &room, "b1", "hello").await;
    let (responses, t1) =
        sync_until(&server, &alice, &t0, "", |rs| event_ids(&timelines(rs, &room)).contains(&hello)).await;
    let events = timelines(&responses, &room);
    // Everything before t0 came in the initial sync: after it there is only Bob's message.
    assert_eq!(event_ids(&events), vec![hello.clone()], "{responses:#?}");
    assert_eq!(events[0]["type"], "m.room.message");
    assert_eq!(events[0]["sender"], bob.user_id);
    assert_eq!(events[0]["content"]["body"], "hello");

    // Nothing new: the room carries no timeline events, and the token still moves on.
    let quiet = sync(&server, &alice, &sync_path(Some(&t1), 0, "")).await;
    assert!(timeline(&quiet, &room).is_empty(), "nothing is repeated: {quiet}");
    let t2 = next_batch(&quiet);
    let quiet = sync(&server, &alice, &sync_path(Some(&t2), 0, "")).await;
    assert!(timeline(&quiet, &room).is_empty(), "nothing is repeated: {quiet}");
    let t3 = next_batch(&quiet);

    let again = send_text(&server, &bob, &room, "b2", "again").await;
    let (responses, t4) =
        sync_until(&server, &alice, &t3, "", |rs| event_ids(&timelines(rs, &room)).contains(&again)).await;
    assert_eq!(event_ids(&timelines(&responses, &room)), vec![again], "{responses:#?}");
    let quiet = sync(&server, &alice, &sync_path(Some(&t4), 0, "")).await;
    assert!(timeline(&quiet, &room).is_empty(), "{quiet}");

    // An old token still works and replays exactly what came after it.
    let replay = sync(&server, &alice, &sync_path(Some(&t1), 0, "")).await;
    assert_eq!(message_bodies(&timeline(&replay, &room)), vec!["again"], "{replay}");
}

// ---------------------------------------------------------------------------------------------
// 3. Long-polling

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_sync_returns_as_soon_as_a_message_arrives() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &room).await;
    let token = next_batch(&sync(&server, &alice, &sync_path(None, 0, "")).await);

    let waiting = spawn_sync(&server, &alice, sync_path(Some(&token), 10_000, ""));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = send_text(&server, &bob, &room, "b1", "are you there?").await;
    let (status, response, elapsed) = waiting.await.expect("sync task");
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(event_ids(&timeline(&response, &room)), vec![sent], "{response}");
    // Sanity bound only: at the timeout the message would be there too, but late.
    assert!(elapsed < Duration::from_secs(9), "the sync waited {elapsed:?} although a message arrived");
}

/// A message committed while a slower writer still holds a lower position is not readable
/// yet, and its wake-up fires before anyone waits: a sync that starts then must still return
/// it as soon as the slower writer gives up, not at its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_held_back_by_a_slower_writer_arrives_when_that_writer_finishes() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &room).await;
    let token = next_batch(&sync(&server, &alice, &sync_path(None, 0, "")).await);

    // A writer that took a position and has not committed yet (a slow transaction).
    let mut slow_tx = server.state.pool.begin().await.expect("transaction");
    let mut slow = server.state.streams.reserve();
    slow.next(&mut slow_tx).await.expect("position");

    let sent = send_text(&server, &bob, &room, "b1", "behind a slow writer").await;
    let early = sync(&server, &alice, &sync_path(Some(&token), 0, "")).await;
    assert!(timeline(&early, &room).is_empty(), "delivered past an uncommitted position: {early}");
    assert_eq!(next_batch(&early), token, "the token cannot move past the slow writer");

    let waiting = spawn_sync(&server, &alice, sync_path(Some(&token), 30_000, ""));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "nothing is readable yet, so the sync waits");
    // The slow writer fails: its position becomes a gap, and the message behind it readable.
    drop(slow_tx);
    drop(slow);
    let (status, response, elapsed) = waiting.await.expect("sync task");
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(event_ids(&timeline(&response, &room)), vec![sent], "{response}");
    assert!(elapsed < Duration::from_secs(10), "the sync waited {elapsed:?}: it missed the stream moving on");
}

/// Syncs wait only for changes that concern them, so the invitee's sync must be woken by an
/// invite to a room it did not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_wakes_the_invitees_waiting_sync() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "private_chat"})).await;
    let token = next_batch(&sync(&server, &bob, &sync_path(None, 0, "")).await);

    let waiting = spawn_sync(&server, &bob, sync_path(Some(&token), 30_000, ""));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A message elsewhere concerns Bob not at all.
    send_text(&server, &alice, &room, "a0", "before the invite").await;
    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), alice.token(), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, response, elapsed) = waiting.await.expect("sync task");
    assert_eq!(status, StatusCode::OK, "{response}");
    assert!(room_in(&response, "invite", &room).is_some(), "the invite arrives: {response}");
    assert!(timeline(&response, &room).is_empty(), "nothing of the room's timeline: {response}");
    assert!(elapsed < Duration::from_secs(10), "the invitee's sync waited {elapsed:?}: it was not woken");
}

// ---------------------------------------------------------------------------------------------
// 4. Limited timelines

#[tokio::test]
async fn a_limited_timeline_ends_with_the_latest_events_and_paginates_back_from_prev_batch() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat", "name": "Before"})).await;
    join(&server, &bob, &room).await;
    let filter = filter_param(&json!({"room": {"timeline": {"limit": 5}}}));
    let token = next_batch(&sync(&server, &alice, &sync_path(None, 0, &filter)).await);

    // A state change, then twenty messages: the state change falls in the gap.
    let (status, body) = server
        .put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), alice.token(), json!({"name": "After"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut sent = Vec::new();
    for i in 1..=20 {
        sent.push(send_text(&server, &bob, &room, &format!("m{i}"), &format!("m{i}")).await);
    }

    let response = sync(&server, &alice, &sync_path(Some(&token), 10_000, &filter)).await;
    let joined = room_in(&response, "join", &room).unwrap_or_else(|| panic!("{room} under join: {response}"));
    assert_eq!(joined["timeline"]["limited"], true, "{joined}");
    let events = section_events(joined, "timeline");
    assert_eq!(event_ids(&events), sent[15..].to_vec(), "the last five, oldest first: {joined}");
    assert_eq!(message_bodies(&events), vec!["m16", "m17", "m18", "m19", "m20"]);
    // `state` is the state at the start of the timeline: it carries the rename from the gap.
    let state = section_events(joined, "state");
    let name = find_state(&state, "m.room.name", "")
        .unwrap_or_else(|| panic!("the rename from the gap is in state.events: {joined}"));
    assert_eq!(name["content"]["name"], "After");

    let prev_batch = joined["timeline"]["prev_batch"].as_str().unwrap_or_else(|| panic!("prev_batch: {joined}"));
    let (status, page) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100&from={}", encode(prev_batch)),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
    let expected: Vec<String> = (1..=15).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(message_bodies(&chunk), expected, "the gap, newest first, starting at m15: {page}");
    assert_eq!(chunk[0]["event_id"], sent[14], "{page}");
}

// ---------------------------------------------------------------------------------------------
// 5. Invites, joins, leaves

#[tokio::test]
async fn an_invite_then_a_join_then_a_leave_move_the_room_between_sections() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "private_chat", "name": "Secret garden"})).await;
    let t0 = next_batch(&sync(&server, &bob, &sync_path(None, 0, "")).await);

    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), alice.token(), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (responses, t1) =
        sync_until(&server, &bob, &t0, "", |rs| rs.iter().any(|r| room_in(r, "invite", &room).is_some())).await;
    let response = responses.last().expect("a response");
    assert!(room_in(response, "join", &room).is_none(), "invited is not joined: {response}");
    let invited = room_in(response, "invite", &room).expect("invite");
    let stripped = section_events(invited, "invite_state");
    let member = find_state(&stripped, "m.room.member", &bob.user_id)
        .unwrap_or_else(|| panic!("bob's invite in invite_state: {invited}"));
    assert_eq!(member["content"]["membership"], "invite", "{member}");
    assert_eq!(member["sender"], alice.user_id, "{member}");
    // Stripped state lets the client show what it is invited to.
    let name =
        find_state(&stripped, "m.room.name", "").unwrap_or_else(|| panic!("the name in invite_state: {invited}"));
    assert_eq!(name["content"]["name"], "Secret garden");
    // Invisible before joining: the room's messages.
    assert!(stripped.iter().all(|e| e["type"] != "m.room.message"), "{invited}");

    join(&server, &bob, &room).await;
    let (responses, t2) =
        sync_until(&server, &bob, &t1, "", |rs| rs.iter().any(|r| room_in(r, "join", &room).is_some())).await;
    let response = responses.last().expect("a response");
    assert!(room_in(response, "invite", &room).is_none(), "joined, no longer invited: {response}");
    let joined = room_in(response, "join", &room).expect("join");
    let events = state_and_timeline(joined);
    // `state` is the state at the start of the timeline (still the invite); the join itself
    // is in the timeline, so the latest of Bob's member events is the one that counts.
    let timeline = section_events(joined, "timeline");
    let member = timeline
        .iter()
        .rev()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str())
        .unwrap_or_else(|| panic!("bob's join in the timeline: {joined}"));
    assert_eq!(member["content"]["membership"], "join", "{member}");
    // Having joined, Bob learns the room's state.
    assert!(find_state(&events, "m.room.create", "").is_some(), "the room's state for a new join: {joined}");
    assert!(find_state(&events, "m.room.member", &alice.user_id).is_some(), "{joined}");

    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (responses, _) =
        sync_until(&server, &bob, &t2, "", |rs| rs.iter().any(|r| room_in(r, "leave", &room).is_some())).await;
    let response = responses.last().expect("a response");
    assert!(room_in(response, "join", &room).is_none(), "left, no longer joined: {response}");
    let left = room_in(response, "leave", &room).expect("leave");
    let leave = section_events(left, "timeline")
        .into_iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id)
        .unwrap_or_else(|| panic!("bob's leave event in the leave timeline: {left}"));
    assert_eq!(leave["content"]["membership"], "leave", "{leave}");
}

// ---------------------------------------------------------------------------------------------
// 6. Account data

#[tokio::test]
async fn account_data_changes_arrive_once_globally_and_per_room() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = create_room(&server, &alice, json!({})).await;
    let t0 = next_batch(&sync(&server, &alice, &sync_path(None, 0, "")).await);

    let me = &alice.user_id;
    let global = format!("/_matrix/client/v3/user/{me}/account_data/org.example.x");
    let per_room = format!("/_matrix/client/v3/user/{me}/rooms/{room}/account_data/org.example.y");
    let (status, body) = server.put(&global, alice.token(), json!({"colour": "blue"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.put(&per_room, alice.token(), json!({"pinned": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let globals = |responses: &[Value]| -> Vec<Value> {
        responses
            .iter()
            .flat_map(|r| r["account_data"]["events"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["type"] == "org.example.x")
            .map(|e| json!({"type": e["type"], "content": e["content"]}))
            .collect()
    };
    let room_data = |responses: &[Value]| -> Vec<Value> {
        responses
            .iter()
            .filter_map(|r| room_in(r, "join", &room))
            .flat_map(|r| section_events(r, "account_data"))
            .filter(|e| e["type"] == "org.example.y")
            .map(|e| json!({"type": e["type"], "content": e["content"]}))
            .collect()
    };
    let (responses, t1) =
        sync_until(&server, &alice, &t0, "", |rs| !globals(rs).is_empty() && !room_data(rs).is_empty()).await;
    assert_eq!(globals(&responses), vec![json!({"type": "org.example.x", "content": {"colour": "blue"}})]);
    assert_eq!(room_data(&responses), vec![json!({"type": "org.example.y", "content": {"pinned": true}})]);

    let quiet = sync(&server, &alice, &sync_path(Some(&t1), 0, "")).await;
    let quiet = [quiet];
    assert!(globals(&quiet).is_empty() && room_data(&quiet).is_empty(), "not repeated: {quiet:?}");
    let t2 = next_batch(&quiet[0]);

    // A change arrives with its new content; an initial sync has the current content of both.
    let (status, body) = server.put(&global, alice.token(), json!({"colour": "green"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (responses, _) = sync_until(&server, &alice, &t2, "", |rs| !globals(rs).is_empty()).await;
    assert_eq!(globals(&responses), vec![json!({"type": "org.example.x", "content": {"colour": "green"}})]);
    assert!(room_data(&responses).is_empty(), "unchanged room data is not repeated: {responses:#?}");

    let initial = [sync(&server, &alice, &sync_path(None, 0, "")).await];
    assert_eq!(globals(&initial), vec![json!({"type": "org.example.x", "content": {"colour": "green"}})]);
    assert_eq!(room_data(&initial), vec![json!({"type": "org.example.y", "content": {"pinned": true}})]);
}

// ---------------------------------------------------------------------------------------------
// 7. The invariant under concurrent writers

const WRITERS: usize = 8;
const MESSAGES_PER_WRITER: usize = 25;
const READERS: usize = 3;
const ROOMS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_syncing_clients_see_every_message_once_in_order() {
    tokio::time::timeout(Duration::from_secs(120), invariant_under_concurrency())
        .await
        .expect("the writers and readers finished within 120 s");
}

async fn invariant_under_concurrency() {
    let server = TestServer::start().await;
    let mut writers = Vec::new();
    for i in 0..4 {
        writers.push(register(&server, &format!("writer{i}")).await);
    }
    let mut readers = Vec::new();
    for i in 0..READERS {
        readers.push(register(&server, &format!("reader{i}")).await);
    }
    let mut rooms = Vec::new();
    for _ in 0..ROOMS {
        let room = create_room(&server, &writers[0], json!({"preset": "public_chat"})).await;
        for user in writers.iter().skip(1).chain(&readers) {
            join(&server, user, &room).await;
        }
        rooms.push(room);
    }
    // A limit above everything that will be sent: a limited timeline would be a gap.
    let filter = filter_param(&json!({"room": {"timeline": {"limit": 1000}}}));
    let mut tokens = Vec::new();
    for reader in &readers {
        tokens.push(next_batch(&sync(&server, reader, &sync_path(None, 0, &filter)).await));
    }

    let writers_done = Arc::new(AtomicBool::new(false));
    let total = WRITERS * MESSAGES_PER_WRITER;
    let reading: Vec<_> = readers
        .iter()
        .zip(tokens)
        .map(|(reader, token)| {
            let client = server.http.clone();
            let base = server.base_url.clone();
            let reader = reader.clone();
            let rooms = rooms.clone();
            let filter = filter.clone();
            let writers_done = writers_done.clone();
            tokio::spawn(async move {
                let mut since = token;
                let mut seen: HashMap<String, Vec<String>> = HashMap::new();
                let mut syncs = 0;
                let mut extra_round = false;
                loop {
                    let path = sync_path(Some(&since), if extra_round { 500 } else { 2000 }, &filter);
                    let (status, response) =
                        send_json(&client, Method::GET, &format!("{base}{path}"), reader.token(), None).await;
                    assert_eq!(status, StatusCode::OK, "{}: {response}", reader.user_id);
                    syncs += 1;
                    for room in &rooms {
                        if let Some(joined) = room_in(&response, "join", room) {
                            assert_ne!(joined["timeline"]["limited"], true, "a gap for {}: {joined}", reader.user_id);
                            let messages: Vec<Value> = section_events(joined, "timeline")
                                .into_iter()
                                .filter(|e| e["type"] == "m.room.message")
                                .collect();
                            seen.entry(room.clone()).or_default().extend(event_ids(&messages));
                        }
                    }
                    since = next_batch(&response);
                    if extra_round {
                        break;
                    }
                    // Once the writers are done and everything arrived, one more short sync
                    // catches anything delivered twice late.
                    let count: usize = seen.values().map(Vec::len).sum();
                    if writers_done.load(Ordering::SeqCst) && count >= total {
                        extra_round = true;
                    }
                }
                (reader.user_id, seen, syncs)
            })
        })
        .collect();

    let writing: Vec<_> = (0..WRITERS)
        .map(|w| {
            let client = server.http.clone();
            let base = server.base_url.clone();
            let writer = writers[w % writers.len()].clone();
            let rooms = rooms.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for m in 0..MESSAGES_PER_WRITER {
                    let room = &rooms[(w + m) % rooms.len()];
                    let txn = format!("w{w}m{m}");
                    let (status, body) = send_json(
                        &client,
                        Method::PUT,
                        &format!("{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
                        writer.token(),
                        Some(json!({"msgtype": "m.text", "body": txn})),
                    )
                    .await;
                    assert_eq!(status, StatusCode::OK, "{txn}: {body}");
                    sent.push((room.clone(), body["event_id"].as_str().expect("event_id").to_owned()));
                }
                sent
            })
        })
        .collect();
    let mut sent: HashMap<String, HashSet<String>> = HashMap::new();
    for writer in writing {
        for (room, event_id) in writer.await.expect("writer task") {
            sent.entry(room).or_default().insert(event_id);
        }
    }
    writers_done.store(true, Ordering::SeqCst);
    assert_eq!(sent.values().map(HashSet::len).sum::<usize>(), total, "every send made a distinct event");

    // Stream order per room: `/messages` forwards from the beginning.
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    for room in &rooms {
        let mut ids = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=100");
            if let Some(from) = &from {
                path.push_str(&format!("&from={}", encode(from)));
            }
            let (status, page) = server.get(&path, readers[0].token()).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
            let messages: Vec<Value> = chunk.iter().filter(|e| e["type"] == "m.room.message").cloned().collect();
            ids.extend(event_ids(&messages));
            match page["end"].as_str() {
                Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
                _ => break,
            }
        }
        assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), sent[room], "/messages holds exactly what was sent");
        order.insert(room.clone(), ids);
    }

    for reader in reading {
        let (reader, seen, syncs) = reader.await.expect("reader task");
        for room in &rooms {
            let got = seen.get(room).cloned().unwrap_or_default();
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for id in &got {
                *counts.entry(id).or_default() += 1;
            }
            let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
            assert!(repeated.is_empty(), "{reader} received events more than once in {room}: {repeated:?}");
            let missing: Vec<_> = sent[room].iter().filter(|id| !counts.contains_key(id.as_str())).collect();
            assert!(missing.is_empty(), "{reader} never received {} events in {room}: {missing:?}", missing.len());
            assert_eq!(got, order[room], "{reader} received {room}'s events in stream order ({syncs} syncs)");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Two Hearth processes on one database

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_waiting_on_one_server_wakes_for_a_message_sent_through_another() {
    let server = TestServer::start().await;
    // The second server only reads: events written through it would carry another key than
    // the one `TestServer`'s drop check verifies with.
    let other = start_node(&server.database, SigningKey::generate().expect("key")).await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &room).await;

    // Alice's client talks to the other server; her token works there too.
    let initial = sync(&other, &alice, &sync_path(None, 0, "")).await;
    assert!(room_in(&initial, "join", &room).is_some(), "the other server sees the room: {initial}");
    let token = next_batch(&initial);

    let waiting = spawn_sync(&other, &alice, sync_path(Some(&token), 30_000, ""));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = send_text(&server, &bob, &room, "b1", "across processes").await;
    let (status, response, elapsed) = waiting.await.expect("sync task");
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(event_ids(&timeline(&response, &room)), vec![sent], "{response}");
    // Here the bound is the point: at the 30 s timeout the message would be there as well,
    // so only an early return shows that the other process woke the waiting sync.
    assert!(elapsed < Duration::from_secs(10), "the other server's sync waited {elapsed:?}: it was not woken");

    let quiet = sync(&other, &alice, &sync_path(Some(&next_batch(&response)), 0, "")).await;
    assert!(timeline(&quiet, &room).is_empty(), "not repeated: {quiet}");
    other.stop().await;
}

/// A process keeps each syncing user's memberships between syncs (the window's news checks
/// them): a join written through another process must still reach a sync there as a newly
/// joined room, with its state, and the messages after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_through_one_server_reaches_a_sync_on_another_that_knew_the_old_memberships() {
    let server = TestServer::start().await;
    let other = start_node(&server.database, SigningKey::generate().expect("key")).await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let first = create_room(&server, &alice, json!({"preset": "public_chat"})).await;
    let second = create_room(&server, &bob, json!({"preset": "public_chat", "name": "Second"})).await;

    // Two syncs on the other process: the incremental one leaves her memberships known there.
    let initial = sync(&other, &alice, &sync_path(None, 0, "")).await;
    assert!(room_in(&initial, "join", &first).is_some() && room_in(&initial, "join", &second).is_none());
    let token = next_batch(&sync(&other, &alice, &sync_path(Some(&next_batch(&initial)), 0, "")).await);

    let waiting = spawn_sync(&other, &alice, sync_path(Some(&token), 30_000, ""));
    tokio::time::sleep(Duration::from_millis(200)).await;
    join(&server, &alice, &second).await;
    let (status, response, _) = waiting.await.expect("sync task");
    assert_eq!(status, StatusCode::OK, "{response}");
    let joined = room_in(&response, "join", &second).unwrap_or_else(|| panic!("the join is missing: {response}"));
    let events = state_and_timeline(joined);
    assert!(find_state(&events, "m.room.create", "").is_some(), "a newly joined room comes with its state: {joined}");
    assert!(find_state(&events, "m.room.name", "").is_some(), "{joined}");

    // The room's messages reach her there from now on, once.
    let token = next_batch(&response);
    let sent = send_text(&server, &bob, &second, "b1", "after the join").await;
    let (responses, _) =
        sync_until(&other, &alice, &token, "", |rs| event_ids(&timelines(rs, &second)).contains(&sent)).await;
    let bodies = message_bodies(&timelines(&responses, &second));
    assert_eq!(bodies, vec!["after the join".to_owned()], "{responses:?}");
    other.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 9. Restarts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_before_a_restart_still_delivers_exactly_what_came_after_it() {
    let (database, pool) = fresh_database().await;
    pool.close().await;
    // A restarted server keeps its signing key (it lives in the data directory).
    let data_dir = tempfile::tempdir().expect("temp dir");
    let key_file = data_dir.path().join("signing.key");
    let key = || SigningKey::load_or_generate(&key_file).expect("signing key");

    let first = start_node(&database, key()).await;
    let alice = register(&first, "alice").await;
    let bob = register(&first, "bob").await;
    let room = create_room(&first, &alice, json!({"preset": "public_chat"})).await;
    join(&first, &bob, &room).await;
    send_text(&first, &bob, &room, "b1", "before the token").await;
    let initial = sync(&first, &alice, &sync_path(None, 0, "")).await;
    assert_eq!(message_bodies(&timeline(&initial, &room)), vec!["before the token"], "{initial}");
    let token = next_batch(&initial);
    // Written after the token, never synced before the restart.
    let late = send_text(&first, &bob, &room, "b2", "late on the first server").await;
    first.stop().await;

    let second = start_node(&database, key()).await;
    let after = send_text(&second, &bob, &room, "b3", "after the restart").await;
    let (responses, last) =
        sync_until(&second, &alice, &token, "", |rs| event_ids(&timelines(rs, &room)).contains(&after)).await;
    assert_eq!(event_ids(&timelines(&responses, &room)), vec![late, after], "{responses:#?}");
    let quiet = sync(&second, &alice, &sync_path(Some(&last), 0, "")).await;
    assert!(timeline(&quiet, &room).is_empty(), "not repeated: {quiet}");

    let problems = hearth::testing::rooms::verify::verify_all_events(
        &second.state.pool,
        &second.state.server_name,
        &second.state.signing_key.key_id(),
        &second.state.signing_key.public_key_base64(),
    )
    .await
    .expect("verification runs");
    assert!(problems.is_empty(), "stored events fail verification:\n{}", problems.join("\n"));
    second.stop().await;
}

// ---------------------------------------------------------------------------------------------
// full_state

#[tokio::test]
async fn full_state_returns_the_whole_state_of_a_quiet_room() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = create_room(&server, &alice, json!({"name": "Still"})).await;
    let token = next_batch(&sync(&server, &alice, &sync_path(None, 0, "")).await);

    let quiet = sync(&server, &alice, &sync_path(Some(&token), 0, "")).await;
    assert!(
        room_in(&quiet, "join", &room).is_none_or(|r| state_and_timeline(r).is_empty()),
        "nothing changed: {quiet}"
    );
    let full = sync(&server, &alice, &sync_path(Some(&token), 0, "&full_state=true")).await;
    let joined = room_in(&full, "join", &room).unwrap_or_else(|| panic!("full_state lists the room: {full}"));
    let events = state_and_timeline(joined);
    assert!(find_state(&events, "m.room.create", "").is_some(), "{joined}");
    assert!(find_state(&events, "m.room.member", &alice.user_id).is_some(), "{joined}");
    assert_eq!(find_state(&events, "m.room.name", "").map(|e| &e["content"]["name"]), Some(&json!("Still")));
}

// ---------------------------------------------------------------------------------------------
// 10. Bad input

#[tokio::test]
async fn bad_tokens_filters_and_missing_auth_get_the_specs_errors() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    create_room(&server, &alice, json!({})).await;

    let garbage = server.get("/_matrix/client/v3/sync?since=garbage&timeout=0", alice.token()).await;
    assert_error(&garbage, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    // A real token with something tacked on is not a token either — never a silent full resync.
    let token = next_batch(&sync(&server, &alice, &sync_path(None, 0, "")).await);
    let mangled = server.get(&sync_path(Some(&format!("{token}x!")), 0, ""), alice.token()).await;
    assert_error(&mangled, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");

    let (status, body) = server.get("/_matrix/client/v3/sync?timeout=0&filter=%7Bnot-json", alice.token()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(["M_BAD_JSON", "M_INVALID_PARAM"].contains(&body["errcode"].as_str().unwrap_or("")), "{body}");
    assert!(body["error"].is_string(), "{body}");

    let unauthenticated = server.get("/_matrix/client/v3/sync?timeout=0", None).await;
    assert_error(&unauthenticated, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    let unknown = server.get("/_matrix/client/v3/sync?timeout=0", Some("not-a-token")).await;
    assert_error(&unknown, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
}
