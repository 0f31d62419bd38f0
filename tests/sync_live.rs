//! The sync issue's finish line, over plain `/sync` long-polling: a user on two devices and a
//! second user chat in real time — messages, typing, read receipts, presence and unread
//! counts reach every device while each keeps a long-poll open, and each device receives each
//! message exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

const PW: &str = "live-test-password";
/// How long a device may take to see something before the test fails (a correct server
/// delivers in milliseconds; this only turns a hang into a failure).
const PATIENCE: Duration = Duration::from_secs(20);

/// A device that long-polls `/sync` in the background and hands over every response.
struct Device {
    name: &'static str,
    responses: UnboundedReceiver<Value>,
    seen: Vec<Value>,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    /// Starts the long-poll loop after an initial sync, so only what happens next arrives.
    async fn start(server: &TestServer, user: &TestUser, name: &'static str) -> Device {
        let (status, initial) = server.get("/_matrix/client/v3/sync", user.token()).await;
        assert_eq!(status, StatusCode::OK, "{initial}");
        let mut since = initial["next_batch"].as_str().expect("next_batch").to_owned();
        let (sender, responses) = unbounded_channel();
        let http = server.http.clone();
        let base = server.base_url.clone();
        let token = user.access_token.clone();
        let task = tokio::spawn(async move {
            loop {
                let url = format!("{base}/_matrix/client/v3/sync?since={since}&timeout=30000");
                let (status, body) = send_json(&http, Method::GET, &url, Some(&token), None).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                since = body["next_batch"].as_str().expect("next_batch").to_owned();
                if sender.send(body).is_err() {
                    return;
                }
            }
        });
        Device { name, responses, seen: Vec::new(), task }
    }

