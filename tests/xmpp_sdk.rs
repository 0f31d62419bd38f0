//! An XMPP client (slixmpp) and a matrix-sdk client (what Element X is built on) in one
//! one-to-one conversation through Hearth: the XMPP user starts it, the matrix-sdk user sees
//! the invite in its sync, joins, reads the message with `/messages` and answers.

use crate::clients::install::xmpp_client_script;
use crate::sdk_support::{eventually, log_in};
use crate::xmpp::{alice_chats_with_bob, event, run_script, start};
use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use std::time::Duration;

#[tokio::test]
async fn an_xmpp_client_and_a_matrix_sdk_client_chat_one_to_one() {
    let xmpp = start().await;
    let server = &xmpp.server;
    server.register("alice", "alice-password").await;
    server.register("bob", "bob-password").await;
    let bob = log_in(Client::builder().homeserver_url(&server.base_url), "bob", "bob-password").await;
    let syncing = tokio::spawn({
        let bob = bob.clone();
        async move { bob.sync(SyncSettings::default().timeout(Duration::from_secs(2))).await }
    });
    let port = xmpp.starttls_port.to_string();
    let args = alice_chats_with_bob(&port, "hello matrix-sdk");
    let mut seen_by_bob = Vec::new();
    let lines = run_script(&xmpp_client_script(), &args, async |line| {
        if line["event"] != "sent" {
            return;
        }
        eventually("bob's client sees the DM invite", || {
            let bob = bob.clone();
            async move { !bob.invited_rooms().is_empty() }
        })
        .await;
        let room_id = bob.invited_rooms()[0].room_id().to_owned();
        let room = bob.join_room_by_id(&room_id).await.expect("bob joins");
        for _ in 0..50 {
            let page = room.messages(matrix_sdk::room::MessagesOptions::backward()).await.expect("paginate");
            seen_by_bob = page
                .chunk
                .iter()
                .filter_map(|event| serde_json::from_str::<serde_json::Value>(event.raw().json().get()).ok())
                .filter(|event| event["type"] == "m.room.message")
                .map(|event| (event["sender"].as_str().unwrap().to_owned(), event["content"]["body"].clone()))
                .collect();
            if !seen_by_bob.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        room.send(RoomMessageEventContent::text_plain("hi from matrix-sdk")).await.expect("bob answers");
    })
    .await;
    syncing.abort();

    assert_eq!(seen_by_bob, [("@alice:hearth.test".to_owned(), serde_json::json!("hello matrix-sdk"))]);
    let message = event(&lines, "message").unwrap_or_else(|| panic!("bob's answer never reached XMPP: {lines:?}"));
    assert_eq!(message["body"], "hi from matrix-sdk");
}
