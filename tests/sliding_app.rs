//! The app issue #20 names, built as Element X builds it on matrix-sdk-ui: a `SyncService`
//! (the room list service's sliding sync beside the encryption sync with the to-device and
//! e2ee extensions) and a `Timeline` per room, for two users of one Hearth. History loads by
//! back-pagination, messages arrive live, unread counts rise with messages and fall with a
//! read receipt sent from the timeline, each user sees the other typing and the other's read
//! receipts on the timeline items, and an encrypted room's messages decrypt in the timeline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::sdk_support::{encrypted_room, eventually, login_sliding};
use common::*;
use matrix_sdk::ruma::api::client::receipt::create_receipt::v3::ReceiptType;
use matrix_sdk::ruma::api::client::room::create_room::v3::RoomPreset;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedRoomId, RoomId, UserId};
use matrix_sdk::{Client, Room, RoomState};
use matrix_sdk_ui::Timeline;
use matrix_sdk_ui::sync_service::{State, SyncService};
use matrix_sdk_ui::timeline::RoomExt;
use serde_json::json;
use std::time::Duration;

const PW: &str = "sliding-app-test-password";
/// Messages of history: more than the room list (1) or a room subscription (20) sends.
const HISTORY: usize = 30;

/// The app's sync: both sliding sync connections, started in the background.
async fn start_app(client: &Client) -> SyncService {
    let service = SyncService::builder(client.clone()).build().await.expect("a sync service");
    service.start().await;
    service
}

/// The room once the client's sync knows it with this membership.
async fn room_in_state(client: &Client, room_id: &RoomId, state: RoomState) -> Room {
    eventually("the client's sync brings the room", || async {
        client.get_room(room_id).is_some_and(|room| room.state() == state)
    })
    .await;
    client.get_room(room_id).unwrap()
}

/// The bodies of the timeline's messages, oldest first, as the app shows them (decrypted).
async fn bodies(timeline: &Timeline) -> Vec<String> {
    let items = timeline.items().await;
    let messages = items.iter().filter_map(|item| item.as_event()?.content().as_message().map(|m| m.body().to_owned()));
    messages.collect()
}

/// Whether `reader`'s read receipt shows on the timeline item of the message `body`.
async fn receipt_on(timeline: &Timeline, reader: &UserId, body: &str) -> bool {
    timeline.items().await.iter().filter_map(|item| item.as_event()).any(|event| {
        event.content().as_message().is_some_and(|message| message.body() == body)
            && event.read_receipts().contains_key(reader)
    })
}

