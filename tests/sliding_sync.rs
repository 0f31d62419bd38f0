//! Sliding sync (MSC4186) over raw HTTP: lists in recency order, room data, required state,
//! subscriptions, filters, extensions, the `pos` token's errors, long-polls woken by news,
//! and every event delivered exactly once across a connection's positions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub(crate) const PW: &str = "sliding-test-password";
const SLIDING: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// One sliding sync request; panics unless it succeeds.
pub(crate) async fn slide(
    server: &TestServer,
    user: &TestUser,
    pos: Option<&str>,
    timeout_ms: u64,
    body: Value,
) -> Value {
    let response = slide_raw(server, user, pos, timeout_ms, body).await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    assert!(response.1["pos"].is_string(), "every answer has a pos: {}", response.1);
    response.1
}

async fn slide_raw(
    server: &TestServer,
    user: &TestUser,
    pos: Option<&str>,
    timeout_ms: u64,
    body: Value,
) -> (StatusCode, Value) {
    let mut path = format!("{SLIDING}?timeout={timeout_ms}");
    if let Some(pos) = pos {
        path.push_str(&format!("&pos={}", encode(pos)));
    }
    server.post(&path, user.token(), body).await
}

/// A list named `all` over the first `window` rooms.
pub(crate) fn list(window: u64, timeline_limit: u64, required_state: Value) -> Value {
    json!({ "conn_id": "room-list", "lists": { "all": {
        "ranges": [[0, window - 1]], "timeline_limit": timeline_limit, "required_state": required_state,
    }}})
}

