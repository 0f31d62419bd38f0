//! End-to-end encryption between two federating Hearths with the real `matrix-sdk` client
//! (issue #18): each side decrypts the other's messages, the two users verify each other with
//! cross-signing, a new device of one of them gets the room key over to-device, and a device
//! added and then removed appears in and then leaves the other side's view of the user.
//! Everything the clients need crosses the servers: keys queries and one-time key claims,
//! `m.device_list_update`, `m.signing_key_update` and `m.direct_to_device`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::sdk_support::{encrypted_room, eventually, expect_message, log_in, messages, sync_forever};
use matrix_sdk::Client;
use matrix_sdk::ruma::api::client::room::create_room::v3::RoomPreset;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedDeviceId, OwnedUserId, UserId};
use reqwest::StatusCode;
use serde_json::json;

const PW: &str = "e2ee-federation-password";

async fn login(server: &common::TestServer, user: &str) -> Client {
    log_in(Client::builder().homeserver_url(&server.base_url), user, PW).await
}

/// Whether `client` knows `device` of `user` (and has not seen it deleted).
async fn knows_device(client: &Client, user: &UserId, device: &OwnedDeviceId) -> bool {
    client.encryption().get_device(user, device).await.ok().flatten().is_some_and(|device| !device.is_deleted())
}