/// Unread counts of the room as the room list shows them: the client's own count of unread
/// messages (from the receipts it is sent) and the server's notification count.
fn unread(room: &Room) -> (u64, u64) {
    (room.num_unread_messages(), room.unread_notification_counts().notification_count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_element_x_like_app_reads_writes_and_decrypts_through_sliding_sync() {
    let server = TestServer::start().await;
    let alice_account = server.register("alice", PW).await;
    let bob_account = server.register("bob", PW).await;
    let chat = server.create_room(&alice_account, json!({ "name": "chat", "preset": "public_chat" })).await;
    server.join(&bob_account, &chat).await;
    for n in 0..HISTORY {
        server.send_text(&alice_account, &chat, &format!("h{n}"), &format!("history {n}")).await;
    }
    let chat_id = OwnedRoomId::try_from(chat.as_str()).unwrap();

    let alice = login_sliding(&server.base_url, "alice", PW).await;
    let bob = login_sliding(&server.base_url, "bob", PW).await;
    let bob_id = bob.user_id().unwrap().to_owned();
    let alice_app = start_app(&alice).await;
    let bob_app = start_app(&bob).await;
    let alice_chat = room_in_state(&alice, &chat_id, RoomState::Joined).await;
    let bob_chat = room_in_state(&bob, &chat_id, RoomState::Joined).await;
    assert_eq!(bob_chat.cached_display_name().map(|name| name.to_string()).as_deref(), Some("chat"));
    eventually("bob's room list counts the history as unread notifications", || async {
        unread(&bob_chat).1 == HISTORY as u64
    })
    .await;

    // Opening the room: the app subscribes to it and back-paginates to its start.
    bob_app.room_list_service().subscribe_to_rooms(&[&chat_id]).await;
    alice_app.room_list_service().subscribe_to_rooms(&[&chat_id]).await;
    let bob_timeline = bob_chat.timeline().await.expect("bob's timeline");
    let alice_timeline = alice_chat.timeline().await.expect("alice's timeline");
    eventually("bob back-paginates to the first message", || async {
        bodies(&bob_timeline).await.first().map(String::as_str) == Some("history 0")
            || !bob_timeline.paginate_backwards(10).await.is_ok_and(|start| !start)
    })
    .await;
    let history: Vec<String> = (0..HISTORY).map(|n| format!("history {n}")).collect();
    assert_eq!(bodies(&bob_timeline).await, history, "the whole history, once each, in order");

    // Reading it from the timeline clears the counts; alice sees bob's receipt on the last one.
    bob_timeline.mark_as_read(ReceiptType::Read).await.expect("bob sends a read receipt");
    eventually("bob's counts fall to zero", || async { unread(&bob_chat) == (0, 0) }).await;
    let last = format!("history {}", HISTORY - 1);
    eventually("alice sees bob's receipt on the last message", || async {
        receipt_on(&alice_timeline, &bob_id, &last).await
    })
    .await;

    // Live messages arrive in the other's timeline and count as unread.
    for body in ["live 1", "live 2"] {
        alice_timeline.send(RoomMessageEventContent::text_plain(body).into()).await.expect("alice sends");
    }
    eventually("the live messages reach bob's timeline", || async {
        bodies(&bob_timeline).await.ends_with(&["live 1".to_owned(), "live 2".to_owned()])
    })
    .await;
    eventually("bob's counts rise to two", || async { unread(&bob_chat) == (2, 2) }).await;

    // Typing shows on the other side.
    let (_typing_guard, mut typing) = alice_chat.subscribe_to_typing_notifications();
    bob_chat.typing_notice(true).await.expect("bob types");
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(users) = typing.recv().await {
            if users.contains(&bob_id) {
                return true;
            }
        }
        false
    });
    assert!(seen.await.unwrap_or(false), "alice sees bob typing");

    bob_timeline.send_single_receipt(ReceiptType::Read, latest_event(&bob_timeline).await).await.unwrap();
    eventually("bob's counts fall again", || async { unread(&bob_chat) == (0, 0) }).await;
    eventually("alice sees bob's receipt move to the newest message", || async {
        receipt_on(&alice_timeline, &bob_id, "live 2").await && !receipt_on(&alice_timeline, &bob_id, &last).await
    })
    .await;

    // An encrypted room: bob is invited, joins, and alice's message decrypts in his timeline.
    let secret_room = alice
        .create_room(encrypted_room(RoomPreset::PrivateChat, vec![bob_id.clone()]))
        .await
        .expect("alice creates an encrypted room");
    let secret_id = secret_room.room_id().to_owned();
    room_in_state(&bob, &secret_id, RoomState::Invited).await;
    bob.join_room_by_id(&secret_id).await.expect("bob joins");
    let bob_secret = room_in_state(&bob, &secret_id, RoomState::Joined).await;
    eventually("alice's client knows bob joined", || async { secret_room.joined_members_count() == 2 }).await;
    let alice_secret_timeline = secret_room.timeline().await.unwrap();
    let bob_secret_timeline = bob_secret.timeline().await.unwrap();
    alice_secret_timeline.send(RoomMessageEventContent::text_plain("secret for bob").into()).await.unwrap();
    eventually("bob's timeline decrypts alice's message", || async {
        bodies(&bob_secret_timeline).await.contains(&"secret for bob".to_owned())
    })
    .await;
    let plaintext = server.count("SELECT count(*) FROM events WHERE json LIKE '%secret for bob%'").await;
    assert_eq!(plaintext, 0, "the server saw the plaintext");
    assert!(!matches!(alice_app.state().get(), State::Error(_)), "alice's sync service ran without error");
    assert!(!matches!(bob_app.state().get(), State::Error(_)), "bob's sync service ran without error");
    alice_app.stop().await;
    bob_app.stop().await;
}

/// The id of the newest event of the timeline.
async fn latest_event(timeline: &Timeline) -> matrix_sdk::ruma::OwnedEventId {
    timeline.latest_event_id().await.expect("the timeline has an event")
}
