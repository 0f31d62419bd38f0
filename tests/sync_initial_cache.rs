//! Initial syncs served from the joined-room entries an earlier one built: each answer must
//! be what a server that cached nothing answers, after every kind of change (a message, new
//! state, a redaction, a receipt, leaving a room), whether the change went through the caching
//! process or another one on the same database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::node::*;
use common::*;
use hearth::signing_key::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PW: &str = "initial-cache-test-password";

async fn initial_sync(api: &impl Api, user: &TestUser) -> Value {
    let (status, body) = api.call(Method::GET, "/_matrix/client/v3/sync", user.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn joined(body: &Value) -> &Value {
    &body["rooms"]["join"]
}

fn timeline_bodies(body: &Value, room: &str) -> Vec<String> {
    let events = joined(body)[room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
    events.iter().filter_map(|event| event["content"]["body"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_initial_syncs_match_an_uncached_one_after_every_kind_of_change_on_either_process() {
    let server = TestServer::start().await;
    let other = start_node(&server.database, SigningKey::generate().expect("key")).await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let mut rooms = Vec::new();
    for name in ["quiet", "busy", "to-leave"] {
        let room = server.create_room(&bob, json!({"preset": "public_chat", "name": name})).await;
        server.join(&alice, &room).await;
        server.send_text(&bob, &room, &format!("{name}-0"), &format!("{name} first")).await;
        rooms.push(room);
    }
    let [quiet, busy, to_leave] = [&rooms[0], &rooms[1], &rooms[2]];

    // Both processes fill their caches; asked again unchanged, they serve every room from it.
    let first = initial_sync(&server, &alice).await;
    initial_sync(&other, &alice).await;
    let again = initial_sync(&other, &alice).await;
    assert_eq!(joined(&again), joined(&first), "an unchanged initial sync is answered the same");
    assert_eq!(
        other.state.pool.cache::<hearth::testing::sync::initial_cache::InitialSyncCache>().served_entries(),
        3,
        "all three rooms came from the cache"
    );

    // Each change goes through the first process; both must show it at once.
    let message = server.send_text(&bob, busy, "busy-1", "new message").await;
    check_both(&server, &other, &alice, "a new message", |body| {
        timeline_bodies(body, busy).last().map(String::as_str) == Some("new message")
    })
    .await;
    let (status, body) = server
        .put(&format!("/_matrix/client/v3/rooms/{busy}/state/m.room.topic/"), bob.token(), json!({"topic": "fresh"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    check_both(&server, &other, &alice, "new state", |body| {
        let events = joined(body)[busy]["timeline"]["events"].as_array().cloned().unwrap_or_default();
        events.iter().any(|event| event["type"] == "m.room.topic" && event["content"]["topic"] == "fresh")
    })
    .await;
    let path = format!("/_matrix/client/v3/rooms/{busy}/redact/{message}/redaction-1");
    let (status, body) = server.put(&path, bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    check_both(&server, &other, &alice, "a redaction", |body| {
        !timeline_bodies(body, busy).contains(&"new message".to_owned())
    })
    .await;
    let last = server.send_text(&bob, quiet, "quiet-1", "read me").await;
    server.read_up_to(&alice, quiet, &last).await;
    check_both(&server, &other, &alice, "a receipt", |body| {
        joined(body)[quiet]["unread_notifications"]["notification_count"] == 0
            && joined(body)[quiet]["ephemeral"]["events"].as_array().is_some_and(|events| !events.is_empty())
    })
    .await;
    server.leave(&alice, to_leave).await;
    check_both(&server, &other, &alice, "leaving a room", |body| joined(body).get(to_leave).is_none()).await;

    // A history purge moves no stream position: the other process learns of it from the
    // purge's notification, and must stop serving what it cached of the purged messages.
    let root = server.register_admin("root", PW).await;
    let kept = server.send_text(&bob, quiet, "quiet-2", "after the purge point").await;
    initial_sync(&other, &alice).await;
    let purges_seen = || other.state.streams.notifier.history_purges();
    let before = purges_seen();
    let path = format!("/_synapse/admin/v1/purge_history/{}/{}", encode(quiet), encode(&kept));
    let (status, body) = server.post(&path, root.token(), json!({"delete_local_events": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    finished_purge(&server, &root, body["purge_id"].as_str().expect("purge_id")).await;
    for _ in 0..100 {
        if purges_seen() > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(purges_seen(), before + 1, "the other process heard of the purge");
    check_both(&server, &other, &alice, "a history purge", |body| {
        timeline_bodies(body, quiet) == ["after the purge point"]
    })
    .await;
    // Throughout, the rooms a change did not touch kept coming from the caches.
    assert!(
        other.state.pool.cache::<hearth::testing::sync::initial_cache::InitialSyncCache>().served_entries() > 3,
        "unchanged rooms were served from the cache"
    );
    other.stop().await;
}

/// Polls a history purge until it is no longer active.
async fn finished_purge(server: &TestServer, root: &TestUser, purge_id: &str) {
    for _ in 0..200 {
        let path = format!("/_synapse/admin/v1/purge_history_status/{purge_id}");
        let (status, body) = server.get(&path, root.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] != "active" {
            assert_eq!(body["status"], "complete", "{body}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the purge {purge_id} did not finish in 10 s");
}

/// Both processes' (cached) initial syncs show the change and equal an initial sync of a
/// process that cached nothing (the first one, emptied).
async fn check_both(server: &TestServer, other: &Node, user: &TestUser, change: &str, shows: impl Fn(&Value) -> bool) {
    let on_server = initial_sync(server, user).await;
    let on_other = initial_sync(other, user).await;
    server.state.pool.cache::<hearth::testing::sync::initial_cache::InitialSyncCache>().clear();
    let uncached = initial_sync(server, user).await;
    assert!(shows(&uncached), "the uncached initial sync shows {change}: {uncached}");
    assert_eq!(joined(&on_server), joined(&uncached), "the caching process shows {change}");
    assert_eq!(joined(&on_other), joined(&uncached), "the other process shows {change}");
}

#[tokio::test]
async fn members_a_cached_initial_sync_carries_count_as_sent_for_lazy_loading() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    server.send_text(&bob, &room, "one", "one").await;
    let filter = json!({"room": {"timeline": {"limit": 10}, "state": {"lazy_load_members": true}}});
    let path = format!("/_matrix/client/v3/sync?timeout=0&filter={}", encode(&filter.to_string()));
    lazy_sync(&server, &alice, &path).await;
    let again = lazy_sync(&server, &alice, &path).await;
    assert_eq!(
        server.state.pool.cache::<hearth::testing::sync::initial_cache::InitialSyncCache>().served_entries(),
        1,
        "the second initial sync came from the cache"
    );
    let members = |body: &Value, section: &str| -> Vec<String> {
        let events = joined(body)[&room][section]["events"].as_array().cloned().unwrap_or_default();
        let members = events.iter().filter(|event| event["type"] == "m.room.member");
        members.map(|event| event["state_key"].as_str().expect("state_key").to_owned()).collect()
    };
    let sent = [members(&again, "state"), members(&again, "timeline")].concat();
    assert!(sent.contains(&bob.user_id), "bob's member event came with his message: {again}");

    // Bob speaks again: the device has his member event from the cached answer, so an
    // incremental sync does not send it again.
    server.send_text(&bob, &room, "two", "two").await;
    let since = again["next_batch"].as_str().expect("next_batch");
    let next = lazy_sync(&server, &alice, &format!("{path}&since={}", encode(since))).await;
    assert_eq!(timeline_bodies(&next, &room), ["two"], "{next}");
    assert!(members(&next, "state").is_empty(), "no member event sent twice: {next}");
}

async fn lazy_sync(server: &TestServer, user: &TestUser, path: &str) -> Value {
    let (status, body) = server.get(path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// A repeated initial sync takes every room from the cache: what it costs the database does
/// not grow with the rooms, and the device's own messages keep their transaction ids (which the
/// cache keeps for that device, and no other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_initial_sync_costs_a_few_statements_whatever_the_rooms() {
    const ROOMS: usize = 12;
    let server = TestServer::start().await;
    statements::enable(&server).await;
    let alice = server.register("alice", PW).await;
    let mut rooms = Vec::new();
    for n in 0..ROOMS {
        let room = server.create_room(&alice, json!({"preset": "private_chat"})).await;
        server.send_text(&alice, &room, &format!("txn-{n}"), "mine").await;
        rooms.push(room);
    }
    let first = initial_sync(&server, &alice).await;
    // What the sends left running after their answers (push, wake-ups) settles first.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    statements::reset(&server).await;
    let again = initial_sync(&server, &alice).await;
    let (total, listing) = statements::listing(&statements::statements(&server).await);
    println!("a repeated initial sync of {ROOMS} rooms: {total} statements\n{listing}");
    assert_eq!(joined(&again), joined(&first), "the cached answer is the built one");
    assert_eq!(
        server.state.pool.cache::<hearth::testing::sync::initial_cache::InitialSyncCache>().served_entries(),
        ROOMS as u64,
        "every room came from the cache"
    );
    for (n, room) in rooms.iter().enumerate() {
        let events = joined(&again)[room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
        let mine = events.iter().find(|event| event["content"]["body"] == "mine").expect("the message");
        assert_eq!(mine["unsigned"]["transaction_id"], format!("txn-{n}"), "{mine}");
    }
    assert!(total < ROOMS as i64, "{total} statements for {ROOMS} cached rooms:\n{listing}");

    // Another device of the user gets the same rooms without the first device's ids.
    let other_device = server.login("alice", PW).await;
    let elsewhere = initial_sync(&server, &other_device).await;
    let events = joined(&elsewhere)[&rooms[0]]["timeline"]["events"].as_array().cloned().unwrap_or_default();
    let mine = events.iter().find(|event| event["content"]["body"] == "mine").expect("the message");
    assert!(mine["unsigned"].get("transaction_id").is_none(), "{mine}");
}

/// The first initial sync of a user in many rooms (nothing cached): no statement runs once
/// per room, and every room comes whole (timeline, state, summary, unread counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_initial_sync_runs_no_statement_per_room() {
    const ROOMS: usize = 12;
    let server = TestServer::start().await;
    statements::enable(&server).await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let mut rooms = Vec::new();
    for n in 0..ROOMS {
        let room = server.create_room(&bob, json!({"preset": "public_chat", "name": format!("room {n}")})).await;
        if n % 3 == 0 {
            // Some rooms where what a member sees depends on their membership at each event.
            let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.history_visibility/");
            let (status, body) = server.put(&path, bob.token(), json!({"history_visibility": "joined"})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        server.join(&alice, &room).await;
        server.send_text(&bob, &room, &format!("txn-{n}"), &format!("hello {n}")).await;
        rooms.push(room);
    }
    // What the sends left running after their answers (push, wake-ups) settles first.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    statements::reset(&server).await;
    let first = initial_sync(&server, &alice).await;
    let counted = statements::statements(&server).await;
    let (total, listing) = statements::listing(&counted);
    println!("a first initial sync of {ROOMS} rooms: {total} statements\n{listing}");
    for (n, room) in rooms.iter().enumerate() {
        let entry = &joined(&first)[room];
        assert_eq!(timeline_bodies(&first, room).last(), Some(&format!("hello {n}")), "{entry}");
        let state = entry["state"]["events"].as_array().cloned().unwrap_or_default();
        let timeline = entry["timeline"]["events"].as_array().cloned().unwrap_or_default();
        let names = state.iter().chain(&timeline).filter(|event| event["type"] == "m.room.name");
        assert_eq!(
            names.map(|event| event["content"]["name"].clone()).collect::<Vec<_>>(),
            [json!(format!("room {n}"))]
        );
        assert!(state.iter().chain(&timeline).any(|event| event["type"] == "m.room.create"), "{entry}");
        assert_eq!(entry["summary"]["m.joined_member_count"], 2, "{entry}");
        assert_eq!(entry["unread_notifications"]["notification_count"], 1, "{entry}");
    }
    let per_room: Vec<&(i64, String)> = counted.iter().filter(|(calls, _)| *calls >= ROOMS as i64 / 2).collect();
    assert!(per_room.is_empty(), "statements run per room: {per_room:?}\n{listing}");
}