    /// Waits until some response (already seen or arriving) satisfies `found`.
    async fn sees(&mut self, what: &str, found: impl Fn(&Value) -> bool) {
        if self.seen.iter().any(&found) {
            return;
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.responses.recv()).await;
            let response = match next {
                Ok(Some(response)) => response,
                Ok(None) => panic!("{}: the sync loop stopped before {what}", self.name),
                Err(_) => panic!("{}: {what} did not arrive within {PATIENCE:?}; got {:#?}", self.name, self.seen),
            };
            let hit = found(&response);
            self.seen.push(response);
            if hit {
                return;
            }
        }
    }

    /// The bodies of every message delivered to this device in `room`, in delivery order.
    fn messages(&self, room: &str) -> Vec<String> {
        self.seen
            .iter()
            .flat_map(|response| timeline(response, room))
            .filter(|event| event["type"] == "m.room.message")
            .filter_map(|event| event["content"]["body"].as_str().map(str::to_owned))
            .collect()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn timeline(response: &Value, room: &str) -> Vec<Value> {
    response["rooms"]["join"][room]["timeline"]["events"].as_array().cloned().unwrap_or_default()
}

fn ephemeral(response: &Value, room: &str, kind: &str) -> Vec<Value> {
    let events = response["rooms"]["join"][room]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
    events.into_iter().filter(|event| event["type"] == kind).collect()
}

fn has_message(response: &Value, room: &str, body: &str) -> bool {
    timeline(response, room).iter().any(|event| event["content"]["body"] == body)
}

fn unread_count(response: &Value, room: &str) -> Option<i64> {
    response["rooms"]["join"][room]["unread_notifications"]["notification_count"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_on_two_devices_and_a_friend_chat_live_with_typing_receipts_presence_and_counts() {
    let server = TestServer::start().await;
    let alice_phone = server.register("alice", PW).await;
    let alice_laptop = server.login("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let (status, created) = server
        .post(
            "/_matrix/client/v3/createRoom",
            alice_phone.token(),
            json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [bob.user_id]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let room = created["room_id"].as_str().expect("room_id").to_owned();
    let (status, joined) = server.post(&format!("/_matrix/client/v3/join/{room}"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{joined}");

    let mut phone = Device::start(&server, &alice_phone, "alice's phone").await;
    let mut laptop = Device::start(&server, &alice_laptop, "alice's laptop").await;
    let mut bobs = Device::start(&server, &bob, "bob's device").await;

    // Bob writes: both of Alice's devices get it, with one unread notification (a DM).
    let hello = server.send_text(&bob, &room, "b1", "hello alice").await;
    for device in [&mut phone, &mut laptop] {
        device
            .sees("bob's message with an unread count of 1", |r| {
                has_message(r, &room, "hello alice") && unread_count(r, &room) == Some(1)
            })
            .await;
    }

    // Bob types: both of Alice's devices see it.
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/{}", bob.user_id),
            bob.token(),
            json!({"typing": true, "timeout": 10_000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bob_typing = |r: &Value| {
        ephemeral(r, &room, "m.typing")
            .iter()
            .any(|e| e["content"]["user_ids"].as_array().is_some_and(|ids| ids.contains(&json!(bob.user_id))))
    };
    phone.sees("bob typing", bob_typing).await;
    laptop.sees("bob typing", bob_typing).await;

    // Alice reads on her phone: Bob sees the receipt, and her laptop's count drops to 0.
    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{hello}"), alice_phone.token(), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    bobs.sees("alice's read receipt", |r| {
        ephemeral(r, &room, "m.receipt")
            .iter()
            .any(|e| e["content"][&hello]["m.read"][&alice_phone.user_id]["ts"].is_u64())
    })
    .await;
    laptop.sees("the count cleared by the phone's receipt", |r| unread_count(r, &room) == Some(0)).await;

    // Alice goes online: Bob, who shares the room, sees it.
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/presence/{}/status", alice_phone.user_id),
            alice_phone.token(),
            json!({"presence": "online", "status_msg": "on my phone"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    bobs.sees("alice online", |r| {
        r["presence"]["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| {
                e["sender"] == alice_phone.user_id
                    && e["content"]["presence"] == "online"
                    && e["content"]["status_msg"] == "on my phone"
            })
        })
    })
    .await;

    // Alice answers from her laptop: Bob and her phone get it.
    server.send_text(&alice_laptop, &room, "a1", "hi bob, from my laptop").await;
    bobs.sees("alice's answer", |r| has_message(r, &room, "hi bob, from my laptop")).await;
    phone.sees("her own answer from the laptop", |r| has_message(r, &room, "hi bob, from my laptop")).await;

    // A burst: every device receives each message once, in order.
    let burst: Vec<String> = (0..10).map(|i| format!("burst {i}")).collect();
    for (i, body) in burst.iter().enumerate() {
        let sender = if i % 2 == 0 { &bob } else { &alice_phone };
        server.send_text(sender, &room, &format!("burst{i}"), body).await;
    }
    let last = burst.last().expect("burst").clone();
    let mut expected = vec!["hello alice".to_owned(), "hi bob, from my laptop".to_owned()];
    expected.extend(burst.iter().cloned());
    for device in [&mut phone, &mut laptop] {
        device.sees("the whole burst", |r| has_message(r, &room, &last)).await;
        assert_eq!(device.messages(&room), expected, "{}: each message once, in order", device.name);
    }
    bobs.sees("the whole burst", |r| has_message(r, &room, &last)).await;
    assert_eq!(bobs.messages(&room), expected, "bob's device: each message once, in order, his own included");
}

/// Many syncs at once must all be answered: no part of a sync may hold a database connection
/// while waiting for another, or a burst larger than the pool (10 in tests) starves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_syncs_larger_than_the_pool_is_answered() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    for i in 0..3 {
        let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
        server.join(&bob, &room).await;
        server.send_text(&bob, &room, &format!("t{i}"), "hello").await;
    }
    let syncs: Vec<_> = (0..40)
        .map(|_| {
            let http = server.http.clone();
            let url = server.url("/_matrix/client/v3/sync?timeout=0");
            let token = alice.access_token.clone();
            tokio::spawn(async move { send_json(&http, Method::GET, &url, Some(&token), None).await })
        })
        .collect();
    for sync in syncs {
        let (status, body) = tokio::time::timeout(PATIENCE, sync).await.expect("answered in time").expect("task");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["rooms"]["join"].as_object().map(|rooms| rooms.len()), Some(3), "{body}");
    }
}
