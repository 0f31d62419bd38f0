//! What the matrix-sdk tests share: a client logged in for native sliding sync, an encrypted
//! room to create, the messages a client's sync delivers (as a channel the test can wait on),
//! and a wait for a condition the client's background sync makes true.
#![allow(dead_code)] // each test file uses part of it

use matrix_sdk::ruma::OwnedUserId;
use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::OriginalSyncRoomMessageEvent;
use matrix_sdk::sliding_sync::VersionBuilder;
use matrix_sdk::{Client, ClientBuilder};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// Decrypted or plain message bodies (sender, body) that the client's sync delivers.
pub fn messages(client: &Client) -> UnboundedReceiver<(String, String)> {
    let (tx, rx) = unbounded_channel();
    client.add_event_handler(move |event: OriginalSyncRoomMessageEvent| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((event.sender.to_string(), event.content.body().to_owned()));
        }
    });
    rx
}

/// Waits for a message with this body from `sender`, failing (not hanging) after a deadline.
pub async fn expect_message(rx: &mut UnboundedReceiver<(String, String)>, what: &str, sender: &str, body: &str) {
    let wait = async {
        loop {
            match rx.recv().await {
                Some((from, text)) if from == sender && text == body => return,
                Some(_) => continue,
                None => panic!("{what}: the handler's channel closed"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.unwrap_or_else(|_| panic!("{what}: not seen in 30 s"));
}

/// `createRoom` for an end-to-end encrypted room (the SDK's recommended algorithm) with this
/// preset, inviting `invite`.
pub fn encrypted_room(preset: RoomPreset, invite: Vec<OwnedUserId>) -> CreateRoom {
    let mut request = CreateRoom::new();
    request.preset = Some(preset);
    request.invite = invite;
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults()).to_raw_any(),
    ];
    request
}

/// A client of `base_url` logged in as `user`, using the server's native sliding sync (found
/// in `/versions`, as Element X does).
pub async fn login_sliding(base_url: &str, user: &str, password: &str) -> Client {
    let builder =
        Client::builder().homeserver_url(base_url).sliding_sync_version_builder(VersionBuilder::DiscoverNative);
    log_in(builder, user, password).await
}

/// The client `builder` makes, logged in as `user`.
pub async fn log_in(builder: ClientBuilder, user: &str, password: &str) -> Client {
    let client = builder.build().await.expect("build a matrix-sdk client");
    client.matrix_auth().login_username(user, password).send().await.expect("matrix-sdk logs in");
    client
}

/// Runs the client's sync loop in the background (two-second long polls), as an app does.
pub fn sync_forever(client: &Client) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(error) =
            client.sync(matrix_sdk::config::SyncSettings::default().timeout(Duration::from_secs(2))).await
        {
            panic!("the sync loop stopped: {error:?}");
        }
    })
}

/// Polls `check` until it holds, failing (not hanging) after a deadline.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not true within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