pub(crate) fn bodies(room: &Value) -> Vec<String> {
    room["timeline"]
        .as_array()
        .map(|events| events.iter().filter_map(|event| event["content"]["body"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn room_ids(response: &Value) -> Vec<String> {
    response["rooms"].as_object().map(|rooms| rooms.keys().cloned().collect()).unwrap_or_default()
}

#[tokio::test]
async fn versions_advertise_simplified_sliding_sync() {
    let server = TestServer::start().await;
    let (status, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(versions["unstable_features"]["org.matrix.simplified_msc3575"], true, "{versions}");
}

#[tokio::test]
async fn the_list_shows_the_most_recent_rooms_and_a_new_message_moves_its_room_to_the_top() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let mut rooms = Vec::new();
    for name in ["first", "second", "third"] {
        let room = server.create_room(&alice, json!({ "name": name })).await;
        server.send_text(&alice, &room, &format!("t-{name}"), &format!("hello in {name}")).await;
        rooms.push(room);
    }
    // A window of two: the two rooms with the latest messages, the count of all three.
    let first = slide(&server, &alice, None, 0, list(2, 1, json!([["m.room.name", ""]]))).await;
    assert_eq!(first["lists"]["all"]["count"], 3, "{first}");
    let mut shown = room_ids(&first);
    shown.sort();
    let mut expected = vec![rooms[1].clone(), rooms[2].clone()];
    expected.sort();
    assert_eq!(shown, expected, "the two most recent rooms: {first}");
    let third = &first["rooms"][&rooms[2]];
    assert_eq!(third["name"], "third");
    assert_eq!(third["initial"], true);
    assert_eq!(bodies(third), vec!["hello in third"], "timeline_limit 1 keeps the latest: {third}");
    assert_eq!(third["limited"], true);
    assert_eq!(third["joined_count"], 1);
    assert_eq!(third["required_state"][0]["type"], "m.room.name");
    assert!(
        third["bump_stamp"].as_u64().unwrap() > first["rooms"][&rooms[1]]["bump_stamp"].as_u64().unwrap(),
        "the later room has the higher bump_stamp: {first}"
    );

    // A message in the first room: it comes next, with only what is new, and leads the list.
    let pos = first["pos"].as_str().unwrap().to_owned();
    server.send_text(&alice, &rooms[0], "t-again", "back in first").await;
    let next = slide(&server, &alice, Some(&pos), 10_000, list(2, 1, json!([["m.room.name", ""]]))).await;
    let entry = &next["rooms"][&rooms[0]];
    assert_eq!(bodies(entry), vec!["back in first"], "{next}");
    assert_eq!(entry["initial"], true, "new to the connection: {next}");
    let stamps: HashMap<String, u64> = [&first, &next]
        .iter()
        .flat_map(|response| response["rooms"].as_object().unwrap().iter())
        .map(|(id, room)| (id.clone(), room["bump_stamp"].as_u64().unwrap()))
        .collect();
    assert!(stamps[&rooms[0]] > stamps[&rooms[2]], "the first room now leads: {stamps:?}");
    // A fresh connection's window of one is the first room.
    let fresh = slide(
        &server,
        &alice,
        None,
        0,
        json!({ "conn_id": "other", "lists": { "top": {
        "ranges": [[0, 0]], "timeline_limit": 0 }}}),
    )
    .await;
    assert_eq!(room_ids(&fresh), vec![rooms[0].clone()], "{fresh}");
}

#[tokio::test]
async fn every_message_arrives_exactly_once_across_positions() {
    let server = TestServer::start().await;
    let (users, room) = server.public_room_of(&["alice", "bob"], PW, json!({})).await;
    let (alice, bob) = (&users[0], &users[1]);
    let request = list(10, 50, json!([]));
    let mut response = slide(&server, bob, None, 0, request.clone()).await;
    let mut seen: Vec<String> = bodies(&response["rooms"][&room]);
    let writer = {
        let http = server.http.clone();
        let url = server.url("");
        let token = alice.access_token.clone();
        let room = room.clone();
        tokio::spawn(async move {
            for n in 0..40 {
                let path = format!("{url}/_matrix/client/v3/rooms/{room}/send/m.room.message/burst-{n}");
                let body = json!({ "msgtype": "m.text", "body": format!("burst {n}") });
                let (status, _) = send_json(&http, reqwest::Method::PUT, &path, Some(&token), Some(body)).await;
                assert_eq!(status, StatusCode::OK);
            }
        })
    };
    let started = Instant::now();
    while seen.iter().filter(|body| body.starts_with("burst")).count() < 40 {
        assert!(started.elapsed() < Duration::from_secs(30), "bursts missing; saw {seen:?}");
        let pos = response["pos"].as_str().unwrap().to_owned();
        response = slide(&server, bob, Some(&pos), 5_000, request.clone()).await;
        seen.extend(bodies(&response["rooms"][&room]));
    }
    writer.await.unwrap();
    let bursts: Vec<&String> = seen.iter().filter(|body| body.starts_with("burst")).collect();
    let expected: Vec<String> = (0..40).map(|n| format!("burst {n}")).collect();
    assert_eq!(bursts, expected.iter().collect::<Vec<_>>(), "each message once, in order");
    // Nothing more comes: an empty long-poll times out with no rooms.
    let pos = response["pos"].as_str().unwrap().to_owned();
    let quiet = slide(&server, bob, Some(&pos), 300, request.clone()).await;
    assert!(quiet.get("rooms").is_none_or(|rooms| rooms.as_object().unwrap().is_empty()), "{quiet}");
    // Retrying the previous pos (a lost response) answers the same news again.
    let retried = slide(&server, bob, Some(&pos), 0, request).await;
    assert!(retried.get("rooms").is_none_or(|rooms| rooms.as_object().unwrap().is_empty()), "{retried}");
}

#[tokio::test]
async fn a_long_poll_wakes_for_a_message() {
    let server = TestServer::start().await;
    let (users, room) = server.public_room_of(&["alice", "bob"], PW, json!({})).await;
    let first = slide(&server, &users[1], None, 0, list(5, 5, json!([]))).await;
    let pos = first["pos"].as_str().unwrap().to_owned();
    let sender = {
        let http = server.http.clone();
        let url = server.url(&format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/wake"));
        let token = users[0].access_token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let body = json!({ "msgtype": "m.text", "body": "wake up" });
            send_json(&http, reqwest::Method::PUT, &url, Some(&token), Some(body)).await
        })
    };
    let started = Instant::now();
    let woken = slide(&server, &users[1], Some(&pos), 20_000, list(5, 5, json!([]))).await;
    assert!(started.elapsed() < Duration::from_secs(10), "woken by the message, not the timeout");
    assert_eq!(bodies(&woken["rooms"][&room]), vec!["wake up"], "{woken}");
    assert_eq!(woken["rooms"][&room]["num_live"], 1, "{woken}");
    assert_eq!(sender.await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn bad_pos_bad_ranges_and_unknown_lists_answer_cleanly() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    server.create_room(&alice, json!({})).await;
    for pos in ["nonsense", "p1_999999", "p1_-1", ""] {
        let response = slide_raw(&server, &alice, Some(pos), 0, list(1, 1, json!([]))).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_UNKNOWN_POS");
    }
    // A pos is its connection's own: not another conn_id's, not another user's.
    let first = slide(&server, &alice, None, 0, list(1, 1, json!([]))).await;
    let pos = first["pos"].as_str().unwrap();
    let other_connection = json!({ "conn_id": "elsewhere", "lists": {} });
    assert_error(
        &slide_raw(&server, &alice, Some(pos), 0, other_connection).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN_POS",
    );
    assert_error(
        &slide_raw(&server, &bob, Some(pos), 0, list(1, 1, json!([]))).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN_POS",
    );
    // A pos two answers old is gone (only the latest may be retried).
    let second = slide(&server, &alice, Some(pos), 0, list(1, 1, json!([]))).await;
    let third = slide(&server, &alice, second["pos"].as_str(), 0, list(1, 1, json!([]))).await;
    assert!(third["pos"].is_string());
    assert_error(
        &slide_raw(&server, &alice, Some(pos), 0, list(1, 1, json!([]))).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN_POS",
    );

    let backwards = json!({ "lists": { "all": { "ranges": [[5, 2]], "timeline_limit": 1 }}});
    assert_error(&slide_raw(&server, &alice, None, 0, backwards).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let malformed = json!({ "lists": { "all": { "ranges": [[-1, 2]], "timeline_limit": 1 }}});
    let response = slide_raw(&server, &alice, None, 0, malformed).await;
    assert_eq!(response.0, StatusCode::BAD_REQUEST, "{}", response.1);
    let not_a_range = json!({ "lists": { "all": { "ranges": "all", "timeline_limit": 1 }}});
    let response = slide_raw(&server, &alice, None, 0, not_a_range).await;
    assert_eq!(response.0, StatusCode::BAD_REQUEST, "{}", response.1);
    // Extensions naming lists that do not exist name no rooms.
    let unknown = json!({ "lists": { "all": { "ranges": [[0, 9]], "timeline_limit": 1 }},
        "extensions": { "typing": { "enabled": true, "lists": ["nope"] },
                        "receipts": { "enabled": true, "lists": ["nope"] } }});
    let answer = slide(&server, &alice, None, 0, unknown).await;
    assert!(answer["extensions"].get("receipts").is_none(), "{answer}");
    // A range past the end shows what there is.
    let past = json!({ "lists": { "all": { "ranges": [[0, 1000000]], "timeline_limit": 1 }}});
    assert_eq!(slide(&server, &alice, None, 0, past).await["lists"]["all"]["count"], 1);
    let unauthenticated = server.post(SLIDING, None, json!({})).await;
    assert_error(&unauthenticated, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn required_state_wildcards_me_lazy_and_additions() {
    let server = TestServer::start().await;
    let (users, room) =
        server.public_room_of(&["alice", "bob", "carol"], PW, json!({ "name": "Lobby", "topic": "talk" })).await;
    let (alice, bob) = (&users[0], &users[1]);
    server.send_text(alice, &room, "t1", "from alice").await;
    let lazy = json!([["m.room.member", "$LAZY"], ["m.room.member", "$ME"], ["m.room.topic", ""]]);
    let first = slide(&server, bob, None, 0, list(1, 1, lazy.clone())).await;
    let state = first["rooms"][&room]["required_state"].as_array().unwrap().clone();
    let keys: Vec<(String, String)> = state
        .iter()
        .map(|event| (event["type"].as_str().unwrap().to_owned(), event["state_key"].as_str().unwrap().to_owned()))
        .collect();
    assert!(keys.contains(&("m.room.member".to_owned(), alice.user_id.clone())), "the sender: {keys:?}");
    assert!(keys.contains(&("m.room.member".to_owned(), bob.user_id.clone())), "$ME: {keys:?}");
    assert!(keys.contains(&("m.room.topic".to_owned(), String::new())), "{keys:?}");
    assert!(!keys.contains(&("m.room.member".to_owned(), users[2].user_id.clone())), "not carol: {keys:?}");
    assert_eq!(keys.len(), 3, "{keys:?}");

    // Asking for more on the same connection sends what was added, not what bob has ($ME and
    // the topic; alice's member, loaded lazily, is sent again: that is not tracked).
    let pos = first["pos"].as_str().unwrap().to_owned();
    let everything = slide(&server, bob, Some(&pos), 0, list(1, 1, json!([["*", "*"]]))).await;
    let state = everything["rooms"][&room]["required_state"].as_array().unwrap();
    let types: Vec<&str> = state.iter().map(|event| event["type"].as_str().unwrap()).collect();
    for wanted in ["m.room.create", "m.room.join_rules", "m.room.power_levels", "m.room.name"] {
        assert!(types.contains(&wanted), "{wanted} in {types:?}");
    }
    assert!(!types.contains(&"m.room.topic"), "bob has the topic: {types:?}");
    let members: Vec<&str> = state
        .iter()
        .filter(|event| event["type"] == "m.room.member")
        .map(|event| event["state_key"].as_str().unwrap())
        .collect();
    assert_eq!(members, [alice.user_id.as_str(), users[2].user_id.as_str()], "not bob's own: {members:?}");
    assert!(everything["rooms"][&room]["timeline"].is_null(), "no new events to send: {everything}");

    // A state change arrives in required_state when it matches.
    let pos = everything["pos"].as_str().unwrap().to_owned();
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
    assert_eq!(server.put(&path, alice.token(), json!({ "topic": "new topic" })).await.0, StatusCode::OK);
    let changed = slide(&server, bob, Some(&pos), 5_000, list(1, 1, json!([["*", "*"]]))).await;
    let state = changed["rooms"][&room]["required_state"].as_array().unwrap();
    assert!(state.iter().any(|event| event["content"]["topic"] == "new topic"), "{changed}");
    assert!(changed["rooms"][&room].get("initial").is_none(), "{changed}");

    // Asking for less sends nothing again (an app closing a room narrows its ask).
    let pos = changed["pos"].as_str().unwrap().to_owned();
    let narrower = slide(&server, bob, Some(&pos), 0, list(1, 1, lazy)).await;
    let state = &narrower["rooms"][&room]["required_state"];
    assert!(state.as_array().is_none_or(Vec::is_empty), "bob has it all: {narrower}");
}

#[tokio::test]
async fn room_data_and_prev_batch_work_with_messages() {
    let server = TestServer::start().await;
    let (users, room) = server.public_room_of(&["alice", "bob"], PW, json!({})).await;
    let (alice, bob) = (&users[0], &users[1]);
    for n in 0..5 {
        server.send_text(alice, &room, &format!("m{n}"), &format!("message {n}")).await;
    }
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.avatar/");
    assert_eq!(server.put(&path, alice.token(), json!({ "url": "mxc://example.org/avatar" })).await.0, StatusCode::OK);
    let response = slide(&server, bob, None, 0, list(1, 2, json!([]))).await;
    let entry = &response["rooms"][&room];
    assert_eq!(entry["joined_count"], 2, "{entry}");
    assert_eq!(entry["invited_count"], 0, "{entry}");
    assert_eq!(entry["notification_count"], 5, "bob has not read alice's messages: {entry}");
    assert_eq!(entry["highlight_count"], 0, "{entry}");
    assert_eq!(entry["avatar"], "mxc://example.org/avatar", "{entry}");
    assert_eq!(entry["heroes"][0]["user_id"], alice.user_id, "an unnamed room has heroes: {entry}");
    assert_eq!(entry["limited"], true);
    assert_eq!(entry["timeline"].as_array().unwrap().len(), 2);
    // prev_batch continues backwards with /messages from just before the timeline.
    let prev_batch = entry["prev_batch"].as_str().unwrap();
    let (status, older) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=3&from={prev_batch}"), bob.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{older}");
    let older: Vec<&str> =
        older["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    // The timeline is message 4 and the avatar change after it.
    assert_eq!(older, vec!["message 3", "message 2", "message 1"], "right before the timeline");

    // Reading clears the count, on the next answer that sends the room.
    let last = server.send_text(alice, &room, "m-last", "last").await;
    server.read_up_to(bob, &room, &last).await;
    let pos = response["pos"].as_str().unwrap().to_owned();
    let next = slide(&server, bob, Some(&pos), 0, list(1, 2, json!([]))).await;
    assert_eq!(next["rooms"][&room]["notification_count"], 0, "{next}");
}

#[tokio::test]
async fn invites_and_leaves_show_their_membership() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room =
        server.create_room(&alice, json!({ "name": "Secret", "is_direct": true, "invite": [bob.user_id] })).await;
    let request = json!({ "conn_id": "c", "lists": {
        "invites": { "ranges": [[0, 9]], "timeline_limit": 1, "filters": { "is_invite": true } },
        "joined": { "ranges": [[0, 9]], "timeline_limit": 1, "filters": { "is_invite": false } },
        "dms": { "ranges": [[0, 9]], "timeline_limit": 1, "filters": { "is_dm": true } },
    }});
    let first = slide(&server, &bob, None, 0, request.clone()).await;
    assert_eq!(first["lists"]["invites"]["count"], 1, "{first}");
    assert_eq!(first["lists"]["joined"]["count"], 0, "{first}");
    assert_eq!(first["lists"]["dms"]["count"], 1, "an invite marked is_direct is a DM: {first}");
    let entry = &first["rooms"][&room];
    assert_eq!(entry["membership"], "invite", "{entry}");
    assert_eq!(entry["name"], "Secret", "{entry}");
    let stripped: Vec<&str> =
        entry["invite_state"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(stripped.contains(&"m.room.name") && stripped.contains(&"m.room.member"), "{stripped:?}");
    assert!(entry.get("timeline").is_none(), "{entry}");

    // Joining sends the room afresh; leaving says so.
    server.join(&bob, &room).await;
    let pos = first["pos"].as_str().unwrap().to_owned();
    let joined = slide(&server, &bob, Some(&pos), 0, request.clone()).await;
    assert_eq!(joined["lists"]["joined"]["count"], 1, "{joined}");
    assert_eq!(joined["rooms"][&room]["initial"], true, "{joined}");
    assert!(joined["rooms"][&room].get("membership").is_none(), "joined rooms say nothing: {joined}");
    server.leave(&bob, &room).await;
    let pos = joined["pos"].as_str().unwrap().to_owned();
    let left = slide(&server, &bob, Some(&pos), 0, request).await;
    let entry = &left["rooms"][&room];
    assert_eq!(entry["membership"], "leave", "{left}");
    let last = entry["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["type"].as_str(), last["state_key"].as_str()),
        (Some("m.room.member"), Some(bob.user_id.as_str()))
    );
}

/// Two rooms of `user`'s: `quiet` and then `busy`, each with one message (so a one-room
/// window shows `busy`).
async fn quiet_and_busy_rooms(server: &TestServer, user: &TestUser) -> (String, String) {
    let quiet = server.create_room(user, json!({ "name": "quiet" })).await;
    server.send_text(user, &quiet, "q", "old news").await;
    let busy = server.create_room(user, json!({ "name": "busy" })).await;
    server.send_text(user, &busy, "b", "fresh news").await;
    (quiet, busy)
}

#[tokio::test]
async fn subscriptions_get_their_room_outside_the_window() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let (quiet, busy) = quiet_and_busy_rooms(&server, &alice).await;
    let stranger = server.register("stranger", PW).await;
    let hidden = server.create_room(&stranger, json!({})).await;
    let request = json!({ "conn_id": "c", "lists": { "all": { "ranges": [[0, 0]], "timeline_limit": 1 }},
        "room_subscriptions": { quiet.clone(): { "timeline_limit": 5, "required_state": [["m.room.name", ""]] },
                                hidden.clone(): { "timeline_limit": 5 } }});
    let response = slide(&server, &alice, None, 0, request).await;
    let mut shown = room_ids(&response);
    shown.sort();
    let mut expected = vec![quiet.clone(), busy.clone()];
    expected.sort();
    assert_eq!(shown, expected, "the window's room and the subscription, not a room alice is not in: {response}");
    assert!(bodies(&response["rooms"][&quiet]).contains(&"old news".to_owned()), "{response}");
    assert_eq!(response["rooms"][&quiet]["required_state"][0]["content"]["name"], "quiet");
}

#[tokio::test]
async fn extensions_deliver_to_device_e2ee_account_data_receipts_and_typing() {
    let server = TestServer::start().await;
    let (users, room) = server.public_room_of(&["alice", "bob"], PW, json!({})).await;
    let (alice, bob) = (&users[0], &users[1]);
    let extensions = json!({ "to_device": { "enabled": true }, "e2ee": { "enabled": true },
        "account_data": { "enabled": true }, "receipts": { "enabled": true }, "typing": { "enabled": true } });
    let request = |since: Option<&str>| {
        let mut extensions = extensions.clone();
        if let Some(since) = since {
            extensions["to_device"]["since"] = json!(since);
        }
        json!({ "conn_id": "e", "lists": { "all": { "ranges": [[0, 9]], "timeline_limit": 1 }}, "extensions": extensions })
    };
    let first = slide(&server, bob, None, 0, request(None)).await;
    assert!(first["extensions"]["e2ee"]["device_one_time_keys_count"].is_object(), "{first}");
    let global: Vec<&str> = first["extensions"]["account_data"]["global"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert!(global.contains(&"m.push_rules"), "{global:?}");

    // A to-device message, a receipt, typing and room account data all arrive on the next.
    let path = "/_matrix/client/v3/sendToDevice/m.test/txn1";
    let messages = json!({ "messages": { bob.user_id.clone(): { bob.device_id.clone(): { "hello": "bob" } } } });
    assert_eq!(server.put(path, alice.token(), messages).await.0, StatusCode::OK);
    let event = server.send_text(alice, &room, "r1", "read me").await;
    server.read_up_to(alice, &room, &event).await;
    let typing = format!("/_matrix/client/v3/rooms/{room}/typing/{}", alice.user_id);
    assert_eq!(server.put(&typing, alice.token(), json!({ "typing": true, "timeout": 30000 })).await.0, StatusCode::OK);
    let tag = format!("/_matrix/client/v3/user/{}/rooms/{room}/account_data/m.test", bob.user_id);
    assert_eq!(server.put(&tag, bob.token(), json!({ "n": 1 })).await.0, StatusCode::OK);
    let pos = first["pos"].as_str().unwrap().to_owned();
    let since = first["extensions"]["to_device"]["next_batch"].as_str().unwrap().to_owned();
    let next = slide(&server, bob, Some(&pos), 0, request(Some(&since))).await;
    let ext = &next["extensions"];
    assert_eq!(ext["to_device"]["events"][0]["content"]["hello"], "bob", "{ext}");
    assert!(ext["receipts"]["rooms"][&room]["content"][&event]["m.read"][&alice.user_id].is_object(), "{ext}");
    assert_eq!(ext["typing"]["rooms"][&room]["content"]["user_ids"][0], alice.user_id, "{ext}");
    assert_eq!(ext["account_data"]["rooms"][&room][0]["type"], "m.test", "{ext}");

    // Acknowledged by the next since, the message is gone; unacknowledged, it comes again.
    let pos2 = next["pos"].as_str().unwrap().to_owned();
    let again = slide(&server, bob, Some(&pos2), 0, request(Some(&since))).await;
    assert_eq!(again["extensions"]["to_device"]["events"][0]["content"]["hello"], "bob", "{again}");
    let acked = again["extensions"]["to_device"]["next_batch"].as_str().unwrap().to_owned();
    let pos3 = again["pos"].as_str().unwrap().to_owned();
    let after = slide(&server, bob, Some(&pos3), 0, request(Some(&acked))).await;
    assert!(after["extensions"]["to_device"].get("events").is_none(), "{after}");
}

async fn put_ok(server: &TestServer, user: &TestUser, path: &str, body: Value) {
    let (status, answer) = server.put(path, user.token(), body).await;
    assert_eq!(status, StatusCode::OK, "PUT {path}: {answer}");
}

#[tokio::test]
async fn spaces_tags_and_room_type_filters_choose_the_rooms_of_a_list() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let stranger = server.register("stranger", PW).await;
    let server_name = alice.user_id.split_once(':').unwrap().1.to_owned();
    let space = server.create_room(&alice, json!({ "creation_content": { "type": "m.space" } })).await;
    let mut rooms = Vec::new();
    for name in ["in space", "unlinked", "favourite", "work"] {
        rooms.push(server.create_room(&alice, json!({ "name": name })).await);
    }
    let child = |space: &str, room: &str| format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{room}");
    put_ok(&server, &alice, &child(&space, &rooms[0]), json!({ "via": [server_name] })).await;
    // A child without `via` is a removed one.
    put_ok(&server, &alice, &child(&space, &rooms[1]), json!({ "via": [] })).await;
    // A space alice is not in names her room: not hers to filter by.
    let foreign = server.create_room(&stranger, json!({ "creation_content": { "type": "m.space" } })).await;
    put_ok(&server, &stranger, &child(&foreign, &rooms[1]), json!({ "via": [server_name] })).await;
    let tag = |room: &str, tag: &str| format!("/_matrix/client/v3/user/{}/rooms/{room}/tags/{tag}", alice.user_id);
    for (room, name) in [(&rooms[2], "m.favourite"), (&rooms[3], "m.favourite"), (&rooms[3], "u.work")] {
        put_ok(&server, &alice, &tag(room, name), json!({})).await;
    }

    let lists: serde_json::Map<String, Value> = [
        ("in_space", json!({ "spaces": [space] })),
        ("foreign_space", json!({ "spaces": [foreign] })),
        ("favourites", json!({ "tags": ["m.favourite"] })),
        ("favourites_not_work", json!({ "tags": ["m.favourite"], "not_tags": ["u.work"] })),
        ("not_favourites", json!({ "not_tags": ["m.favourite"] })),
        ("not_spaces", json!({ "not_room_types": ["m.space"] })),
        ("spaces_only", json!({ "room_types": ["m.space"] })),
    ]
    .into_iter()
    .map(|(name, filters)| (name.to_owned(), json!({ "ranges": [[0, 9]], "timeline_limit": 1, "filters": filters })))
    .collect();
    let response = slide(&server, &alice, None, 0, json!({ "conn_id": "f", "lists": lists })).await;
    let count = |name: &str| response["lists"][name]["count"].as_u64().unwrap();
    assert_eq!(count("in_space"), 1, "only the child with a via: {response}");
    assert_eq!(count("foreign_space"), 0, "{response}");
    assert_eq!(count("favourites"), 2, "{response}");
    assert_eq!(count("favourites_not_work"), 1, "not_tags wins over tags: {response}");
    assert_eq!(count("not_favourites"), 3, "the space and two untagged rooms: {response}");
    assert_eq!(count("not_spaces"), 4, "{response}");
    assert_eq!(count("spaces_only"), 1, "{response}");

    // One list at a time: the rooms each shows are the ones its filter chose.
    for (name, expected) in [("in_space", vec![&rooms[0]]), ("favourites_not_work", vec![&rooms[2]])] {
        let one = json!({ "conn_id": name, "lists": { name: lists[name].clone() } });
        let shown = room_ids(&slide(&server, &alice, None, 0, one).await);
        assert_eq!(shown.iter().collect::<Vec<_>>(), expected, "{name}");
    }
}

#[tokio::test]
async fn an_unsubscribed_room_is_sent_whole_when_subscribed_again() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let (quiet, _busy) = quiet_and_busy_rooms(&server, &alice).await;
    let window = json!({ "all": { "ranges": [[0, 0]], "timeline_limit": 1 }});
    let subscribed = json!({ "conn_id": "u", "lists": window,
        "room_subscriptions": { quiet.clone(): { "timeline_limit": 5 } } });
    let first = slide(&server, &alice, None, 0, subscribed.clone()).await;
    assert_eq!(first["rooms"][&quiet]["initial"], true, "{first}");
    let pos = first["pos"].as_str().unwrap().to_owned();
    let again = slide(&server, &alice, Some(&pos), 0, subscribed.clone()).await;
    assert!(room_ids(&again).is_empty(), "nothing new, nothing resent: {again}");

    let pos = again["pos"].as_str().unwrap().to_owned();
    let unsubscribed = json!({ "conn_id": "u", "lists": window, "unsubscribe_rooms": [quiet],
        "room_subscriptions": { quiet.clone(): { "timeline_limit": 5 } } });
    let dropped = slide(&server, &alice, Some(&pos), 0, unsubscribed).await;
    assert!(room_ids(&dropped).is_empty(), "{dropped}");
    let pos = dropped["pos"].as_str().unwrap().to_owned();
    let back = slide(&server, &alice, Some(&pos), 0, subscribed).await;
    assert_eq!(back["rooms"][&quiet]["initial"], true, "subscribed again, the room comes whole: {back}");
    assert_eq!(bodies(&back["rooms"][&quiet]), vec!["old news"], "{back}");
}
