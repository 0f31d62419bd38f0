//! Hearth federating with a real Synapse (issue #16), both directions: a Synapse user joins a
//! Hearth room and a Hearth user joins a Synapse room, by alias (backfilling its history), and
//! messages, edits, redactions and topic changes flow both ways;
//! each side's users download the other side's media (issue #17); typing, read receipts and presence
//! cross both ways, and matrix-sdk clients on each side talk end-to-end encrypted (issue #18).
//! One Synapse per test binary, shared by the few tests here (it takes seconds to start; CI's
//! budget is small); every server trusts one test CA made once for the binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::media_support;
use crate::sdk_support;

use common::federation::{FedServer, TestCa};
use common::synapse::{Synapse, SynapseTls, SynapseUser, shared_async};
use common::{TestUser, encode};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Federation is asynchronous: what one side did reaches the other within this.
const DELIVERY: Duration = Duration::from_secs(60);

/// The binary's CA: Synapse, started once, keeps using its files.
fn ca() -> Arc<TestCa> {
    static CA: OnceLock<Arc<TestCa>> = OnceLock::new();
    CA.get_or_init(|| Arc::new(TestCa::new())).clone()
}

async fn synapse() -> &'static Synapse {
    shared_async(|| {
        let ca = ca();
        SynapseTls { ca_cert: ca.ca_file(), cert: ca.cert_file(), key: ca.key_file() }
    })
    .await
}

