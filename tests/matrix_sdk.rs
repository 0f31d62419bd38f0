//! Hearth driven by the real `matrix-sdk` client (what Element X and other rust-sdk clients use).
//! matrix-sdk speaks ruma 0.16 while Hearth uses ruma 0.17, so ids are compared as strings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use matrix_sdk::Client;
use matrix_sdk::ruma::api::error::ErrorKind;
use reqwest::StatusCode;

async fn client_for(server: &TestServer) -> Client {
    Client::builder().homeserver_url(&server.base_url).build().await.expect("build a matrix-sdk client")
}

#[tokio::test]
async fn login_whoami_and_display_name() {
    let server = TestServer::start().await;
    server.register("alice", "pw").await;

    let client = client_for(&server).await;
    let response = client
        .matrix_auth()
        .login_username("alice", "pw")
        .initial_device_display_name("matrix-sdk test")
        .send()
        .await
        .expect("matrix-sdk logs in");
    assert_eq!(response.user_id.as_str(), "@alice:hearth.test");
    assert!(client.matrix_auth().logged_in(), "the client holds a session");
    assert_eq!(client.user_id().map(|id| id.to_string()).as_deref(), Some("@alice:hearth.test"));
    let device_id = client.device_id().expect("the session has a device").to_string();
    assert_eq!(device_id, response.device_id.as_str());

    let whoami = client.whoami().await.expect("whoami");
    assert_eq!(whoami.user_id.as_str(), "@alice:hearth.test");
    assert_eq!(whoami.device_id.as_ref().map(|id| id.as_str()), Some(device_id.as_str()));

    // The device the SDK created is visible with the name it gave.
    let devices = client.devices().await.expect("list devices");
    let ours = devices.devices.iter().find(|d| d.device_id.as_str() == device_id).expect("our device is listed");
    assert_eq!(ours.display_name.as_deref(), Some("matrix-sdk test"));

    let account = client.account();
    // A new account starts with its localpart as display name (as Synapse does).
    assert_eq!(account.get_display_name().await.expect("read display name").as_deref(), Some("alice"));
    account.set_display_name(Some("Alice A.")).await.expect("set display name");
    assert_eq!(account.get_display_name().await.expect("read display name").as_deref(), Some("Alice A."));

    // Other clients see it over plain HTTP, without authentication.
    let (status, body) = server.get("/_matrix/client/v3/profile/@alice:hearth.test/displayname", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["displayname"], "Alice A.");

    // Logging out through the SDK ends the session on the server.
    let token = client.access_token().expect("access token");
    client.logout().await.expect("log out");
    let response = server.get("/_matrix/client/v3/account/whoami", Some(&token)).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn wrong_password_is_forbidden() {
    let server = TestServer::start().await;
    server.register("alice", "pw").await;

    let client = client_for(&server).await;
    let error = client.matrix_auth().login_username("alice", "not the password").send().await.expect_err("login fails");
    let api_error = error.as_client_api_error().unwrap_or_else(|| panic!("a Matrix error response, got {error:?}"));
    assert_eq!(api_error.status_code.as_u16(), 403, "{error:?}");
    assert!(matches!(error.client_api_error_kind(), Some(ErrorKind::Forbidden)), "M_FORBIDDEN, got {error:?}");
    assert!(!client.matrix_auth().logged_in(), "no session after a failed login");

    // An unknown user is indistinguishable from a wrong password.
    let error = client.matrix_auth().login_username("nobody", "pw").send().await.expect_err("login fails");
    assert!(matches!(error.client_api_error_kind(), Some(ErrorKind::Forbidden)), "M_FORBIDDEN, got {error:?}");
}

async fn logged_in(server: &TestServer, user: &str) -> Client {
    server.register(user, "pw").await;
    let client = client_for(server).await;
    client.matrix_auth().login_username(user, "pw").send().await.expect("matrix-sdk logs in");
    client
}

/// The messages of a room, oldest first, as matrix-sdk pages them with `/messages`.
async fn texts(room: &matrix_sdk::Room) -> Vec<(String, String)> {
    let mut from: Option<String> = None;
    let mut texts = Vec::new();
    loop {
        let mut options = matrix_sdk::room::MessagesOptions::backward();
        options.limit = matrix_sdk::ruma::uint!(3);
        options.from = from.take();
        let page = room.messages(options).await.expect("paginate");
        for event in &page.chunk {
            let json: serde_json::Value = serde_json::from_str(event.raw().json().get()).expect("event json");
            if json["type"] == "m.room.message" {
                let sender = json["sender"].as_str().unwrap_or_default().to_owned();
                texts.push((sender, json["content"]["body"].as_str().unwrap_or_default().to_owned()));
            }
        }
        match page.end {
            Some(end) => from = Some(end),
            None => break,
        }
    }
    texts.reverse();
    texts
}

#[tokio::test]
async fn two_clients_create_invite_join_talk_and_paginate() {
    use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
    use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

    let server = TestServer::start().await;
    let alice = logged_in(&server, "alice").await;
    let bob = logged_in(&server, "bob").await;

    let mut request = CreateRoom::new();
    request.preset = Some(RoomPreset::PrivateChat);
    request.name = Some("Tea house".to_owned());
    let alice_room = alice.create_room(request).await.expect("create a room");
    let room_id = alice_room.room_id().to_owned();
    let bob_id = bob.user_id().expect("bob's id").to_owned();
    alice_room.invite_user_by_id(&bob_id).await.expect("invite bob");
    let bob_room = bob.join_room_by_id(&room_id).await.expect("bob joins");

    for round in 0..4 {
        alice_room.send(RoomMessageEventContent::text_plain(format!("alice {round}"))).await.expect("alice sends");
        bob_room.send(RoomMessageEventContent::text_plain(format!("bob {round}"))).await.expect("bob sends");
    }
    let expected: Vec<(String, String)> = (0..4)
        .flat_map(|round| {
            [
                ("@alice:hearth.test".to_owned(), format!("alice {round}")),
                ("@bob:hearth.test".to_owned(), format!("bob {round}")),
            ]
        })
        .collect();
    assert_eq!(texts(&alice_room).await, expected, "alice's history");
    assert_eq!(texts(&bob_room).await, expected, "bob's history");
}

/// Waits for the first item on `rx` that `wanted` accepts, failing after a deadline.
async fn next_matching<T: std::fmt::Debug>(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>,
    what: &str,
    wanted: impl Fn(&T) -> bool,
) -> T {
    let wait = async {
        loop {
            match rx.recv().await {
                Some(item) if wanted(&item) => return item,
                Some(_) => continue,
                None => panic!("{what}: the event handler's channel closed"),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(15), wait)
        .await
        .unwrap_or_else(|_| panic!("{what}: not observed within 15 s"))
}

#[tokio::test]
async fn two_clients_chat_live_with_typing_and_receipts() {
    use matrix_sdk::config::SyncSettings;
    use matrix_sdk::ruma::api::client::receipt::create_receipt::v3::ReceiptType;
    use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
    use matrix_sdk::ruma::events::receipt::{ReceiptThread, SyncReceiptEvent};
    use matrix_sdk::ruma::events::room::message::{OriginalSyncRoomMessageEvent, RoomMessageEventContent};
    use matrix_sdk::ruma::events::typing::SyncTypingEvent;
    use tokio::sync::mpsc::unbounded_channel;

    let server = TestServer::start().await;
    let alice = logged_in(&server, "alice").await;
    let bob = logged_in(&server, "bob").await;
    let alice_id = alice.user_id().expect("alice's id").to_string();
    let bob_id = bob.user_id().expect("bob's id").to_owned();

    // A DM: alice creates it inviting bob, bob joins.
    let mut request = CreateRoom::new();
    request.preset = Some(RoomPreset::TrustedPrivateChat);
    request.is_direct = true;
    request.invite = vec![bob_id.clone()];
    let alice_room = alice.create_room(request).await.expect("create a DM");
    let room_id = alice_room.room_id().to_owned();
    let bob_room = bob.join_room_by_id(&room_id).await.expect("bob joins");
    let bob_id = bob_id.to_string();

    // Each client's handlers push what its sync loop delivers into channels.
    let messages = |client: &matrix_sdk::Client| {
        let (tx, rx) = unbounded_channel::<(String, String)>();
        client.add_event_handler(move |event: OriginalSyncRoomMessageEvent| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((event.sender.to_string(), event.content.body().to_owned()));
            }
        });
        rx
    };
    let mut alice_messages = messages(&alice);
    let mut bob_messages = messages(&bob);
    let (typing_tx, mut alice_typing) = unbounded_channel::<Vec<String>>();
    alice.add_event_handler(move |event: SyncTypingEvent| {
        let tx = typing_tx.clone();
        async move {
            let _ = tx.send(event.content.user_ids.iter().map(|id| id.to_string()).collect());
        }
    });
    let (receipt_tx, mut alice_receipts) = unbounded_channel::<Vec<(String, String, String)>>();
    alice.add_event_handler(move |event: SyncReceiptEvent| {
        let tx = receipt_tx.clone();
        async move {
            let mut seen = Vec::new();
            for (event_id, receipts) in &event.content.0 {
                for (kind, users) in receipts {
                    for user in users.keys() {
                        seen.push((event_id.to_string(), kind.to_string(), user.to_string()));
                    }
                }
            }
            let _ = tx.send(seen);
        }
    });

    // Both clients long-poll /sync for the rest of the test.
    let settings = SyncSettings::default().timeout(std::time::Duration::from_secs(5));
    let alice_sync = tokio::spawn({
        let (client, settings) = (alice.clone(), settings.clone());
        async move { client.sync(settings).await }
    });
    let bob_sync = tokio::spawn({
        let client = bob.clone();
        async move { client.sync(settings).await }
    });

    // alice → bob.
    let sent = alice_room.send(RoomMessageEventContent::text_plain("hello bob")).await.expect("alice sends");
    next_matching(&mut bob_messages, "bob sees alice's message", |(sender, body)| {
        sender == &alice_id && body == "hello bob"
    })
    .await;
    // bob → alice.
    bob_room.send(RoomMessageEventContent::text_plain("hi alice")).await.expect("bob sends");
    next_matching(&mut alice_messages, "alice sees bob's message", |(sender, body)| {
        sender == &bob_id && body == "hi alice"
    })
    .await;

    // bob types; alice sees it.
    bob_room.typing_notice(true).await.expect("bob sends a typing notice");
    next_matching(&mut alice_typing, "alice sees bob typing", |users| users.contains(&bob_id)).await;

    // bob reads alice's message; alice gets the receipt.
    let read = sent.response.event_id.to_string();
    bob_room
        .send_single_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, sent.response.event_id.clone())
        .await
        .expect("bob sends a read receipt");
    next_matching(&mut alice_receipts, "alice sees bob's read receipt", |receipts| {
        receipts.iter().any(|(event_id, kind, user)| event_id == &read && kind == "m.read" && user == &bob_id)
    })
    .await;

    for sync in [alice_sync, bob_sync] {
        assert!(!sync.is_finished(), "a sync loop ended early: {:?}", sync.await);
        sync.abort();
    }
}
