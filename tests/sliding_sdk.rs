//! Sliding sync (MSC4186) with the real `matrix-sdk` client's `SlidingSync` and
//! `matrix-sdk-ui`'s `RoomListService` (what Element X's room list is): the room list arrives
//! in recency order, a new message moves its room to the top, unread counts match, a room
//! subscription brings its timeline, and an encrypted conversation works through the `e2ee`
//! and `to_device` extensions alone (no `/sync` at all).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::sdk_support::{encrypted_room, eventually, expect_message, login_sliding, messages};
use common::*;
use futures_util::StreamExt;
use matrix_sdk::Client;
use matrix_sdk::ruma::OwnedRoomId;
use matrix_sdk::ruma::api::client::room::create_room::v3::RoomPreset;
use matrix_sdk::ruma::api::client::sync::sync_events::v5::request::RoomSubscription;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::sliding_sync::{SlidingSync, SlidingSyncList, SlidingSyncMode};
use matrix_sdk_ui::eyeball_im;
use matrix_sdk_ui::room_list_service::{RoomList, RoomListItem, RoomListService, filters};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PW: &str = "sliding-sdk-test-password";

async fn login(server: &TestServer, user: &str) -> Client {
    login_sliding(&server.base_url, user, PW).await
}

/// A sliding sync with one list over the first `window` rooms and every extension.
async fn sliding_sync(client: &Client, window: u32) -> SlidingSync {
    let list = SlidingSyncList::builder("all")
        .sync_mode(SlidingSyncMode::new_selective().add_range(0..=window - 1))
        .timeline_limit(5)
        .required_state(vec![("m.room.name".into(), String::new()), ("m.room.encryption".into(), String::new())]);
    client
        .sliding_sync("room-list")
        .expect("a sliding sync")
        .add_list(list)
        .with_all_extensions()
        .poll_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("build the sliding sync")
}

/// Runs the sliding sync loop in the background until aborted.
fn sync_forever(sync: SlidingSync) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stream = sync.sync();
        futures_util::pin_mut!(stream);
        while let Some(update) = stream.next().await {
            if let Err(error) = update {
                panic!("the sliding sync loop stopped: {error:?}");
            }
        }
    })
}

/// The client's rooms, most recent first, by the `bump_stamp` sliding sync gave them.
fn rooms_by_recency(client: &Client) -> Vec<OwnedRoomId> {
    let mut rooms: Vec<(u64, OwnedRoomId)> = client
        .rooms()
        .into_iter()
        .filter_map(|room| Some((u64::from(room.recency_stamp()?), room.room_id().to_owned())))
        .collect();
    rooms.sort_by_key(|room| std::cmp::Reverse(room.0));
    rooms.into_iter().map(|(_, id)| id).collect()
}

