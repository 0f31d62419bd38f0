//! End-to-end encryption with the real `matrix-sdk` client (its `e2e-encryption` feature, the
//! crypto Element X uses): keys are uploaded at login, messages in an encrypted room decrypt on
//! the other side, a new device can read new messages, and cross-signing identities published
//! by one user are seen by another. Hearth never sees the plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::sdk_support::{encrypted_room, eventually, expect_message, messages, sync_forever};
use common::*;
use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::room::create_room::v3::RoomPreset;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use reqwest::StatusCode;
use serde_json::json;

const PW: &str = "e2ee-sdk-test-password";

async fn login(server: &TestServer, user: &str) -> Client {
    let client = Client::builder().homeserver_url(&server.base_url).build().await.expect("build a matrix-sdk client");
    client.matrix_auth().login_username(user, PW).send().await.expect("matrix-sdk logs in");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_messages_decrypt_on_the_other_side_and_on_a_new_device() {
    let server = TestServer::start().await;
    server.register("alice", PW).await;
    server.register("bob", PW).await;
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;
    let alice_id = alice.user_id().expect("alice's id").to_string();
    let bob_id = bob.user_id().expect("bob's id").to_owned();
    let mut alice_messages = messages(&alice);
    let mut bob_messages = messages(&bob);
    let alice_sync = sync_forever(&alice);
    let bob_sync = sync_forever(&bob);

    // The clients published their device keys on their own.
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&bob.access_token().expect("token")),
            json!({"device_keys": {&alice_id: []}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let alice_device = alice.device_id().expect("device").to_string();
    eventually("alice's device keys are on the server", || {
        let (server, token, alice_id, alice_device) = (&server, bob.access_token(), &alice_id, &alice_device);
        async move {
            let (_, body) = server
                .post("/_matrix/client/v3/keys/query", token.as_deref(), json!({"device_keys": {alice_id: []}}))
                .await;
            body["device_keys"][alice_id][alice_device].is_object()
        }
    })
    .await;

    let alice_room = alice
        .create_room(encrypted_room(RoomPreset::PrivateChat, vec![bob_id.clone()]))
        .await
        .expect("create an encrypted room");
    let room_id = alice_room.room_id().to_owned();
    let bob_room = bob.join_room_by_id(&room_id).await.expect("bob joins");
    eventually("alice's client knows bob joined", || {
        let room = alice_room.clone();
        async move { room.joined_members_count() == 2 }
    })
    .await;
    eventually("both clients know the room is encrypted", || {
        let (a, b) = (alice_room.clone(), bob_room.clone());
        async move {
            a.latest_encryption_state().await.is_ok_and(|s| s.is_encrypted())
                && b.latest_encryption_state().await.is_ok_and(|s| s.is_encrypted())
        }
    })
    .await;

    alice_room.send(RoomMessageEventContent::text_plain("secret for bob")).await.expect("alice sends");
    expect_message(&mut bob_messages, "bob decrypts alice's message", &alice_id, "secret for bob").await;
    bob_room.send(RoomMessageEventContent::text_plain("secret for alice")).await.expect("bob sends");
    expect_message(&mut alice_messages, "alice decrypts bob's message", bob_id.as_str(), "secret for alice").await;

    // What the server stored is ciphertext only.
    let plaintext = server.count("SELECT count(*) FROM events WHERE json LIKE '%secret for%'").await;
    assert_eq!(plaintext, 0, "the server saw a plaintext body");
    let encrypted = server.count("SELECT count(*) FROM events WHERE event_type = 'm.room.encrypted'").await;
    assert!(encrypted >= 2, "{encrypted} encrypted events");

    // Bob logs in on a second device, which reads messages sent from now on.
    let bob_phone = login(&server, "bob").await;
    let mut phone_messages = messages(&bob_phone);
    let phone_sync = sync_forever(&bob_phone);
    let phone_device = bob_phone.device_id().expect("device").to_owned();
    eventually("alice's client learns of bob's new device", || {
        let (alice, bob_id, phone_device) = (alice.clone(), bob_id.clone(), phone_device.clone());
        async move { alice.encryption().get_device(&bob_id, &phone_device).await.ok().flatten().is_some() }
    })
    .await;
    alice_room.send(RoomMessageEventContent::text_plain("hello both bobs")).await.expect("alice sends again");
    expect_message(&mut phone_messages, "bob's new device decrypts", &alice_id, "hello both bobs").await;
    expect_message(&mut bob_messages, "bob's first device decrypts", &alice_id, "hello both bobs").await;

    for task in [alice_sync, bob_sync, phone_sync] {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_signing_bootstrap_is_seen_by_another_user() {
    let server = TestServer::start().await;
    server.register("alice", PW).await;
    server.register("bob", PW).await;
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;
    let alice_id = alice.user_id().expect("alice's id").to_owned();
    let alice_sync = sync_forever(&alice);
    alice.encryption().wait_for_e2ee_initialization_tasks().await;

    // A new account's first cross-signing keys need no password.
    alice.encryption().bootstrap_cross_signing(None).await.expect("bootstrap cross-signing");
    let own = alice.encryption().get_user_identity(&alice_id).await.expect("store").expect("alice's own identity");
    let master = own.master_key().get_first_key().expect("a master key").to_base64();

    let seen = bob.encryption().request_user_identity(&alice_id).await.expect("query alice's identity");
    let seen = seen.expect("bob sees alice's identity");
    assert_eq!(seen.master_key().get_first_key().map(|key| key.to_base64()), Some(master.clone()));

    // Over plain HTTP the same master key is published, signed by alice's device.
    let (status, body) = server
        .post(
            "/_matrix/client/v3/keys/query",
            bob.access_token().as_deref(),
            json!({"device_keys": {alice_id.as_str(): []}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let published = &body["master_keys"][alice_id.as_str()];
    assert_eq!(published["keys"][format!("ed25519:{master}")], master, "{body}");
    let device_key = format!("ed25519:{}", alice.device_id().expect("device"));
    assert!(published["signatures"][alice_id.as_str()][&device_key].is_string(), "{body}");
    // Alice's device carries her self-signing key's signature.
    let device = &body["device_keys"][alice_id.as_str()][alice.device_id().expect("device").as_str()];
    assert!(device["signatures"][alice_id.as_str()].as_object().is_some_and(|s| s.len() >= 2), "{body}");

    // Bootstrapping again re-uploads the same keys, which needs no password and changes
    // nothing others see (replacing keys does need it: see `e2ee_keys`).
    alice.encryption().bootstrap_cross_signing(None).await.expect("bootstrap again");
    let (_, again) = server
        .post(
            "/_matrix/client/v3/keys/query",
            bob.access_token().as_deref(),
            json!({"device_keys": {alice_id.as_str(): []}}),
        )
        .await;
    assert_eq!(again["master_keys"][alice_id.as_str()]["keys"], published["keys"], "{again}");
    alice_sync.abort();
}

/// The body of a fetched event, if it decrypted to a text message.
fn decrypted_body(event: &matrix_sdk::deserialized_responses::TimelineEvent) -> Option<String> {
    use matrix_sdk::ruma::events::{AnySyncMessageLikeEvent, AnySyncTimelineEvent, SyncMessageLikeEvent};
    match event.raw().deserialize().ok()? {
        AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(SyncMessageLikeEvent::Original(
            message,
        ))) => Some(message.content.body().to_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_reads_history_restored_from_the_key_backup() {
    let server = TestServer::start().await;
    server.register("alice", PW).await;
    server.register("bob", PW).await;
    let alice = login(&server, "alice").await;
    let bob = login(&server, "bob").await;
    let alice_id = alice.user_id().expect("alice's id").to_string();
    let bob_id = bob.user_id().expect("bob's id").to_owned();
    let mut bob_messages = messages(&bob);
    let alice_sync = sync_forever(&alice);
    let bob_sync = sync_forever(&bob);
    bob.encryption().wait_for_e2ee_initialization_tasks().await;

    let alice_room = alice
        .create_room(encrypted_room(RoomPreset::PrivateChat, vec![bob_id.clone()]))
        .await
        .expect("create an encrypted room");
    let room_id = alice_room.room_id().to_owned();
    bob.join_room_by_id(&room_id).await.expect("bob joins");
    eventually("alice's client knows bob joined", || {
        let room = alice_room.clone();
        async move { room.joined_members_count() == 2 }
    })
    .await;
    let sent = alice_room.send(RoomMessageEventContent::text_plain("kept in the backup")).await.expect("alice sends");
    expect_message(&mut bob_messages, "bob decrypts alice's message", &alice_id, "kept in the backup").await;

    // Bob turns on recovery: secret storage, a key backup, and his room keys uploaded to it.
    let recovery_key = bob.encryption().recovery().enable().await.expect("enable recovery");
    bob.encryption().backups().wait_for_steady_state().await.expect("room keys backed up");
    let (status, version) = server.get("/_matrix/client/v3/room_keys/version", bob.access_token().as_deref()).await;
    assert_eq!(status, StatusCode::OK, "{version}");
    assert!(version["count"].as_u64().is_some_and(|count| count >= 1), "the backup holds bob's room key: {version}");

    // A new device knows no room keys: the message does not decrypt there...
    let bob_laptop = login(&server, "bob").await;
    bob_laptop.sync_once(SyncSettings::default()).await.expect("the new device syncs");
    let room = bob_laptop.get_room(&room_id).expect("the new device sees the room");
    let event_id = sent.response.event_id;
    let before = room.event(&event_id, None).await.expect("fetch the message");
    assert_eq!(decrypted_body(&before), None, "decrypted without the backup");

    // ...until it recovers with the recovery key and takes the room's keys from the backup.
    bob_laptop.encryption().recovery().recover(&recovery_key).await.expect("recover with the key");
    bob_laptop.encryption().backups().download_room_keys_for_room(&room_id).await.expect("download room keys");
    let after = room.event(&event_id, None).await.expect("fetch the message again");
    assert_eq!(decrypted_body(&after).as_deref(), Some("kept in the backup"));

    for task in [alice_sync, bob_sync] {
        task.abort();
    }
}
