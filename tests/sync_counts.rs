//! `summary` and `unread_notifications` in `/sync`, through real HTTP: counts follow the
//! spec's default push rules (every message of another user notifies, in a DM or a group;
//! notices do not; `m.mentions` of the user, and of the room by someone with the power to,
//! highlight) and a read receipt on the latest event clears them; heroes name unnamed rooms
//! only. (Users' own rules: tests/notifications.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "counts-test-password";

async fn sync(server: &TestServer, user: &TestUser, since: Option<&str>) -> Value {
    let path = match since {
        Some(since) => format!("/_matrix/client/v3/sync?since={since}&timeout=0"),
        None => "/_matrix/client/v3/sync".to_owned(),
    };
    let (status, body) = server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn next_batch(body: &Value) -> String {
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

/// `(notification_count, highlight_count)` of a joined room in a sync response.
#[track_caller]
fn counts(body: &Value, room: &str) -> (i64, i64) {
    let unread = &body["rooms"]["join"][room]["unread_notifications"];
    let notifications = unread["notification_count"].as_i64();
    let highlights = unread["highlight_count"].as_i64();
    match (notifications, highlights) {
        (Some(n), Some(h)) => (n, h),
        _ => panic!("no unread_notifications for {room}: {body}"),
    }
}

#[tokio::test]
async fn a_dm_counts_messages_highlights_a_mention_and_a_receipt_clears_both() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", alice.user_id),
            alice.token(),
            json!({"displayname": "Wonder"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let room = server
        .create_room(&alice, json!({"preset": "trusted_private_chat", "invite": [bob.user_id], "is_direct": true}))
        .await;
    server.join(&bob, &room).await;
    server.send_message(&alice, &room, "own", text("my own words never count")).await;
    for i in 0..3 {
        server.send_message(&bob, &room, &format!("plain{i}"), text(&format!("message {i}"))).await;
    }

    let first = sync(&server, &alice, None).await;
    assert_eq!(counts(&first, &room), (3, 0), "three messages from bob notify in a DM");

    // Since MSC4210 (the spec's default rules as ruma 0.17 has them) only `m.mentions`
    // mentions: a display name in the body is a plain message.
    server.send_message(&bob, &room, "legacy", text("are you there, wonder?")).await;
    let latest = server
        .send_message(
            &bob,
            &room,
            "mention",
            json!({"msgtype": "m.text", "body": "Wonder?", "m.mentions": {"user_ids": [alice.user_id.clone()]}}),
        )
        .await;
    let second = sync(&server, &alice, Some(&next_batch(&first))).await;
    assert_eq!(counts(&second, &room), (5, 1), "an m.mentions mention highlights, a display name in the body not");

    server.read_up_to(&alice, &room, &latest).await;
    let third = sync(&server, &alice, Some(&next_batch(&second))).await;
    assert_eq!(counts(&third, &room), (0, 0), "a receipt on the latest event clears both counts");
    let again = sync(&server, &alice, None).await;
    assert_eq!(counts(&again, &room), (0, 0));

    // Bob's own view: alice's message came after his join and he has read nothing.
    let bobs = sync(&server, &bob, None).await;
    assert_eq!(counts(&bobs, &room), (1, 0));
}

#[tokio::test]
async fn in_a_group_messages_notify_notices_do_not_and_only_a_moderators_room_mention_highlights() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = server
        .create_room(
            &alice,
            json!({"preset": "public_chat", "power_level_content_override": {"users": {bob.user_id.clone(): 50}}}),
        )
        .await;
    server.join(&bob, &room).await;
    server.join(&carol, &room).await;

    // `.m.rule.message` notifies for every message, whatever the room's size.
    server.send_message(&carol, &room, "plain", text("hello all")).await;
    server.send_message(&carol, &room, "notice", json!({"msgtype": "m.notice", "body": "a bot speaks"})).await;
    let first = sync(&server, &alice, None).await;
    assert_eq!(counts(&first, &room), (1, 0), "a plain message notifies, a notice does not");

    // Carol (power 0) may not notify the room: her @room is a plain message.
    server.send_message(&carol, &room, "carol-room", text("@room listen")).await;
    let second = sync(&server, &alice, Some(&next_batch(&first))).await;
    assert_eq!(counts(&second, &room), (2, 0));

    // Bob (moderator, 50 = the default `notifications.room`) may, with `m.mentions.room` (since
    // MSC4210 an "@room" in the body is a plain message, even his).
    server.send_message(&bob, &room, "bob-legacy", text("@room listen to me")).await;
    server
        .send_message(
            &bob,
            &room,
            "bob-room",
            json!({"msgtype": "m.text", "body": "listen", "m.mentions": {"room": true}}),
        )
        .await;
    let third = sync(&server, &alice, Some(&next_batch(&second))).await;
    assert_eq!(counts(&third, &room), (4, 1));

    // Carol's `m.mentions.room` does not highlight; `m.mentions.user_ids` does for the user named.
    server
        .send_message(
            &carol,
            &room,
            "carol-mentions",
            json!({"msgtype": "m.text", "body": "hey", "m.mentions": {"room": true}}),
        )
        .await;
    let latest = server
        .send_message(
            &carol,
            &room,
            "carol-mention",
            json!({"msgtype": "m.text", "body": "psst", "m.mentions": {"user_ids": [alice.user_id.clone()]}}),
        )
        .await;
    let fourth = sync(&server, &alice, Some(&next_batch(&third))).await;
    assert_eq!(counts(&fourth, &room), (6, 2));

    server.read_up_to(&alice, &room, &latest).await;
    let fifth = sync(&server, &alice, Some(&next_batch(&fourth))).await;
    assert_eq!(counts(&fifth, &room), (0, 0));
}

#[tokio::test]
async fn the_summary_lists_heroes_of_an_unnamed_room_and_drops_them_once_it_is_named() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), alice.token(), json!({"user_id": carol.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let first = sync(&server, &alice, None).await;
    let summary = &first["rooms"]["join"][&room]["summary"];
    assert_eq!(summary["m.heroes"], json!([bob.user_id, carol.user_id]), "{summary}");
    assert_eq!(summary["m.joined_member_count"], 2);
    assert_eq!(summary["m.invited_member_count"], 1);

    // Nothing about membership changed: the summary is left out.
    server.send_message(&bob, &room, "chat", text("hi")).await;
    let second = sync(&server, &alice, Some(&next_batch(&first))).await;
    assert!(second["rooms"]["join"][&room].get("summary").is_none(), "{second}");

    // Carol joins: the counts change.
    server.join(&carol, &room).await;
    let third = sync(&server, &alice, Some(&next_batch(&second))).await;
    let summary = &third["rooms"]["join"][&room]["summary"];
    assert_eq!(summary["m.joined_member_count"], 3, "{third}");
    assert_eq!(summary["m.invited_member_count"], 0);

    let (status, body) = server
        .put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"), alice.token(), json!({"name": "Tea"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fourth = sync(&server, &alice, Some(&next_batch(&third))).await;
    let summary = &fourth["rooms"]["join"][&room]["summary"];
    assert!(summary.get("m.heroes").is_none(), "a named room has no heroes: {fourth}");
    assert_eq!(summary["m.joined_member_count"], 3);
    let initial = sync(&server, &alice, None).await;
    let summary = &initial["rooms"]["join"][&room]["summary"];
    assert!(summary.get("m.heroes").is_none(), "{initial}");
    assert_eq!(summary["m.joined_member_count"], 3);
}

#[tokio::test]
async fn an_empty_name_still_needs_heroes_and_a_canonical_alias_does_not() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let blank = server.create_room(&alice, json!({"preset": "public_chat", "name": ""})).await;
    let aliased = server.create_room(&alice, json!({"preset": "public_chat", "room_alias_name": "tea-room"})).await;
    for room in [&blank, &aliased] {
        server.join(&bob, room).await;
    }
    let initial = sync(&server, &alice, None).await;
    let blank_summary = &initial["rooms"]["join"][&blank]["summary"];
    assert_eq!(blank_summary["m.heroes"], json!([bob.user_id]), "an empty name names nothing: {blank_summary}");
    let aliased_summary = &initial["rooms"]["join"][&aliased]["summary"];
    assert!(aliased_summary.get("m.heroes").is_none(), "the alias names the room: {aliased_summary}");
    assert_eq!(aliased_summary["m.joined_member_count"], 2, "{aliased_summary}");
}

/// A sync with a filter, from `since`.
async fn sync_filtered(server: &TestServer, user: &TestUser, since: &str, filter: &Value) -> Value {
    let filter: String = filter
        .to_string()
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let (status, body) =
        server.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=0&filter={filter}"), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// `{thread root: (notification_count, highlight_count)}` of a joined room in a sync response.
#[track_caller]
fn thread_counts(body: &Value, room: &str) -> std::collections::BTreeMap<String, (i64, i64)> {
    let threads = body["rooms"]["join"][room]["unread_thread_notifications"]
        .as_object()
        .unwrap_or_else(|| panic!("no unread_thread_notifications for {room}: {body}"));
    threads
        .iter()
        .map(|(root, count)| {
            let figure = |name: &str| count[name].as_i64().unwrap_or_else(|| panic!("{name} in {count}"));
            (root.clone(), (figure("notification_count"), figure("highlight_count")))
        })
        .collect()
}

async fn threaded_receipt(server: &TestServer, user: &TestUser, room: &str, event_id: &str, thread: &str) {
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}"),
            user.token(),
            json!({"thread_id": thread}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn thread_counts_are_separate_when_asked_for_and_each_threads_receipt_clears_only_its_thread() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    server.join(&carol, &room).await;
    let since = next_batch(&sync(&server, &alice, None).await);

    server.send_message(&bob, &room, "m1", text("in the main timeline")).await;
    let root = server.send_message(&bob, &room, "root", text("a thread starts here")).await;
    let in_thread = |body: &str| json!({"msgtype": "m.text", "body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root}});
    server.send_message(&bob, &room, "t1", in_thread("first reply")).await;
    let t2 = server.send_message(&carol, &room, "t2", in_thread("second reply")).await;
    let mut mention = in_thread("alice, look");
    mention["m.mentions"] = json!({"user_ids": [alice.user_id]});
    let t3 = server.send_message(&bob, &room, "t3", mention).await;

    // Without the filter flag, one count for the whole room.
    assert_eq!(counts(&sync(&server, &alice, Some(&since)).await, &room), (5, 1));
    let threaded = json!({"room": {"timeline": {"unread_thread_notifications": true}}});
    let body = sync_filtered(&server, &alice, &since, &threaded).await;
    assert_eq!(counts(&body, &room), (2, 0), "the main timeline holds m1 and the root");
    assert_eq!(thread_counts(&body, &room), [(root.clone(), (3, 1))].into_iter().collect());

    // A receipt in the thread reads the thread up to there, and nothing of the main timeline.
    threaded_receipt(&server, &alice, &room, &t2, &root).await;
    let body = sync_filtered(&server, &alice, &since, &threaded).await;
    assert_eq!(counts(&body, &room), (2, 0));
    assert_eq!(thread_counts(&body, &room), [(root.clone(), (1, 1))].into_iter().collect());

    // A main-timeline receipt reads the main timeline only.
    threaded_receipt(&server, &alice, &room, &root, "main").await;
    let body = sync_filtered(&server, &alice, &since, &threaded).await;
    assert_eq!(counts(&body, &room), (0, 0));
    assert_eq!(thread_counts(&body, &room), [(root.clone(), (1, 1))].into_iter().collect());
    assert_eq!(counts(&sync(&server, &alice, Some(&since)).await, &room), (1, 1), "without the flag: the sum");

    // An unthreaded receipt reads everything before it, threads included.
    server.read_up_to(&alice, &room, &t3).await;
    let body = sync_filtered(&server, &alice, &since, &threaded).await;
    assert_eq!(counts(&body, &room), (0, 0));
    assert!(thread_counts(&body, &room).is_empty(), "{body}");
}