/// The device ids of `user` that `server` answers `/keys/query` with, asked as `token`.
async fn queried_devices(server: &common::TestServer, token: Option<&str>, user: &UserId) -> Vec<String> {
    let (status, body) =
        server.post("/_matrix/client/v3/keys/query", token, json!({"device_keys": {user.as_str(): []}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["device_keys"][user.as_str()].as_object().map(|devices| devices.keys().cloned().collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hearths_encrypted_conversation_with_cross_signing_and_device_changes() {
    let pair = common::federation::FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    a.server.register("alice", PW).await;
    b.server.register("bob", PW).await;
    let alice = login(&a.server, "alice").await;
    let bob = login(&b.server, "bob").await;
    let alice_id: OwnedUserId = alice.user_id().expect("alice's id").to_owned();
    let bob_id: OwnedUserId = bob.user_id().expect("bob's id").to_owned();
    let mut alice_messages = messages(&alice);
    let mut bob_messages = messages(&bob);
    let alice_sync = sync_forever(&alice);
    let bob_sync = sync_forever(&bob);
    alice.encryption().wait_for_e2ee_initialization_tasks().await;
    bob.encryption().wait_for_e2ee_initialization_tasks().await;

    let alice_room =
        alice.create_room(encrypted_room(RoomPreset::PublicChat, Vec::new())).await.expect("create an encrypted room");
    let room_id = alice_room.room_id().to_owned();
    let via = matrix_sdk::ruma::OwnedServerName::try_from(a.name().as_str()).expect("server name");
    let room_or_alias = <&matrix_sdk::ruma::RoomOrAliasId>::from(&*room_id);
    let bob_room = bob.join_room_by_id_or_alias(room_or_alias, &[via]).await.expect("bob joins through A");
    eventually("both clients know both members and the encryption", || {
        let (a, b) = (alice_room.clone(), bob_room.clone());
        async move {
            a.joined_members_count() == 2
                && b.joined_members_count() == 2
                && a.latest_encryption_state().await.is_ok_and(|s| s.is_encrypted())
                && b.latest_encryption_state().await.is_ok_and(|s| s.is_encrypted())
        }
    })
    .await;

    alice_room.send(RoomMessageEventContent::text_plain("secret across servers")).await.expect("alice sends");
    expect_message(&mut bob_messages, "bob decrypts alice's message on B", alice_id.as_str(), "secret across servers")
        .await;
    bob_room.send(RoomMessageEventContent::text_plain("secret back")).await.expect("bob sends");
    expect_message(&mut alice_messages, "alice decrypts bob's message on A", bob_id.as_str(), "secret back").await;

    // Cross-signing, set up once the two already track each other: each identity reaches the
    // other side through `m.signing_key_update` and a fresh keys query, not a first fetch.
    alice.encryption().bootstrap_cross_signing(None).await.expect("alice bootstraps cross-signing");
    bob.encryption().bootstrap_cross_signing(None).await.expect("bob bootstraps cross-signing");
    for (client, other, what) in [
        (&alice, &bob_id, "alice's client sees bob's identity"),
        (&bob, &alice_id, "bob's client sees alice's identity"),
    ] {
        eventually(what, || async { client.encryption().get_user_identity(other).await.ok().flatten().is_some() })
            .await;
    }
    // Each verifies the other (a user-signing signature on the other's master key, uploaded to
    // their own server); each then sees the other, and the other's device, as verified.
    for (client, other) in [(&alice, &bob_id), (&bob, &alice_id)] {
        let identity = client.encryption().get_user_identity(other).await.expect("store").expect("identity");
        assert!(!identity.is_verified(), "{other} is verified before anyone verified them");
        identity.verify().await.expect("verify the other user");
    }
    let bob_device = bob.device_id().expect("bob's device").to_owned();
    let alice_device = alice.device_id().expect("alice's device").to_owned();
    for (client, other, device) in [(&alice, &bob_id, &bob_device), (&bob, &alice_id, &alice_device)] {
        eventually("the other user and their device are verified", || async {
            let identity = client.encryption().get_user_identity(other).await.ok().flatten();
            let device = client.encryption().get_device(other, device).await.ok().flatten();
            identity.is_some_and(|identity| identity.is_verified())
                && device.is_some_and(|device| device.is_verified_with_cross_signing())
        })
        .await;
    }

    // Bob logs in on a phone: alice's client learns of it (`m.device_list_update`), and the
    // room key of her next message reaches the phone over to-device.
    let bob_phone = login(&b.server, "bob").await;
    let mut phone_messages = messages(&bob_phone);
    let phone_sync = sync_forever(&bob_phone);
    bob_phone.encryption().wait_for_e2ee_initialization_tasks().await;
    let phone_device = bob_phone.device_id().expect("device").to_owned();
    eventually("alice's client learns of bob's phone", || knows_device(&alice, &bob_id, &phone_device)).await;
    assert!(
        queried_devices(&a.server, alice.access_token().as_deref(), &bob_id).await.contains(&phone_device.to_string())
    );
    alice_room.send(RoomMessageEventContent::text_plain("hello both bobs")).await.expect("alice sends again");
    expect_message(&mut phone_messages, "bob's phone decrypts", alice_id.as_str(), "hello both bobs").await;
    expect_message(&mut bob_messages, "bob's first device decrypts", alice_id.as_str(), "hello both bobs").await;

    // Bob removes the phone: it leaves alice's server's answer and her client's view.
    phone_sync.abort();
    let bob_token = bob.access_token();
    let path = format!("/_matrix/client/v3/devices/{phone_device}");
    let (status, challenge) = b.server.delete(&path, bob_token.as_deref(), Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
        "password": PW, "session": challenge["session"]});
    let (status, body) = b.server.delete(&path, bob_token.as_deref(), Some(json!({"auth": auth}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("alice's client forgets bob's phone", || async { !knows_device(&alice, &bob_id, &phone_device).await })
        .await;
    let left = queried_devices(&a.server, alice.access_token().as_deref(), &bob_id).await;
    assert_eq!(left, vec![bob_device.to_string()], "A answers bob's remaining device only");

    for server in [&a.server, &b.server] {
        let plaintext =
            server.count("SELECT count(*) FROM events WHERE json LIKE '%secret%' OR json LIKE '%bobs%'").await;
        assert_eq!(plaintext, 0, "a server saw a plaintext body");
    }
    for task in [alice_sync, bob_sync] {
        task.abort();
    }
}