/// Polls `check` until it holds; panics with `what` (and Synapse's log) after [`DELIVERY`].
async fn eventually<F, Fut>(synapse: &Synapse, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < DELIVERY,
            "{what}: not within {DELIVERY:?}\nSynapse's log:\n{}",
            synapse.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn message_bodies(chunk: &Value) -> Vec<String> {
    chunk
        .as_array()
        .into_iter()
        .flatten()
        .filter(|event| event["type"] == "m.room.message")
        .filter_map(|event| event["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

async fn hearth_messages(hearth: &FedServer, user: &TestUser, room: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50");
    let (status, body) = hearth.server.get(&path, user.token()).await;
    if status != StatusCode::OK {
        return Vec::new();
    }
    message_bodies(&body["chunk"])
}

async fn synapse_messages(synapse: &Synapse, user: &SynapseUser, room: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50");
    let (status, body) = synapse.request(Method::GET, &path, Some(&user.access_token), None).await;
    if status != StatusCode::OK {
        return Vec::new();
    }
    message_bodies(&body["chunk"])
}

async fn synapse_joined(synapse: &Synapse, user: &SynapseUser, room: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{room}/joined_members");
    let (_, body) = synapse.request(Method::GET, &path, Some(&user.access_token), None).await;
    body["joined"].as_object().map(|joined| joined.keys().cloned().collect()).unwrap_or_default()
}

/// Sends a text as `user` on Synapse; returns the event id.
async fn synapse_send(synapse: &Synapse, user: &SynapseUser, room: &str, txn: &str, text: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let body = json!({"msgtype": "m.text", "body": text});
    let (status, answer) = synapse.request(Method::PUT, &path, Some(&user.access_token), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "Synapse send: {answer}");
    answer["event_id"].as_str().expect("event_id").to_owned()
}

#[tokio::test]
async fn a_synapse_user_joins_a_hearth_room_by_alias_and_they_chat() {
    let synapse = synapse().await;
    let hearth = FedServer::start(ca()).await;
    let alice = hearth.server.register("alice", "alice's password").await;
    let room =
        hearth.server.create_room(&alice, json!({"preset": "public_chat", "room_alias_name": "hearthroom"})).await;
    let sam = synapse.register("sam").await;

    let alias = format!("#hearthroom:{}", hearth.name());
    let path = format!("/_matrix/client/v3/join/{}", encode(&alias));
    let (status, body) = synapse.request(Method::POST, &path, Some(&sam.access_token), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "Synapse joins through Hearth: {body}\n{}", synapse.log_tail());
    assert_eq!(body["room_id"], room);
    let (status, members) =
        hearth.server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(members["joined"][&sam.user_id].is_object(), "Hearth has sam as a member: {members}");

    let greeting = hearth.server.send_text(&alice, &room, "h1", "hello Synapse").await;
    eventually(synapse, "Hearth's message reaches Synapse", || async {
        synapse_messages(synapse, &sam, &room).await.contains(&"hello Synapse".to_owned())
    })
    .await;
    synapse_send(synapse, &sam, &room, "s1", "hello Hearth").await;
    eventually(synapse, "Synapse's message reaches Hearth", || async {
        hearth_messages(&hearth, &alice, &room).await.contains(&"hello Hearth".to_owned())
    })
    .await;

    // EDUs both ways (issue #18): alice's typing shows on Synapse, sam's read receipt on Hearth.
    // Synapse reuses a sync's answer for the same token a while, so each poll moves on.
    let (_, body) = synapse.request(Method::GET, "/_matrix/client/v3/sync", Some(&sam.access_token), None).await;
    let since = std::sync::Mutex::new(body["next_batch"].as_str().unwrap().to_owned());
    let typing = format!("/_matrix/client/v3/rooms/{room}/typing/{}", alice.user_id);
    let (status, body) = hearth.server.put(&typing, alice.token(), json!({"typing": true, "timeout": 30000})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(synapse, "alice's typing reaches Synapse", || async {
        let path = format!("/_matrix/client/v3/sync?timeout=0&since={}", since.lock().unwrap());
        let (_, body) = synapse.request(Method::GET, &path, Some(&sam.access_token), None).await;
        if let Some(next) = body["next_batch"].as_str() {
            *since.lock().unwrap() = next.to_owned();
        }
        let events =
            body["rooms"]["join"][room.as_str()]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
        events.iter().any(|event| event["type"] == "m.typing" && event["content"]["user_ids"] == json!([alice.user_id]))
    })
    .await;
    let receipt = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{greeting}");
    let (status, body) = synapse.request(Method::POST, &receipt, Some(&sam.access_token), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(synapse, "sam's read receipt reaches Hearth", || async {
        let (_, body) = hearth.server.get("/_matrix/client/v3/sync", alice.token()).await;
        let events =
            body["rooms"]["join"][room.as_str()]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
        events.iter().any(|event| {
            event["type"] == "m.receipt" && event["content"][&greeting]["m.read"][&sam.user_id].is_object()
        })
    })
    .await;

    // Presence both ways: each side sees the other's status message (they share the room).
    let path = format!("/_matrix/client/v3/presence/{}/status", alice.user_id);
    let (status, body) =
        hearth.server.put(&path, alice.token(), json!({"presence": "online", "status_msg": "alice on Hearth"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(synapse, "alice's presence reaches Synapse", || async {
        let (_, body) = synapse.request(Method::GET, &path, Some(&sam.access_token), None).await;
        body["status_msg"] == "alice on Hearth"
    })
    .await;
    let path = format!("/_matrix/client/v3/presence/{}/status", sam.user_id);
    let status_body = json!({"presence": "online", "status_msg": "sam on Synapse"});
    let (status, body) = synapse.request(Method::PUT, &path, Some(&sam.access_token), Some(status_body)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(synapse, "sam's presence reaches Hearth", || async {
        let (_, body) = hearth.server.get(&path, alice.token()).await;
        body["status_msg"] == "sam on Synapse"
    })
    .await;
}

/// History from before Hearth joined, for Hearth's user to page back through (backfill).
const SYNAPSE_HISTORY: usize = 15;

#[tokio::test]
async fn a_hearth_user_joins_a_synapse_room_by_alias_backfills_and_they_chat_edit_redact_and_retopic() {
    let synapse = synapse().await;
    let hearth = FedServer::start(ca()).await;
    let sue = synapse.register("sue").await;
    let bob = hearth.server.register("bob", "bob's password").await;
    // Bob may change the topic too, so state changes flow both ways (Synapse makes v12 rooms,
    // whose creator holds power without being listed).
    let create = json!({"preset": "public_chat", "room_alias_name": "synapseroom", "name": "Synapse's room",
        "visibility": "public",
        "power_level_content_override": {"users": {&bob.user_id: 50}}});
    let (status, created) =
        synapse.request(Method::POST, "/_matrix/client/v3/createRoom", Some(&sue.access_token), Some(create)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let room = created["room_id"].as_str().unwrap().to_owned();
    let history: Vec<String> = (0..SYNAPSE_HISTORY).map(|n| format!("history {n}")).collect();
    let mut history_ids = Vec::new();
    for (n, text) in history.iter().enumerate() {
        history_ids.push(synapse_send(synapse, &sue, &room, &format!("old{n}"), text).await);
    }

    // Bob finds the room in Synapse's directory, browsed through Hearth over federation
    // (Synapse lists a new room once its statistics caught up).
    let browse = format!("/_matrix/client/v3/publicRooms?server={}", encode(&synapse.server_name));
    eventually(synapse, "Hearth lists Synapse's public room", || async {
        let (status, listing) =
            hearth.server.post(&browse, bob.token(), json!({"filter": {"generic_search_term": "synapse's"}})).await;
        assert_eq!(status, StatusCode::OK, "{listing}");
        let rooms = listing["chunk"].as_array().cloned().unwrap_or_default();
        rooms.iter().any(|listed| listed["room_id"] == room.as_str() && listed["name"] == "Synapse's room")
    })
    .await;

    let alias = format!("#synapseroom:{}", synapse.server_name);
    let (status, body) =
        hearth.server.post(&format!("/_matrix/client/v3/join/{}", encode(&alias)), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "Hearth joins through Synapse: {body}\n{}", synapse.log_tail());
    assert_eq!(body["room_id"], room);
    eventually(synapse, "Synapse has bob as a member", || async {
        synapse_joined(synapse, &sue, &room).await.contains(&bob.user_id)
    })
    .await;
    // Hearth built its copy of the room from Synapse's answer.
    let (status, name) =
        hearth.server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["name"], "Synapse's room");

    // Bob pages back to the room's creation: Hearth backfills the history from Synapse.
    let (status, page) =
        hearth.server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}\n{}", synapse.log_tail());
    let mut backfilled = message_bodies(&page["chunk"]);
    backfilled.reverse();
    assert_eq!(backfilled, history, "bob sees Synapse's history once, in order");
    let chunk = page["chunk"].as_array().unwrap();
    assert_eq!(chunk.last().unwrap()["type"], "m.room.create", "the history reaches the room's creation");
    assert!(page["end"].is_null(), "nothing is left to page: {page}");

    synapse_send(synapse, &sue, &room, "s1", "welcome, Hearth").await;
    eventually(synapse, "Synapse's message reaches Hearth", || async {
        hearth_messages(&hearth, &bob, &room).await.contains(&"welcome, Hearth".to_owned())
    })
    .await;
    let thanks = hearth.server.send_text(&bob, &room, "h1", "thanks, Synapse").await;
    eventually(synapse, "Hearth's message reaches Synapse", || async {
        synapse_messages(synapse, &sue, &room).await.contains(&"thanks, Synapse".to_owned())
    })
    .await;

    // Synapse -> Hearth: an edit, a redaction of a backfilled message, a topic change.
    let welcome = synapse_event_id_of(synapse, &sue, &room, "welcome, Hearth").await;
    synapse_put(synapse, &sue, &format!("/rooms/{room}/send/m.room.message/s2"), edit(&welcome, "welcome, Hearth!"))
        .await;
    synapse_put(synapse, &sue, &format!("/rooms/{room}/redact/{}/s3", history_ids[3]), json!({})).await;
    synapse_put(synapse, &sue, &format!("/rooms/{room}/state/m.room.topic/"), json!({"topic": "set on Synapse"})).await;
    eventually(synapse, "Synapse's edit, redaction and topic reach Hearth", || async {
        let edited = hearth_messages(&hearth, &bob, &room).await.contains(&"* welcome, Hearth!".to_owned());
        let path = format!("/_matrix/client/v3/rooms/{room}/event/{}", history_ids[3]);
        let (_, redacted) = hearth.server.get(&path, bob.token()).await;
        let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic");
        let (_, topic) = hearth.server.get(&path, bob.token()).await;
        edited && redacted["content"] == json!({}) && topic["topic"] == "set on Synapse"
    })
    .await;

    // Hearth -> Synapse: the same three.
    hearth.server.send_message(&bob, &room, "h2", edit(&thanks, "thanks, Synapse!")).await;
    let oops = hearth.server.send_text(&bob, &room, "h3", "sent by mistake").await;
    let (status, body) =
        hearth.server.put(&format!("/_matrix/client/v3/rooms/{room}/redact/{oops}/h4"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
    let (status, body) = hearth.server.put(&path, bob.token(), json!({"topic": "set on Hearth"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually(synapse, "Hearth's edit, redaction and topic reach Synapse", || async {
        let edited = synapse_messages(synapse, &sue, &room).await.contains(&"* thanks, Synapse!".to_owned());
        let path = format!("/_matrix/client/v3/rooms/{room}/event/{oops}");
        let (_, redacted) = synapse.request(Method::GET, &path, Some(&sue.access_token), None).await;
        let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic");
        let (_, topic) = synapse.request(Method::GET, &path, Some(&sue.access_token), None).await;
        edited && redacted["content"] == json!({}) && topic["topic"] == "set on Hearth"
    })
    .await;
}

/// An `m.replace` edit of `original` (with the fallback body clients show).
fn edit(original: &str, text: &str) -> Value {
    json!({"msgtype": "m.text", "body": format!("* {text}"),
        "m.new_content": {"msgtype": "m.text", "body": text},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original}})
}

async fn synapse_put(synapse: &Synapse, user: &SynapseUser, path: &str, body: Value) {
    let path = format!("/_matrix/client/v3{path}");
    let (status, answer) = synapse.request(Method::PUT, &path, Some(&user.access_token), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "Synapse {path}: {answer}");
}

async fn synapse_event_id_of(synapse: &Synapse, user: &SynapseUser, room: &str, body: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50");
    let (_, page) = synapse.request(Method::GET, &path, Some(&user.access_token), None).await;
    let chunk = page["chunk"].as_array().unwrap();
    let event = chunk.iter().find(|event| event["content"]["body"] == body).expect("the message on Synapse");
    event["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_synapse_invitation_to_hearth_users_is_accepted_by_one_and_rejected_by_the_other() {
    let synapse = synapse().await;
    let hearth = FedServer::start(ca()).await;
    let sid = synapse.register("sid").await;
    let create = json!({"preset": "private_chat", "name": "Invite only"});
    let (status, created) =
        synapse.request(Method::POST, "/_matrix/client/v3/createRoom", Some(&sid.access_token), Some(create)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let room = created["room_id"].as_str().unwrap().to_owned();
    let ann = hearth.server.register("ann", "ann's password").await;
    let ben = hearth.server.register("ben", "ben's password").await;

    for invitee in [&ann, &ben] {
        let path = format!("/_matrix/client/v3/rooms/{room}/invite");
        let body = json!({"user_id": invitee.user_id});
        let (status, answer) = synapse.request(Method::POST, &path, Some(&sid.access_token), Some(body)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "Synapse invites {} through Hearth: {answer}\n{}",
            invitee.user_id,
            synapse.log_tail()
        );
        // The invitation shows in the invitee's sync on Hearth.
        let (status, sync) = hearth.server.get("/_matrix/client/v3/sync", invitee.token()).await;
        assert_eq!(status, StatusCode::OK, "{sync}");
        let invite_state = &sync["rooms"]["invite"][&room]["invite_state"]["events"];
        assert!(
            invite_state.as_array().into_iter().flatten().any(|event| event["content"]["membership"] == "invite"),
            "{} sees the invitation: {sync}",
            invitee.user_id
        );
        // With the stripped state Synapse sent along (invite_room_state), as local invites do.
        assert!(
            invite_state.as_array().into_iter().flatten().any(|event| event["content"]["name"] == "Invite only"),
            "{} sees the room's name: {sync}",
            invitee.user_id
        );
    }

    // Ben rejects while Hearth is not in the room: his leave goes to Synapse through
    // make_leave/send_leave.
    let (status, body) =
        hearth.server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), ben.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "ben rejects: {body}\n{}", synapse.log_tail());
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", ben.user_id);
    let (status, member) = synapse.request(Method::GET, &path, Some(&sid.access_token), None).await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["membership"], "leave", "Synapse sees ben's rejection");
    let (status, sync) = hearth.server.get("/_matrix/client/v3/sync", ben.token()).await;
    assert_eq!(status, StatusCode::OK, "ben's sync after rejecting: {sync}");
    assert!(sync["rooms"]["invite"][&room].is_null(), "the invitation is gone from ben's sync: {sync}");

    // Ann accepts: she joins through the server that invited her.
    let (status, body) =
        hearth.server.post(&format!("/_matrix/client/v3/rooms/{room}/join"), ann.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "ann accepts: {body}\n{}", synapse.log_tail());
    eventually(synapse, "Synapse has ann as a member", || async {
        synapse_joined(synapse, &sid, &room).await.contains(&ann.user_id)
    })
    .await;
}

#[tokio::test]
async fn each_sides_users_download_the_other_sides_media() {
    let synapse = synapse().await;
    let hearth = FedServer::start(ca()).await;
    let alice = hearth.server.register("alice", "alice's password").await;
    let sal = synapse.register("sal").await;

    // Hearth's media, through Synapse (Synapse asks Hearth's federation media endpoint).
    let photo = media_support::picture(160, 120, image::ImageFormat::Png);
    let media = media_support::uploaded(&hearth.server, &alice.access_token, photo.clone(), "image/png").await;
    let response = synapse
        .client()
        .get(synapse.url(&format!("/_matrix/client/v1/media/download/{media}")))
        .bearer_auth(&sal.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "Synapse serves Hearth's media\n{}", synapse.log_tail());
    assert_eq!(response.bytes().await.unwrap().to_vec(), photo);

    // Synapse's media, through Hearth.
    let file = b"a file from Synapse ".repeat(5000);
    let response = synapse
        .client()
        .post(synapse.url("/_matrix/media/v3/upload?filename=notes.txt"))
        .bearer_auth(&sal.access_token)
        .header("content-type", "text/plain")
        .body(file.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "Synapse takes the upload");
    let uploaded: Value = response.json().await.unwrap();
    let synapse_media = media_support::mxc_path(&uploaded["content_uri"]);
    let (status, headers, got) = media_support::fetch(
        &hearth.server,
        &format!("/_matrix/client/v1/media/download/{synapse_media}"),
        alice.token(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "Hearth serves Synapse's media: {}", String::from_utf8_lossy(&got));
    assert_eq!(got, file);
    assert_eq!(headers["content-type"], "text/plain");
    assert!(headers["content-disposition"].to_str().unwrap().contains("notes.txt"));

    // And a picture's thumbnail, made by Hearth from the fetched original.
    let response = synapse
        .client()
        .post(synapse.url("/_matrix/media/v3/upload"))
        .bearer_auth(&sal.access_token)
        .header("content-type", "image/png")
        .body(photo.clone())
        .send()
        .await
        .unwrap();
    let uploaded: Value = response.json().await.unwrap();
    let synapse_photo = media_support::mxc_path(&uploaded["content_uri"]);
    let (status, _, thumbnail) = media_support::fetch(
        &hearth.server,
        &format!("/_matrix/client/v1/media/thumbnail/{synapse_photo}?width=32&height=32&method=crop"),
        alice.token(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&thumbnail));
    assert_eq!(media_support::dimensions(&thumbnail), (32, 32));
}

/// What `user`'s sync on Synapse shows of an invitation to `room`: its `invite_state` events.
async fn synapse_invite_state(synapse: &Synapse, user: &SynapseUser, room: &str) -> Vec<Value> {
    let (status, sync) = synapse.request(Method::GET, "/_matrix/client/v3/sync", Some(&user.access_token), None).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    sync["rooms"]["invite"][room]["invite_state"]["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_hearth_user_invites_a_synapse_user_who_sees_the_room_joins_and_chats() {
    let synapse = synapse().await;
    let hearth = FedServer::start(ca()).await;
    let hal = hearth.server.register("hal", "hal's password").await;
    let sia = synapse.register("sia").await;
    let create = json!({"preset": "private_chat", "name": "Hearth's parlour", "invite": [sia.user_id]});
    let room = hearth.server.create_room(&hal, create).await;

    // Synapse countersigned the invitation (Hearth stored it only then) and shows it to sia
    // with the room's stripped state.
    let (status, member) = hearth
        .server
        .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", sia.user_id), hal.token())
        .await;
    assert_eq!((status, &member["membership"]), (StatusCode::OK, &json!("invite")), "{member}");
    let invited = synapse_invite_state(synapse, &sia, &room).await;
    assert!(
        invited.iter().any(|event| event["type"] == "m.room.name" && event["content"]["name"] == "Hearth's parlour"),
        "sia's invite_state names the room: {invited:?}\n{}",
        synapse.log_tail()
    );

    let path = format!("/_matrix/client/v3/rooms/{room}/join");
    let (status, body) = synapse.request(Method::POST, &path, Some(&sia.access_token), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "sia accepts through Hearth: {body}\n{}", synapse.log_tail());
    let (status, members) =
        hearth.server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), hal.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(members["joined"][&sia.user_id].is_object(), "Hearth has sia as a member: {members}");
    synapse_send(synapse, &sia, &room, "s1", "thanks for having me").await;
    eventually(synapse, "sia's message reaches Hearth", || async {
        hearth_messages(&hearth, &hal, &room).await.contains(&"thanks for having me".to_owned())
    })
    .await;
}

/// A matrix-sdk client on Hearth and one on Synapse (issue #18): the keys, one-time key
/// claims and room keys (to-device) cross between the two implementations, and each side
/// decrypts the other's messages in a room that spans both servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_sdk_clients_on_hearth_and_synapse_talk_encrypted() {
    use matrix_sdk::Client;
    use matrix_sdk::ruma::api::client::room::create_room::v3::RoomPreset;
    use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
    use sdk_support::{encrypted_room, expect_message, log_in, messages, sync_forever};

    let synapse = synapse().await;
    let hearth = FedServer::start(ca()).await;
    hearth.server.register("erin", "erin's password").await;
    synapse.register("syd").await;
    let erin = log_in(Client::builder().homeserver_url(&hearth.server.base_url), "erin", "erin's password").await;
    let builder =
        Client::builder().homeserver_url(&synapse.base_url).add_root_certificates(vec![synapse.root_certificate()]);
    let syd = log_in(builder, "syd", "syd's password").await;
    let (erin_id, syd_id) = (erin.user_id().unwrap().to_string(), syd.user_id().unwrap().to_string());
    let mut erin_messages = messages(&erin);
    let mut syd_messages = messages(&syd);
    let syncs = [sync_forever(&erin), sync_forever(&syd)];
    erin.encryption().wait_for_e2ee_initialization_tasks().await;
    syd.encryption().wait_for_e2ee_initialization_tasks().await;

    let erin_room = erin.create_room(encrypted_room(RoomPreset::PublicChat, Vec::new())).await.unwrap();
    let room_id = erin_room.room_id().to_owned();
    let via = matrix_sdk::ruma::OwnedServerName::try_from(hearth.name().as_str()).unwrap();
    let room_or_alias = <&matrix_sdk::ruma::RoomOrAliasId>::from(&*room_id);
    let syd_room = syd.join_room_by_id_or_alias(room_or_alias, &[via]).await.expect("syd joins through Hearth");
    // (Synapse sends a room summary only to lazy-loading syncs, so syd's client counts no
    // members from it: erin's side counts both.)
    sdk_support::eventually("both clients know both members and the encryption", || {
        let (a, b) = (erin_room.clone(), syd_room.clone());
        async move {
            a.joined_members_count() == 2
                && a.latest_encryption_state().await.is_ok_and(|s| s.is_encrypted())
                && b.latest_encryption_state().await.is_ok_and(|s| s.is_encrypted())
        }
    })
    .await;
    // Each client knows the other's device before sending, so the room key goes to it.
    let (erin_device, syd_device) = (erin.device_id().unwrap().to_owned(), syd.device_id().unwrap().to_owned());
    sdk_support::eventually("each client knows the other's device", || async {
        let erin_sees = erin.encryption().get_device(syd.user_id().unwrap(), &syd_device).await.ok().flatten();
        let syd_sees = syd.encryption().get_device(erin.user_id().unwrap(), &erin_device).await.ok().flatten();
        erin_sees.is_some() && syd_sees.is_some()
    })
    .await;

    erin_room.send(RoomMessageEventContent::text_plain("sealed for Synapse")).await.expect("erin sends");
    expect_message(&mut syd_messages, "syd decrypts erin's message on Synapse", &erin_id, "sealed for Synapse").await;
    syd_room.send(RoomMessageEventContent::text_plain("sealed for Hearth")).await.expect("syd sends");
    expect_message(&mut erin_messages, "erin decrypts syd's message on Hearth", &syd_id, "sealed for Hearth").await;
    let plaintext = hearth.server.count("SELECT count(*) FROM events WHERE json LIKE '%sealed for%'").await;
    assert_eq!(plaintext, 0, "Hearth saw a plaintext body");
    for task in syncs {
        task.abort();
    }
}