/// Alice and Bob in four rooms named `room 0`..`room 3`, each with a message of alice's
/// sent in that order (so room 3 is the most recent).
async fn four_rooms_of_alice_and_bob(server: &TestServer) -> (TestUser, TestUser, Vec<String>) {
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let mut rooms = Vec::new();
    for n in 0..4 {
        let room = server.create_room(&alice, json!({ "name": format!("room {n}"), "preset": "public_chat" })).await;
        server.join(&bob, &room).await;
        server.send_text(&alice, &room, &format!("t{n}"), &format!("hello {n}")).await;
        rooms.push(room);
    }
    (alice, bob, rooms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_list_follows_recency_unread_counts_and_subscriptions() {
    let server = TestServer::start().await;
    let (alice, bob_account, rooms) = four_rooms_of_alice_and_bob(&server).await;
    // Two unread messages for bob in room 1, which then leads the list.
    server.send_text(&alice, &rooms[1], "u1", "unread one").await;
    server.send_text(&alice, &rooms[1], "u2", "unread two").await;

    let bob = login(&server, "bob").await;
    let mut bob_messages = messages(&bob);
    let sync = sliding_sync(&bob, 3).await;
    sync.sync_once().await.expect("the first sliding sync");
    let order: Vec<String> = rooms_by_recency(&bob).iter().map(|id| id.to_string()).collect();
    assert_eq!(order, vec![rooms[1].clone(), rooms[3].clone(), rooms[2].clone()], "the window of three, newest first");
    let room1 = bob.get_room(&OwnedRoomId::try_from(rooms[1].as_str()).unwrap()).expect("room 1 is known");
    assert_eq!(room1.name().as_deref(), Some("room 1"));
    assert_eq!(room1.unread_notification_counts().notification_count, 3, "three of alice's messages in room 1");
    assert_eq!(room1.joined_members_count(), 2);

    // A message in room 0 (outside the window) brings it in, at the top.
    let task = sync_forever(sync.clone());
    server.send_text(&alice, &rooms[0], "new0", "news in room 0").await;
    expect_message(&mut bob_messages, "the message reaches bob", &alice.user_id, "news in room 0").await;
    eventually("room 0 leads the list", || async {
        rooms_by_recency(&bob).first().map(|id| id.as_str()) == Some(&rooms[0])
    })
    .await;

    // Reading room 1 clears its count.
    let last = server.send_text(&alice, &rooms[1], "u3", "read to here").await;
    expect_message(&mut bob_messages, "the last message", &alice.user_id, "read to here").await;
    server.read_up_to(&bob_account, &rooms[1], &last).await;
    server.send_text(&alice, &rooms[0], "nudge", "nudge").await;
    eventually("room 1 reads as read", || async {
        let room = bob.get_room(&OwnedRoomId::try_from(rooms[1].as_str()).unwrap()).unwrap();
        room.unread_notification_counts().notification_count == 0
    })
    .await;

    // A subscription to a room far outside the window gets its timeline.
    task.abort();
    let far = server.create_room(&alice, json!({ "name": "far away", "preset": "public_chat" })).await;
    server.join(&bob_account, &far).await;
    server.send_text(&alice, &far, "f1", "from far away").await;
    for (n, room) in rooms.iter().enumerate().take(3) {
        server.send_text(&alice, room, &format!("bump{n}"), "bump").await;
    }
    let far_id = OwnedRoomId::try_from(far.as_str()).unwrap();
    let narrow = SlidingSyncList::builder("all").sync_mode(SlidingSyncMode::new_selective().add_range(0..=0));
    let subscriber = bob.sliding_sync("subscriber").unwrap().add_list(narrow).build().await.unwrap();
    let mut settings = RoomSubscription::default();
    settings.timeline_limit = 10u32.into();
    subscriber.subscribe_to_rooms(&[&far_id], Some(settings), false);
    subscriber.sync_once().await.expect("a sliding sync with the subscription");
    expect_message(&mut bob_messages, "the subscribed room's timeline", &alice.user_id, "from far away").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_conversation_works_through_the_extensions() {
    let server = TestServer::start().await;
    server.register("alice", PW).await;
    server.register("bob", PW).await;
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;
    let alice_id = alice.user_id().unwrap().to_string();
    let bob_id = bob.user_id().unwrap().to_owned();
    let mut alice_messages = messages(&alice);
    let mut bob_messages = messages(&bob);
    let alice_task = sync_forever(sliding_sync(&alice, 20).await);
    let bob_task = sync_forever(sliding_sync(&bob, 20).await);

    let alice_room = alice
        .create_room(encrypted_room(RoomPreset::PrivateChat, vec![bob_id.clone()]))
        .await
        .expect("create an encrypted room");
    let room_id = alice_room.room_id().to_owned();
    let bob_room = bob.join_room_by_id(&room_id).await.expect("bob joins");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let members = alice_room.joined_members_count() == 2;
        let encrypted = alice_room.latest_encryption_state().await.is_ok_and(|s| s.is_encrypted())
            && bob_room.latest_encryption_state().await.is_ok_and(|s| s.is_encrypted());
        if members && encrypted {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "both clients know the encrypted room with two members");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    alice_room.send(RoomMessageEventContent::text_plain("secret for bob")).await.expect("alice sends");
    expect_message(&mut bob_messages, "bob decrypts alice's message", &alice_id, "secret for bob").await;
    bob_room.send(RoomMessageEventContent::text_plain("secret for alice")).await.expect("bob sends");
    expect_message(&mut alice_messages, "alice decrypts bob's message", bob_id.as_str(), "secret for alice").await;
    let plaintext = server.count("SELECT count(*) FROM events WHERE json LIKE '%secret for%'").await;
    assert_eq!(plaintext, 0, "the server saw a plaintext body");
    alice_task.abort();
    bob_task.abort();
}

/// The rooms of matrix-sdk-ui's room list (what Element X shows), in its order, kept current
/// by a task that applies the list's diffs.
fn watch_room_list(list: RoomList) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let order = Arc::new(Mutex::new(Vec::new()));
    let shown = order.clone();
    let task = tokio::spawn(async move {
        let (stream, controller) = list.entries_with_dynamic_adapters(50);
        controller.set_filter(Box::new(filters::new_filter_non_left()));
        futures_util::pin_mut!(stream);
        let mut items = eyeball_im::Vector::new();
        while let Some(diffs) = stream.next().await {
            for diff in diffs {
                diff.apply(&mut items);
            }
            *shown.lock().unwrap() = items.iter().map(|item: &RoomListItem| item.room_id().to_string()).collect();
        }
    });
    (order, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_sdk_ui_room_list_service_orders_moves_and_counts() {
    let server = TestServer::start().await;
    let (alice, bob_account, rooms) = four_rooms_of_alice_and_bob(&server).await;
    server.send_text(&alice, &rooms[1], "u1", "unread one").await;
    server.send_text(&alice, &rooms[1], "u2", "unread two").await;

    let bob = login(&server, "bob").await;
    let service = Arc::new(RoomListService::new(bob.clone()).await.expect("a room list service"));
    let syncing = service.clone();
    let sync_task = tokio::spawn(async move {
        let stream = syncing.sync();
        futures_util::pin_mut!(stream);
        while let Some(update) = stream.next().await {
            if let Err(error) = update {
                panic!("the room list service's sync stopped: {error:?}");
            }
        }
    });
    let (order, list_task) = watch_room_list(service.all_rooms().await.expect("the all-rooms list"));
    let expected = vec![rooms[1].clone(), rooms[3].clone(), rooms[2].clone(), rooms[0].clone()];
    eventually("the room list loads in recency order", || async { *order.lock().unwrap() == expected }).await;
    let room1 = bob.get_room(&OwnedRoomId::try_from(rooms[1].as_str()).unwrap()).expect("room 1 is known");
    assert_eq!(room1.unread_notification_counts().notification_count, 3, "alice's three messages in room 1");
    assert_eq!(room1.cached_display_name().map(|name| name.to_string()).as_deref(), Some("room 1"));

    // A new message moves its room to the top.
    server.send_text(&alice, &rooms[0], "new0", "news in room 0").await;
    eventually("room 0 moves to the top", || async { order.lock().unwrap().first() == Some(&rooms[0]) }).await;

    // Reading room 1 on another device clears its count in this one.
    let last = server.send_text(&alice, &rooms[1], "u3", "read to here").await;
    eventually("room 1 counts four", || async { room1.unread_notification_counts().notification_count == 4 }).await;
    server.read_up_to(&bob_account, &rooms[1], &last).await;
    eventually("room 1 reads as read", || async { room1.unread_notification_counts().notification_count == 0 }).await;
    list_task.abort();
    sync_task.abort();
}
