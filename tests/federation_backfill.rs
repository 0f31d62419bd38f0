//! Backfill between two Hearth servers (issue #16): a user of B joins a room of A that has
//! history from before B took part, pages `/messages` back to the room's creation and sees
//! every event once, in order — the history fetched from A once, kept, never shown to `/sync`
//! as new — and when A is down, paging serves what B holds instead of failing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;

use common::federation::FederatedPair;
use common::{TestServer, TestUser, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Instant;

const MESSAGES: usize = 60;
/// Small pages, so paging crosses several backfill rounds.
const PAGE: usize = 10;

/// Pages `room`'s history backwards from the newest event until the server says it ends;
/// returns every event served, newest first.
async fn page_back_to_the_start(server: &TestServer, user: &TestUser, room: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit={PAGE}", encode(room));
        if let Some(token) = &from {
            path.push_str(&format!("&from={}", encode(token)));
        }
        let (status, page) = server.get(&path, user.token()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        events.extend(page["chunk"].as_array().unwrap().iter().cloned());
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => return events,
        }
    }
    panic!("paging did not end after 100 pages");
}

/// The bodies of the messages among `events`, edits left out.
fn bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|event| event["content"]["m.relates_to"].is_null())
        .filter_map(|event| event["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|event| event["event_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_user_of_b_pages_back_through_history_of_a_room_of_a_fetched_once() {
    let FederatedPair { a, b, ca: _ca } = FederatedPair::start().await;
    let alice = a.server.register("alice", "alice's password").await;
    let bob = b.server.register("bob", "bob's password").await;
    let room = a.server.create_room(&alice, json!({"preset": "public_chat", "name": "Old times"})).await;
    let mut expected = Vec::new();
    let mut message_ids = Vec::new();
    for n in 0..MESSAGES {
        let text = format!("message {n}");
        message_ids.push(a.server.send_text(&alice, &room, &format!("m{n}"), &text).await);
        expected.push(text);
        if n == MESSAGES / 2 {
            let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
            let (status, body) = a.server.put(&path, alice.token(), json!({"topic": "halfway"})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    let edit = json!({"msgtype": "m.text", "body": "* message 5, edited",
        "m.new_content": {"msgtype": "m.text", "body": "message 5, edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": &message_ids[5]}});
    let edit_id = a.server.send_message(&alice, &room, "edit", edit).await;
    let oops = a.server.send_text(&alice, &room, "oops", "sent by mistake").await;
    let path = format!("/_matrix/client/v3/rooms/{room}/redact/{oops}/r1");
    let (status, body) = a.server.put(&path, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A second room, joined by B but never paged before A goes away.
    let quiet = a.server.create_room(&alice, json!({"preset": "public_chat"})).await;
    a.server.send_text(&alice, &quiet, "q1", "before bob").await;

    for joined in [&room, &quiet] {
        let join = format!("/_matrix/client/v3/join/{}?via={}", encode(joined), encode(a.name().as_str()));
        let (status, body) = b.server.post(&join, bob.token(), json!({})).await;
        assert_eq!(status, StatusCode::OK, "bob joins via A: {body}");
    }
    let (status, sync) = b.server.get("/_matrix/client/v3/sync", bob.token()).await;
    assert_eq!(status, StatusCode::OK);
    let since = sync["next_batch"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let history = page_back_to_the_start(&b.server, &bob, &room).await;
    let took = started.elapsed();
    println!("backfilled {} events of A's room in {} ms (pages of {PAGE})", history.len(), took.as_millis());

    // Every message once, oldest first; the room's creation ends the history.
    let mut oldest_first = history.clone();
    oldest_first.reverse();
    assert_eq!(bodies(&oldest_first), expected, "bob sees every message once, in order");
    assert_eq!(oldest_first[0]["type"], "m.room.create", "history ends with the room's creation");
    let mut unique = ids(&history);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), history.len(), "no event is served twice");
    // The topic change sits where it was made, and the redacted message is served redacted.
    let topic = oldest_first.iter().position(|event| event["type"] == "m.room.topic").expect("topic change");
    assert_eq!(oldest_first[topic]["content"]["topic"], "halfway");
    assert_eq!(oldest_first[topic - 1]["content"]["body"], format!("message {}", MESSAGES / 2));
    let redacted = history.iter().find(|event| event["event_id"] == oops.as_str()).expect("the redacted message");
    assert_eq!(redacted["content"], json!({}), "{redacted}");
    assert!(history.iter().any(|event| event["type"] == "m.room.redaction"));
    // The edit is backfilled as a relation of the (backfilled) message it edits.
    let path = format!("/_matrix/client/v1/rooms/{}/relations/{}/m.replace", encode(&room), message_ids[5]);
    let (status, relations) = b.server.get(&path, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{relations}");
    assert_eq!(ids(relations["chunk"].as_array().unwrap()), vec![edit_id.clone()], "{relations}");

    // History is not news: bob's sync since his join shows none of it.
    let path = format!("/_matrix/client/v3/sync?since={}&timeout=0", encode(&since));
    let (status, sync) = b.server.get(&path, bob.token()).await;
    assert_eq!(status, StatusCode::OK);
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
    assert!(bodies(&timeline).is_empty(), "backfilled messages came down /sync: {timeline:?}");

    // B keeps what it fetched: with A gone, paging again gives the same history.
    let backfilled = b.server.count("SELECT count(*) FROM events WHERE stream_position < 0").await;
    assert!(backfilled >= MESSAGES as i64, "{backfilled} events backfilled");
    let _stopped = a.stop().await;
    let again = page_back_to_the_start(&b.server, &bob, &room).await;
    assert_eq!(ids(&again), ids(&history), "the second paging serves the same events from B");
    assert_eq!(b.server.count("SELECT count(*) FROM events WHERE stream_position < 0").await, backfilled);

    // A room whose history is still on A: paging serves what B holds, no error.
    let local = page_back_to_the_start(&b.server, &bob, &quiet).await;
    assert!(!local.is_empty(), "bob's own join at least");
    assert!(!bodies(&local).contains(&"before bob".to_owned()), "nothing came from the stopped A");
}

/// A user of B invited to a room of A, who joins only after the inviter has written to them:
/// what was sent in between hangs off the invitation, which B holds already (it showed the
/// invitation to the user), and the invitation takes its place in the history with it.
#[tokio::test]
async fn what_was_sent_between_an_invitation_and_the_join_is_paged_through_once() {
    let FederatedPair { a, b, ca: _ca } = FederatedPair::start().await;
    let alice = a.server.register("alice", "alice's password").await;
    let bob = b.server.register("bob", "bob's password").await;
    let room = a.server.create_room(&alice, json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, sync) = b.server.get("/_matrix/client/v3/sync?timeout=0", bob.token()).await;
        if sync["rooms"]["invite"].get(&room).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "bob was never invited: {sync}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut expected = Vec::new();
    for n in 0..3 {
        let text = format!("while invited {n}");
        a.server.send_text(&alice, &room, &format!("w{n}"), &text).await;
        expected.push(text);
    }
    let (status, body) =
        b.server.post(&format!("/_matrix/client/v3/join/{}", encode(&room)), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "bob accepts: {body}");

    let mut oldest_first = page_back_to_the_start(&b.server, &bob, &room).await;
    oldest_first.reverse();
    assert_eq!(bodies(&oldest_first), expected, "every message sent while bob was invited, once, in order");
    let kinds: Vec<(String, String)> = oldest_first
        .iter()
        .filter(|event| event["type"] == "m.room.member" && event["state_key"] == bob.user_id)
        .map(|event| (event["content"]["membership"].as_str().unwrap().to_owned(), event["event_id"].to_string()))
        .collect();
    let memberships: Vec<&str> = kinds.iter().map(|(membership, _)| membership.as_str()).collect();
    assert_eq!(memberships, ["invite", "join"], "bob's invitation, then his join");
    let invite = oldest_first.iter().position(|event| event["content"]["membership"] == "invite").unwrap();
    let first = oldest_first.iter().position(|event| event["content"]["body"] == expected[0].as_str()).unwrap();
    assert!(invite < first, "the invitation comes before what was sent after it");
    assert_eq!(oldest_first[0]["type"], "m.room.create");
    let mut unique = ids(&oldest_first);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), oldest_first.len(), "no event is served twice");
}
