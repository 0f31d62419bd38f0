//! What an incremental `/sync` shows of rooms whose membership changed in its window: a room
//! joined since the last sync comes like on an initial sync (recent history, `limited`,
//! `prev_batch`), and a member who left and came back learns of the members who joined
//! while they were away even where history visibility hides those joins from them. A room
//! created while a sync samples the stream comes whole in that sync or the next, never not
//! at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "sync-joins-test-pw";

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

fn events<'a>(room: &'a Value, section: &str) -> &'a Vec<Value> {
    room[section]["events"].as_array().unwrap_or_else(|| panic!("{section}: {room}"))
}

#[tokio::test]
async fn a_room_joined_since_the_last_sync_comes_with_recent_history() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat", "name": "History"})).await;
    for i in 0..15 {
        server.send_text(&alice, &room, &format!("t{i}"), &format!("m{i}")).await;
    }
    let since = next_batch(&sync(&server, &bob, None).await);
    server.join(&bob, &room).await;

    let body = sync(&server, &bob, Some(&since)).await;
    let entry = &body["rooms"]["join"][&room];
    let timeline = events(entry, "timeline");
    assert_eq!(timeline.len(), 10, "the default limit's worth of history, as on an initial sync: {entry}");
    assert_eq!(entry["timeline"]["limited"], true, "there is more before: {entry}");
    assert!(entry["timeline"]["prev_batch"].is_string());
    let last = timeline.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["state_key"].as_str()),
        (Some("m.room.member"), Some(bob.user_id.as_str()))
    );
    assert_eq!(timeline[timeline.len() - 2]["content"]["body"], "m14", "what was said before bob came (shared)");
    // The state before that history: the room as it was.
    let state = events(entry, "state");
    assert!(state.iter().any(|event| event["type"] == "m.room.create"), "{state:?}");
    assert!(state.iter().any(|event| event["type"] == "m.room.name"), "{state:?}");
    // Paging back from prev_batch continues just before the timeline.
    let prev_batch = entry["timeline"]["prev_batch"].as_str().unwrap();
    let (status, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1&from={prev_batch}"), bob.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["chunk"][0]["content"]["body"], "m5");
}

#[tokio::test]
async fn a_member_back_in_a_joined_visibility_room_learns_who_joined_meanwhile() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let visibility =
        json!([{"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}]);
    let room = server.create_room(&alice, json!({"preset": "public_chat", "initial_state": visibility})).await;
    server.join(&bob, &room).await;
    let since = next_batch(&sync(&server, &bob, None).await);

    // While bob is away carol joins; bob may not see that event, but he is back before the sync.
    server.leave(&bob, &room).await;
    server.join(&carol, &room).await;
    server.send_text(&carol, &room, "t1", "hello, who is here?").await;
    server.join(&bob, &room).await;

    let body = sync(&server, &bob, Some(&since)).await;
    let entry = &body["rooms"]["join"][&room];
    let seen: Vec<&Value> = events(entry, "state").iter().chain(events(entry, "timeline")).collect();
    let carols = seen.iter().find(|event| event["type"] == "m.room.member" && event["state_key"] == carol.user_id);
    assert_eq!(carols.map(|event| event["content"]["membership"].clone()), Some(json!("join")), "{entry}");
    // What bob could not see stays unseen: carol's message sent while he was away.
    assert!(seen.iter().all(|event| event["content"]["body"] != "hello, who is here?"), "{entry}");
    // And the member list the client builds from the sync matches the room's.
    let (status, members) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{members}");
    assert!(members["joined"].get(&carol.user_id).is_some(), "{members}");
}

/// The event types of `room` in a sync response (state and timeline).
fn room_event_types(body: &Value, room: &str) -> Vec<String> {
    let room = &body["rooms"]["join"][room];
    let state = room["state"]["events"].as_array().into_iter().flatten();
    let timeline = room["timeline"]["events"].as_array().into_iter().flatten();
    state.chain(timeline).filter_map(|event| event["type"].as_str().map(str::to_owned)).collect()
}

/// A sync that samples the stream while the user's new room commits either has the room or
/// leaves it to the next sync: the room's events sit at or below the token it answers with,
/// so a sync that read the user's rooms just before the commit and the stream just after it
/// must not answer that token without the room (it did: the room was never shown). Raced
/// many times, initial syncs and first incremental ones (whose rooms are read, not known).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_created_while_a_sync_samples_the_stream_is_never_skipped() {
    let server = TestServer::start().await;
    let mut raced = 0;
    for i in 0..30_u64 {
        // A new user each time: their first incremental sync reads their rooms afresh.
        let user = server.register(&format!("racer{i}"), PW).await;
        let since = match i % 2 {
            0 => None,
            _ => Some(next_batch(&sync(&server, &user, None).await)),
        };
        let (room, racing) = tokio::join!(
            server.create_room(&user, json!({"preset": "private_chat", "name": format!("race {i}")})),
            async {
                // Spread over the creation's commit, so some syncs sample across it.
                tokio::time::sleep(std::time::Duration::from_micros(i * 400)).await;
                sync(&server, &user, since.as_deref()).await
            }
        );
        if room_event_types(&racing, &room).iter().any(|kind| kind == "m.room.create") {
            continue;
        }
        raced += 1;
        let next = sync(&server, &user, Some(&next_batch(&racing))).await;
        let types = room_event_types(&next, &room);
        assert!(types.iter().any(|kind| kind == "m.room.create"), "room {i} was skipped: the next sync had {types:?}");
    }
    assert!(raced > 0, "no sync answered before the room's creation: the race was never run");
}
