//! The app issue #20 names, built as Element X builds it on matrix-sdk-ui: a `SyncService`
//! (the room list service's sliding sync beside the encryption sync with the to-device and
//! e2ee extensions) and a `Timeline` per room, for two users of one homeserver. History loads
//! by back-pagination, messages arrive live (and after the app was in the background), unread
//! counts rise with messages and fall with a read receipt sent from the timeline, each user
//! sees the other typing and the other's read receipts on the timeline items, and an
//! encrypted room's messages decrypt in the timeline.
//!
//! The same scenario runs against Hearth and against a real Synapse (which serves simplified
//! sliding sync natively), so "works as against Synapse" is a test, not a claim.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::sdk_support::{encrypted_room, eventually, log_in};
use common::synapse::{SynapseTls, shared_async};
use common::*;
use matrix_sdk::ruma::api::client::receipt::create_receipt::v3::ReceiptType;
use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{RoomId, UserId};
use matrix_sdk::sliding_sync::VersionBuilder;
use matrix_sdk::{Client, Room, RoomState};
use matrix_sdk_ui::Timeline;
use matrix_sdk_ui::sync_service::{State, SyncService};
use matrix_sdk_ui::timeline::{RoomExt, TimelineDetails};
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

/// The display name the timeline shows for the sender of the message `body`, once it has one.
async fn sender_name(timeline: &Timeline, body: &str) -> Option<String> {
    let items = timeline.items().await;
    let event = items
        .iter()
        .filter_map(|item| item.as_event())
        .find(|event| event.content().as_message().is_some_and(|message| message.body() == body))?;
    match event.sender_profile() {
        TimelineDetails::Ready(profile) => profile.display_name.clone(),
        _ => None,
    }
}

/// Whether `reader`'s read receipt shows on the timeline item of the message `body`.
async fn receipt_on(timeline: &Timeline, reader: &UserId, body: &str) -> bool {
    timeline.items().await.iter().filter_map(|item| item.as_event()).any(|event| {
        event.content().as_message().is_some_and(|message| message.body() == body)
            && event.read_receipts().contains_key(reader)
    })
}

/// Whether the room list shows `count` unread in the room: the client's own count of unread
/// messages (from the events and receipts it is sent) and, where the server counts them, the
/// server's notification count.
fn unread_is(home: &Homeserver, room: &Room, count: u64) -> bool {
    room.num_unread_messages() == count
        && (!home.counts_notifications || room.unread_notification_counts().notification_count == count)
}

/// Where the app runs: a homeserver and the two accounts it has there.
struct Homeserver {
    base_url: String,
    /// Hearth says in `/versions` that it serves sliding sync natively; Synapse 1.163 serves it
    /// without saying so, and Element X is told to use it.
    sliding_sync: VersionBuilder,
    /// Synapse 1.163's sliding sync sends 0 for every room's notification counts (a TODO in its
    /// handler: clients count unread messages themselves); Hearth counts them, as `/sync` does.
    counts_notifications: bool,
    /// The test CA, for a homeserver served over TLS.
    root_certificate: Option<reqwest::Certificate>,
    /// (user, password) of each.
    alice: (String, String),
    bob: (String, String),
}

