//! The `/sync` response builder, called directly on windows of the stream: exactly-once
//! delivery over consecutive windows, limited timelines that `/messages` continues, the
//! invite / join / leave sections, account data, filters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use hearth::testing::rooms::filter::EventFilter;
use hearth::testing::sync::build::build;
use hearth::testing::sync::response::SyncBody;
use hearth::testing::sync::types::{SyncOptions, SyncWindow};
use reqwest::StatusCode;
use ruma::OwnedUserId;
use ruma::api::client::filter::RoomEventFilter;
use serde_json::{Value, json};
use std::collections::HashSet;

const PW: &str = "sync-build-test-password";

fn user_id(user: &TestUser) -> OwnedUserId {
    OwnedUserId::try_from(user.user_id.as_str()).expect("user id")
}

/// The last position handed out (everything is committed: the tests are quiescent).
async fn upto(server: &TestServer) -> i64 {
    server.count("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM stream_positions").await
}

async fn sync(server: &TestServer, user: &TestUser, since: Option<i64>, upto: i64, options: &SyncOptions) -> Value {
    let body: SyncBody =
        build(&server.state.pool, &user_id(user), SyncWindow { since, upto }, options).await.expect("build");
    let (json, is_empty) = (body.to_json(), body.is_empty());
    let has_content = json.as_object().is_some_and(|body| !body.is_empty());
    assert_eq!(is_empty, !has_content, "is_empty matches the body: {json}");
    json
}

fn options(limit: usize) -> SyncOptions {
    SyncOptions { timeline_limit: limit, ..SyncOptions::default() }
}

fn filtered(limit: usize, filter: Value) -> SyncOptions {
    let filter: RoomEventFilter = serde_json::from_value(filter).expect("filter");
    SyncOptions { timeline: EventFilter::from_ruma(&filter), timeline_limit: limit, ..SyncOptions::default() }
}

async fn post_ok(server: &TestServer, user: &TestUser, path: &str, body: Value) {
    let (status, response) = server.post(path, user.token(), body).await;
    assert_eq!(status, StatusCode::OK, "POST {path}: {response}");
}

async fn send(server: &TestServer, user: &TestUser, room: &str, text: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{text}");
    let (status, body) = server.put(&path, user.token(), json!({"msgtype": "m.text", "body": text})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

fn room<'a>(response: &'a Value, section: &str, room: &str) -> Option<&'a Value> {
    response["rooms"][section].get(room)
}

fn events(room: &Value, key: &str) -> Vec<Value> {
    room[key]["events"].as_array().cloned().unwrap_or_default()
}

fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["event_id"].as_str().expect("event_id").to_owned()).collect()
}

fn bodies(events: &[Value]) -> Vec<String> {
    events.iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect()
}

fn find<'a>(events: &'a [Value], kind: &str, state_key: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["type"] == kind && e["state_key"] == state_key)
}

/// Every event of the room, in stream order, as the database has it.
async fn all_event_ids(server: &TestServer, room: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT i.event_id FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
         WHERE e.room_id = $1 ORDER BY e.stream_position",
    )
    .bind(room)
    .fetch_all(&server.state.pool)
    .await
    .expect("events")
}

#[tokio::test]
async fn consecutive_windows_deliver_every_event_exactly_once_in_order() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room_id = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    post_ok(&server, &bob, &format!("/_matrix/client/v3/join/{room_id}"), json!({})).await;

    let mut delivered = Vec::new();
    let first = upto(&server).await;
    let initial = sync(&server, &alice, None, first, &options(1000)).await;
    delivered.extend(ids(&events(room(&initial, "join", &room_id).expect("joined"), "timeline")));
    let mut since = first;
    for round in 0..5 {
        for i in 0..round {
            send(&server, if i % 2 == 0 { &alice } else { &bob }, &room_id, &format!("r{round}m{i}")).await;
        }
        let now = upto(&server).await;
        let response = sync(&server, &alice, Some(since), now, &options(1000)).await;
        let timeline = room(&response, "join", &room_id).map(|r| events(r, "timeline")).unwrap_or_default();
        assert_eq!(timeline.len(), round, "round {round}: only that round's messages: {response}");
        if round == 0 {
            assert!(response.as_object().is_some_and(|body| body.is_empty()), "a quiet window is empty: {response}");
        }
        delivered.extend(ids(&timeline));
        since = now;
    }
    assert_eq!(delivered, all_event_ids(&server, &room_id).await, "every event once, in stream order");

    // A window that ends before the latest events leaves them to the next window.
    let cut = upto(&server).await;
    let late = send(&server, &bob, &room_id, "late").await;
    let early = sync(&server, &alice, Some(since), cut, &options(10)).await;
    assert!(room(&early, "join", &room_id).is_none(), "nothing after upto: {early}");
    let next = sync(&server, &alice, Some(cut), upto(&server).await, &options(10)).await;
    assert_eq!(ids(&events(room(&next, "join", &room_id).expect("joined"), "timeline")), vec![late]);
}