impl Homeserver {
    async fn login(&self, (user, password): &(String, String)) -> Client {
        let mut builder =
            Client::builder().homeserver_url(&self.base_url).sliding_sync_version_builder(self.sliding_sync.clone());
        if let Some(certificate) = &self.root_certificate {
            builder = builder.add_root_certificates(vec![certificate.clone()]);
        }
        log_in(builder, user, password).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_element_x_like_app_reads_writes_and_decrypts_through_sliding_sync() {
    let server = TestServer::start().await;
    let [alice, bob] = ["alice", "bob"].map(|name| (name.to_owned(), PW.to_owned()));
    for (name, password) in [&alice, &bob] {
        server.register(name, password).await;
    }
    let home = Homeserver {
        base_url: server.base_url.clone(),
        sliding_sync: VersionBuilder::DiscoverNative,
        counts_notifications: true,
        root_certificate: None,
        alice,
        bob,
    };
    the_app_works(&home).await;
    let plaintext = server.count("SELECT count(*) FROM events WHERE json LIKE '%secret for bob%'").await;
    assert_eq!(plaintext, 0, "the server saw the plaintext");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_app_works_against_synapse() {
    let synapse = shared_async(|| {
        let ca = federation::TestCa::new();
        let tls = SynapseTls { ca_cert: ca.ca_file(), cert: ca.cert_file(), key: ca.key_file() };
        // Synapse reads the files for as long as it runs: the CA's directory must outlive the test.
        std::mem::forget(ca);
        tls
    })
    .await;
    let mut accounts = Vec::new();
    for name in ["app_alice", "app_bob"] {
        // Synapse's accounts are registered with the shared secret and this password.
        accounts.push((synapse.register(name).await.user_id, format!("{name}'s password")));
    }
    let [alice, bob] = <[(String, String); 2]>::try_from(accounts).unwrap();
    let home = Homeserver {
        base_url: synapse.base_url.clone(),
        sliding_sync: VersionBuilder::Native,
        counts_notifications: false,
        root_certificate: Some(synapse.root_certificate()),
        alice,
        bob,
    };
    the_app_works(&home).await;
}

/// The scenario: alice and bob, each with the app, in a plain room with history and then an
/// encrypted one.
async fn the_app_works(home: &Homeserver) {
    let alice = home.login(&home.alice).await;
    let bob = home.login(&home.bob).await;
    let bob_id = bob.user_id().unwrap().to_owned();
    let mut create = CreateRoom::new();
    create.name = Some("chat".to_owned());
    create.preset = Some(RoomPreset::PublicChat);
    let chat_id = alice.create_room(create).await.expect("alice creates a room").room_id().to_owned();
    bob.join_room_by_id(&chat_id).await.expect("bob joins");
    let alice_chat = alice.get_room(&chat_id).unwrap();
    for n in 0..HISTORY {
        alice_chat.send(RoomMessageEventContent::text_plain(format!("history {n}"))).await.expect("alice sends");
    }

    let alice_app = start_app(&alice).await;
    let bob_app = start_app(&bob).await;
    let alice_chat = room_in_state(&alice, &chat_id, RoomState::Joined).await;
    let bob_chat = room_in_state(&bob, &chat_id, RoomState::Joined).await;
    eventually("bob's room list names the room", || async {
        bob_chat.cached_display_name().map(|name| name.to_string()).as_deref() == Some("chat")
    })
    .await;
    if home.counts_notifications {
        eventually("bob's room list counts the history as unread notifications", || async {
            bob_chat.unread_notification_counts().notification_count == HISTORY as u64
        })
        .await;
    }

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
    eventually("bob's counts fall to zero", || async { unread_is(home, &bob_chat, 0) }).await;
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
    eventually("bob's counts rise to two", || async { unread_is(home, &bob_chat, 2) }).await;
    // Both servers give a new account its localpart as display name.
    let alice_name = alice.user_id().unwrap().localpart().to_owned();
    eventually("bob's timeline names alice as the sender", || async {
        sender_name(&bob_timeline, "live 1").await.as_deref() == Some(alice_name.as_str())
            && sender_name(&bob_timeline, "history 0").await.as_deref() == Some(alice_name.as_str())
    })
    .await;

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

    // The app goes to the background and comes back: its connections resume where they were.
    bob_app.stop().await;
    alice_timeline.send(RoomMessageEventContent::text_plain("while away").into()).await.expect("alice sends");
    bob_app.start().await;
    eventually("the message sent while bob was away reaches his timeline", || async {
        bodies(&bob_timeline).await.ends_with(&["live 1".to_owned(), "live 2".to_owned(), "while away".to_owned()])
    })
    .await;
    eventually("bob's counts rise to three", || async { unread_is(home, &bob_chat, 3) }).await;

    bob_timeline.send_single_receipt(ReceiptType::Read, latest_event(&bob_timeline).await).await.unwrap();
    eventually("bob's counts fall again", || async { unread_is(home, &bob_chat, 0) }).await;
    eventually("alice sees bob's receipt move to the newest message", || async {
        receipt_on(&alice_timeline, &bob_id, "while away").await && !receipt_on(&alice_timeline, &bob_id, &last).await
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
    assert!(!matches!(alice_app.state().get(), State::Error(_)), "alice's sync service ran without error");
    assert!(!matches!(bob_app.state().get(), State::Error(_)), "bob's sync service ran without error");
    alice_app.stop().await;
    bob_app.stop().await;
}

/// The id of the newest event of the timeline.
async fn latest_event(timeline: &Timeline) -> matrix_sdk::ruma::OwnedEventId {
    timeline.latest_event_id().await.expect("the timeline has an event")
}