#[tokio::test]
async fn a_limited_timeline_hands_over_to_messages_at_prev_batch() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room_id = server.create_room(&alice, json!({"name": "Before"})).await;
    let since = upto(&server).await;
    let (status, body) = server
        .put(&format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name/"), alice.token(), json!({"name": "After"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut sent = Vec::new();
    for i in 1..=10 {
        sent.push(send(&server, &alice, &room_id, &format!("m{i}")).await);
    }

    let response = sync(&server, &alice, Some(since), upto(&server).await, &options(3)).await;
    let joined = room(&response, "join", &room_id).expect("joined");
    assert_eq!(joined["timeline"]["limited"], true, "{joined}");
    assert_eq!(ids(&events(joined, "timeline")), sent[7..].to_vec(), "the last three, oldest first");
    // The rename happened in the gap: it is state at the start of the timeline.
    let state = events(joined, "state");
    assert_eq!(find(&state, "m.room.name", "").expect("rename in state")["content"]["name"], "After");
    assert_eq!(state.len(), 1, "only what changed since the window's start: {state:?}");

    let prev_batch = joined["timeline"]["prev_batch"].as_str().expect("prev_batch");
    let (status, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=7&from={prev_batch}"), alice.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
    let expected: Vec<String> = sent[..7].iter().rev().cloned().collect();
    assert_eq!(ids(&chunk), expected, "/messages continues just before the timeline");

    // Not limited: everything since, and prev_batch still points before the first event.
    let since = upto(&server).await;
    let last = send(&server, &alice, &room_id, "last").await;
    let response = sync(&server, &alice, Some(since), upto(&server).await, &options(3)).await;
    let joined = room(&response, "join", &room_id).expect("joined");
    assert_eq!(joined["timeline"]["limited"], false, "{joined}");
    assert_eq!(ids(&events(joined, "timeline")), vec![last]);
    assert!(events(joined, "state").is_empty(), "no state changes: {joined}");
    let prev_batch = joined["timeline"]["prev_batch"].as_str().expect("prev_batch");
    let (_, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=1&from={prev_batch}"), alice.token())
        .await;
    assert_eq!(page["chunk"][0]["event_id"], sent[9], "{page}");
}

/// An initial sync reads each room's newest `limit + 1` events ahead; when some of them are not
/// for the user (an ignored sender's), the room reads on until its timeline is full, and it is
/// still `limited` with a `prev_batch` that `/messages` continues from.
#[tokio::test]
async fn an_initial_timeline_reads_past_hidden_events_until_it_is_full() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room_id = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room_id).await;
    server.join(&carol, &room_id).await;
    let mut from_bob = Vec::new();
    for i in 1..=12 {
        from_bob.push(send(&server, &bob, &room_id, &format!("bob-{i}")).await);
    }
    for i in 1..=6 {
        send(&server, &carol, &room_id, &format!("carol-{i}")).await;
    }
    let path = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", alice.user_id);
    let (status, body) = server.put(&path, alice.token(), json!({"ignored_users": {carol.user_id.clone(): {}}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let filter = json!({"room": {"timeline": {"limit": 10}}}).to_string();
    let (status, response) =
        server.get(&format!("/_matrix/client/v3/sync?filter={}", encode(&filter)), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let joined = room(&response, "join", &room_id).expect("joined");
    assert_eq!(ids(&events(joined, "timeline")), from_bob[2..].to_vec(), "Bob's last ten, Carol's left out");
    assert_eq!(joined["timeline"]["limited"], true, "{joined}");
    let prev_batch = joined["timeline"]["prev_batch"].as_str().expect("prev_batch");
    let (status, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=1&from={prev_batch}"), alice.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["chunk"][0]["event_id"], from_bob[1], "/messages continues before the timeline: {page}");
}

#[tokio::test]
async fn an_initial_sync_has_the_full_state_before_the_timeline() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room_id = server.create_room(&alice, json!({"name": "Tea", "topic": "Leaves"})).await;
    let said = send(&server, &alice, &room_id, "hello").await;
    let response = sync(&server, &alice, None, upto(&server).await, &options(1)).await;
    let joined = room(&response, "join", &room_id).expect("joined");
    assert_eq!(ids(&events(joined, "timeline")), vec![said]);
    let state = events(joined, "state");
    for (kind, key) in [("m.room.create", ""), ("m.room.name", ""), ("m.room.topic", ""), ("m.room.power_levels", "")] {
        assert!(find(&state, kind, key).is_some(), "{kind} in state: {joined}");
    }
    assert!(find(&state, "m.room.member", &alice.user_id).is_some(), "{joined}");
    // Initial and `full_state` syncs carry the state; the global account data is all there.
    let full = SyncOptions { full_state: true, ..options(1) };
    let now = upto(&server).await;
    let response = sync(&server, &alice, Some(now), now, &full).await;
    let joined = room(&response, "join", &room_id).expect("full_state lists every joined room");
    assert!(events(joined, "timeline").is_empty(), "{joined}");
    assert!(find(&events(joined, "state"), "m.room.create", "").is_some(), "{joined}");
}

#[tokio::test]
async fn invites_joins_and_leaves_move_a_room_between_sections_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room_id = server.create_room(&alice, json!({"preset": "private_chat", "name": "Garden"})).await;
    let before = send(&server, &alice, &room_id, "before bob").await;
    let t0 = upto(&server).await;

    post_ok(&server, &alice, &format!("/_matrix/client/v3/rooms/{room_id}/invite"), json!({"user_id": bob.user_id}))
        .await;
    let t1 = upto(&server).await;
    let response = sync(&server, &bob, Some(t0), t1, &options(10)).await;
    let invited = room(&response, "invite", &room_id).expect("invite");
    let stripped = events(invited, "invite_state");
    assert_eq!(find(&stripped, "m.room.name", "").expect("name")["content"]["name"], "Garden");
    assert!(find(&stripped, "m.room.create", "").is_some(), "{invited}");
    let member = find(&stripped, "m.room.member", &bob.user_id).expect("the invite");
    assert_eq!(member["content"]["membership"], "invite");
    assert_eq!(member["sender"], alice.user_id);
    assert!(stripped.iter().all(|e| e.get("event_id").is_none()), "stripped: {invited}");
    assert!(room(&response, "join", &room_id).is_none());
    // Once only; an initial sync shows a pending invite again.
    let again = sync(&server, &bob, Some(t1), t1, &options(10)).await;
    assert!(room(&again, "invite", &room_id).is_none(), "{again}");
    assert!(room(&sync(&server, &bob, None, t1, &options(10)).await, "invite", &room_id).is_some());

    post_ok(&server, &bob, &format!("/_matrix/client/v3/join/{room_id}"), json!({})).await;
    let t2 = upto(&server).await;
    // A window ending before the join still sees Bob invited, not joined.
    let cut = sync(&server, &bob, Some(t0), t1, &options(10)).await;
    assert!(room(&cut, "join", &room_id).is_none(), "{cut}");
    let response = sync(&server, &bob, Some(t1), t2, &options(10)).await;
    assert!(room(&response, "invite", &room_id).is_none(), "{response}");
    let joined = room(&response, "join", &room_id).expect("joined");
    let timeline = events(joined, "timeline");
    // A room joined in the window comes as on an initial sync: recent history (the room's
    // `shared` visibility shows what was said before the join), up to the join.
    assert_eq!(timeline.last().expect("the join")["state_key"], bob.user_id, "{joined}");
    assert!(ids(&timeline).contains(&before), "{joined}");
    assert_eq!(joined["timeline"]["limited"], false, "the whole room fits the limit: {joined}");
    // A new join is told the whole room (here all of it is in the timeline).
    let room_events: Vec<Value> = events(joined, "state").into_iter().chain(timeline).collect();
    assert!(find(&room_events, "m.room.create", "").is_some(), "{joined}");
    assert!(find(&room_events, "m.room.member", &alice.user_id).is_some(), "{joined}");

    let said = send(&server, &alice, &room_id, "bye bob").await;
    post_ok(&server, &alice, &format!("/_matrix/client/v3/rooms/{room_id}/kick"), json!({"user_id": bob.user_id}))
        .await;
    let after_kick = send(&server, &alice, &room_id, "bob cannot see this").await;
    let t3 = upto(&server).await;
    let response = sync(&server, &bob, Some(t2), t3, &options(10)).await;
    assert!(room(&response, "join", &room_id).is_none(), "{response}");
    let left = room(&response, "leave", &room_id).expect("leave");
    let timeline = events(left, "timeline");
    assert_eq!(ids(&timeline)[0], said, "{left}");
    let kick = timeline.last().expect("the kick");
    assert_eq!(kick["type"], "m.room.member");
    assert_eq!(kick["content"]["membership"], "leave");
    assert!(!ids(&timeline).contains(&after_kick), "nothing after the kick: {left}");
    // Initial syncs leave left rooms out; forgotten rooms never appear.
    assert!(room(&sync(&server, &bob, None, t3, &options(10)).await, "leave", &room_id).is_none());
    post_ok(&server, &bob, &format!("/_matrix/client/v3/rooms/{room_id}/forget"), json!({})).await;
    assert!(room(&sync(&server, &bob, Some(t2), t3, &options(10)).await, "leave", &room_id).is_none());
}

#[tokio::test]
async fn account_data_arrives_in_the_window_it_changed() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room_id = server.create_room(&alice, json!({})).await;
    let t0 = upto(&server).await;
    let me = &alice.user_id;
    let (status, _) = server
        .put(&format!("/_matrix/client/v3/user/{me}/account_data/org.example.x"), alice.token(), json!({"a": 1}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/user/{me}/rooms/{room_id}/account_data/org.example.y"),
            alice.token(),
            json!({"b": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let t1 = upto(&server).await;
    let response = sync(&server, &alice, Some(t0), t1, &options(10)).await;
    let global: Vec<Value> = response["account_data"]["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(global, vec![json!({"type": "org.example.x", "content": {"a": 1}})]);
    let joined = room(&response, "join", &room_id).expect("the room, for its account data");
    assert_eq!(events(joined, "account_data"), vec![json!({"type": "org.example.y", "content": {"b": 2}})]);
    assert!(events(joined, "timeline").is_empty(), "{joined}");
    let quiet = sync(&server, &alice, Some(t1), t1, &options(10)).await;
    assert_eq!(quiet, json!({}), "nothing twice");
}

#[tokio::test]
async fn filters_pick_the_rooms_and_the_timeline_events() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room_a = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let room_b = server.create_room(&alice, json!({})).await;
    post_ok(&server, &bob, &format!("/_matrix/client/v3/join/{room_a}"), json!({})).await;
    let t0 = upto(&server).await;
    send(&server, &alice, &room_a, "from alice").await;
    send(&server, &bob, &room_a, "from bob").await;
    send(&server, &alice, &room_b, "in b").await;
    let t1 = upto(&server).await;

    let only_bob = filtered(10, json!({"senders": [bob.user_id], "not_rooms": [room_b]}));
    let response = sync(&server, &alice, Some(t0), t1, &only_bob).await;
    assert!(room(&response, "join", &room_b).is_none(), "not_rooms: {response}");
    let timeline = events(room(&response, "join", &room_a).expect("room a"), "timeline");
    assert_eq!(bodies(&timeline), vec!["from bob"]);

    // Ignored users' messages are not delivered.
    let me = &alice.user_id;
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/user/{me}/account_data/m.ignored_user_list"),
            alice.token(),
            json!({"ignored_users": {bob.user_id.clone(): {}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let response = sync(&server, &alice, Some(t0), t1, &options(10)).await;
    let timeline = events(room(&response, "join", &room_a).expect("room a"), "timeline");
    assert_eq!(bodies(&timeline), vec!["from alice"], "{response}");

    // Lazy-loaded members: only the timeline's senders (and the user) in the state.
    let lazy = filtered(1, json!({"lazy_load_members": true}));
    let response = sync(&server, &bob, None, t1, &lazy).await;
    let joined = room(&response, "join", &room_a).expect("room a");
    let members: HashSet<String> = events(joined, "state")
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .filter_map(|e| e["state_key"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(members, HashSet::from([bob.user_id.clone()]), "{joined}");
}

#[tokio::test]
async fn a_rejected_invite_reaches_the_leave_section_with_the_rejection_alone() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room_id = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    send(&server, &alice, &room_id, "secret").await;
    post_ok(&server, &alice, &format!("/_matrix/client/v3/rooms/{room_id}/invite"), json!({"user_id": bob.user_id}))
        .await;
    let t0 = upto(&server).await;
    post_ok(&server, &bob, &format!("/_matrix/client/v3/rooms/{room_id}/leave"), json!({})).await;
    let t1 = upto(&server).await;
    let response = sync(&server, &bob, Some(t0), t1, &options(10)).await;
    assert!(room(&response, "invite", &room_id).is_none(), "{response}");
    let left = room(&response, "leave", &room_id).expect("leave");
    let timeline = events(left, "timeline");
    assert_eq!(timeline.len(), 1, "only his own rejection: {left}");
    assert_eq!(timeline[0]["state_key"], bob.user_id);
    assert_eq!(timeline[0]["content"]["membership"], "leave");
    assert!(events(left, "state").is_empty(), "never joined, so no room state: {left}");
}

#[tokio::test]
async fn members_who_changed_in_the_gap_are_sent_even_when_lazy_loading() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let dave = server.register("dave", PW).await;
    let room_id = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    post_ok(&server, &bob, &format!("/_matrix/client/v3/join/{room_id}"), json!({})).await;
    let since = upto(&server).await;

    // Carol and dave join while bob is away; then only carol and alice talk, past the limit.
    for joiner in [&carol, &dave] {
        post_ok(&server, joiner, &format!("/_matrix/client/v3/join/{room_id}"), json!({})).await;
    }
    send(&server, &carol, &room_id, "hello from carol").await;
    for i in 0..5 {
        send(&server, &alice, &room_id, &format!("a{i}")).await;
    }
    let now = upto(&server).await;

    let member_keys = |response: &Value| -> HashSet<String> {
        let joined = room(response, "join", &room_id).expect("joined");
        events(joined, "state")
            .iter()
            .chain(events(joined, "timeline").iter())
            .filter(|event| event["type"] == "m.room.member")
            .filter_map(|event| event["state_key"].as_str().map(str::to_owned))
            .collect()
    };
    // Without lazy loading the gap's joins arrive as state before the limited timeline.
    let full = sync(&server, &bob, Some(since), now, &options(5)).await;
    assert_eq!(room(&full, "join", &room_id).expect("joined")["timeline"]["limited"], true, "{full}");
    let everyone = member_keys(&full);
    assert!(everyone.contains(&carol.user_id) && everyone.contains(&dave.user_id), "both joins: {full}");

    // Lazily too: the spec makes a limited sync send the member events of the gap, redundant
    // or not, so that joins and profile changes there are not lost. Carol and dave joined in
    // the gap; alice is a sender of the timeline; bob is the user.
    let lazy = filtered(5, json!({"lazy_load_members": true}));
    let response = sync(&server, &bob, Some(since), now, &lazy).await;
    let members = member_keys(&response);
    let expected: HashSet<String> = [&alice, &bob, &carol, &dave].iter().map(|user| user.user_id.clone()).collect();
    assert_eq!(members, expected, "{response}");
}
