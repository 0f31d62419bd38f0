//! Membership across two Hearth servers federating over TLS on loopback (issue #16 item 6): a
//! user of B joins a room of A by alias and by id, chats both ways, leaves, is kicked and
//! banned — each step checked as the users on either side observe it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;

use common::federation::{FedServer, FederatedPair};
use common::{TestUser, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Federation is asynchronous: what one side did reaches the other within this.
const DELIVERY: Duration = Duration::from_secs(30);

async fn joined_members(server: &FedServer, user: &TestUser, room: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{room}/joined_members");
    let (status, body) = server.server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["joined"].as_object().unwrap().keys().cloned().collect()
}

/// The rooms `user`'s sync lists as left (an initial sync lists them only when asked to).
async fn left_rooms(server: &FedServer, user: &TestUser) -> Vec<String> {
    let path = format!("/_matrix/client/v3/sync?filter={}", encode(r#"{"room":{"include_leave":true}}"#));
    let (status, sync) = server.server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    sync["rooms"]["leave"].as_object().map(|rooms| rooms.keys().cloned().collect()).unwrap_or_default()
}

/// Polls `check` until it holds; panics with `what` after [`DELIVERY`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < DELIVERY, "{what}: not within {DELIVERY:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bodies of the `m.room.message` events `user` can read in `room`, oldest first.
async fn messages(server: &FedServer, user: &TestUser, room: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50");
    let (status, body) = server.server.get(&path, user.token()).await;
    if status != StatusCode::OK {
        return Vec::new();
    }
    let mut texts: Vec<String> = body["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "m.room.message")
        .filter_map(|event| event["content"]["body"].as_str().map(str::to_owned))
        .collect();
    texts.reverse();
    texts
}

/// `a_user` says `texts.0`, `b_user` answers `texts.1`; each reaches the other's server.
async fn chat_both_ways(
    (a, a_user): (&FedServer, &TestUser),
    (b, b_user): (&FedServer, &TestUser),
    room: &str,
    texts: (&str, &str),
) {
    // One exchange per room: the texts' lengths make distinct transaction ids enough.
    a.server.send_text(a_user, room, &format!("a-{}", texts.0.len()), texts.0).await;
    eventually("A's message reaches B", || async { messages(b, b_user, room).await.contains(&texts.0.to_owned()) })
        .await;
    b.server.send_text(b_user, room, &format!("b-{}", texts.1.len()), texts.1).await;
    eventually("B's message reaches A", || async { messages(a, a_user, room).await.contains(&texts.1.to_owned()) })
        .await;
}

async fn alice_on_a_and_bob_on_b(pair: &FederatedPair) -> (TestUser, TestUser) {
    let alice = pair.a.server.register("alice", "alice's password").await;
    let bob = pair.b.server.register("bob", "bob's password").await;
    (alice, bob)
}

async fn post(server: &FedServer, user: &TestUser, path: &str, body: Value) -> (StatusCode, Value) {
    server.server.post(path, user.token(), body).await
}

#[tokio::test]
async fn a_user_of_b_joins_a_room_of_a_by_alias_chats_both_ways_and_leaves() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let (alice, bob) = alice_on_a_and_bob_on_b(&pair).await;
    let room =
        a.server.create_room(&alice, json!({"preset": "public_chat", "room_alias_name": "tea", "name": "Tea"})).await;
    let alias = format!("#tea:{}", a.name());

    // B resolves the alias by asking A, then joins through A.
    let (status, body) =
        b.server.get(&format!("/_matrix/client/v3/directory/room/{}", encode(&alias)), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], room);
    let (status, body) = post(b, &bob, &format!("/_matrix/client/v3/join/{}", encode(&alias)), json!({})).await;
    assert_eq!(status, StatusCode::OK, "bob joins by alias: {body}");
    assert_eq!(body["room_id"], room);

    // Both sides agree bob is in; bob's sync on B shows the room with its name.
    assert!(joined_members(a, &alice, &room).await.contains(&bob.user_id));
    assert!(joined_members(b, &bob, &room).await.contains(&alice.user_id), "B holds the room's state");
    let (status, sync) = b.server.get("/_matrix/client/v3/sync", bob.token()).await;
    assert_eq!(status, StatusCode::OK);
    let joined = &sync["rooms"]["join"][&room];
    let state: Vec<Value> = joined["state"]["events"].as_array().into_iter().flatten().cloned().collect();
    let timeline: Vec<Value> = joined["timeline"]["events"].as_array().into_iter().flatten().cloned().collect();
    assert!(
        state.iter().chain(&timeline).any(|event| event["type"] == "m.room.name" && event["content"]["name"] == "Tea"),
        "bob's sync shows the room's name: {joined}"
    );

    // A -> B and B -> A.
    chat_both_ways((a, &alice), (b, &bob), &room, ("hello from A", "hello from B")).await;

    b.server.leave(&bob, &room).await;
    eventually("A sees bob leave", || async { !joined_members(a, &alice, &room).await.contains(&bob.user_id) }).await;
}

#[tokio::test]
async fn a_user_of_b_joins_by_room_id_through_a_and_is_kicked_then_banned() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let (alice, bob) = alice_on_a_and_bob_on_b(&pair).await;
    let room = a.server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let join_by_id = format!("/_matrix/client/v3/join/{}?via={}", encode(&room), encode(a.name().as_str()));

    // Without a server to ask, B cannot know where the room lives (v12 ids name no server).
    let (status, body) = post(b, &bob, &format!("/_matrix/client/v3/join/{}", encode(&room)), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, body) = post(b, &bob, &join_by_id, json!({})).await;
    assert_eq!(status, StatusCode::OK, "bob joins by id via A: {body}");
    assert!(joined_members(a, &alice, &room).await.contains(&bob.user_id));

    let (status, body) =
        post(a, &alice, &format!("/_matrix/client/v3/rooms/{room}/kick"), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("bob's sync on B shows the kick", || async { left_rooms(b, &bob).await.contains(&room) }).await;

    // Kicked, not banned: bob can come back.
    let (status, body) = post(b, &bob, &join_by_id, json!({})).await;
    assert_eq!(status, StatusCode::OK, "bob rejoins: {body}");
    assert!(joined_members(a, &alice, &room).await.contains(&bob.user_id));

    let (status, body) =
        post(a, &alice, &format!("/_matrix/client/v3/rooms/{room}/ban"), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!joined_members(a, &alice, &room).await.contains(&bob.user_id));
    eventually("bob's sync on B shows the ban", || async { left_rooms(b, &bob).await.contains(&room) }).await;
    let (status, body) = post(b, &bob, &join_by_id, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a banned user stays out: {body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN");
}

/// The invitation `user`'s sync on `server` shows for `room`: its `invite_state` events.
async fn invite_state(server: &FedServer, user: &TestUser, room: &str) -> Option<Vec<Value>> {
    let (status, sync) = server.server.get("/_matrix/client/v3/sync", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    sync["rooms"]["invite"][room]["invite_state"]["events"].as_array().cloned()
}

/// The event of `kind` in an `invite_state`, if there.
fn stripped<'e>(events: &'e [Value], kind: &str) -> Option<&'e Value> {
    events.iter().find(|event| event["type"] == kind)
}

#[tokio::test]
async fn users_of_b_invited_from_a_see_the_room_join_and_chat_and_a_refused_invitation_leaves_nothing() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let (alice, bob) = alice_on_a_and_bob_on_b(&pair).await;
    let carol = b.server.register("carol", "carol's password").await;

    // createRoom's invite list reaches bob on B, with what the room is.
    let create = json!({"preset": "private_chat", "name": "Secret garden", "invite": [bob.user_id]});
    let room = a.server.create_room(&alice, create).await;
    let invited = invite_state(b, &bob, &room).await.expect("bob's sync on B shows the invitation");
    assert_eq!(stripped(&invited, "m.room.name").unwrap()["content"]["name"], "Secret garden", "{invited:?}");
    assert_eq!(stripped(&invited, "m.room.join_rules").unwrap()["content"]["join_rule"], "invite");
    let member = stripped(&invited, "m.room.member").unwrap();
    assert_eq!((&member["sender"], &member["state_key"]), (&json!(alice.user_id), &json!(bob.user_id)));
    assert_eq!(member["content"]["membership"], "invite");
    // A stored the invitation as the room's state: bob is invited there.
    let member_path = |user: &str| format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}");
    let (status, content) = a.server.get(&member_path(&bob.user_id), alice.token()).await;
    assert_eq!((status, &content["membership"]), (StatusCode::OK, &json!("invite")), "{content}");

    // Invited, bob joins the invite-only room through A (no via needed: the inviter's server
    // is known), and they chat.
    let (status, body) = post(b, &bob, &format!("/_matrix/client/v3/join/{}", encode(&room)), json!({})).await;
    assert_eq!(status, StatusCode::OK, "bob accepts: {body}");
    assert!(joined_members(a, &alice, &room).await.contains(&bob.user_id));
    assert!(invite_state(b, &bob, &room).await.is_none(), "the invitation is over once joined");
    chat_both_ways((a, &alice), (b, &bob), &room, ("welcome, bob", "thanks, alice")).await;

    // /invite of another user of B, a server already in the room.
    let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
    let (status, body) = post(a, &alice, &invite, json!({"user_id": carol.user_id})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // B is in the room, so the invitation reaches carol's sync through the room (a /send).
    eventually("carol's sync on B shows the invitation", || async {
        invite_state(b, &carol, &room).await.is_some_and(|invited| {
            stripped(&invited, "m.room.name").is_some_and(|name| name["content"]["name"] == "Secret garden")
        })
    })
    .await;
    let (status, content) = b.server.get(&member_path(&carol.user_id), bob.token()).await;
    assert_eq!((status, &content["membership"]), (StatusCode::OK, &json!("invite")), "bob sees carol invited");

    // B refuses an invitation of a user it does not have: the client hears why, and A keeps
    // nothing of it.
    let nobody = format!("@nobody:{}", b.name());
    let (status, body) = post(a, &alice, &invite, json!({"user_id": nobody})).await;
    assert_eq!((status, &body["errcode"]), (StatusCode::NOT_FOUND, &json!("M_NOT_FOUND")), "{body}");
    let (status, body) = a.server.get(&member_path(&nobody), alice.token()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no member event of the refused invitee: {body}");
}

#[tokio::test]
async fn a_user_of_b_knocks_on_a_room_of_a_is_let_in_by_its_admin_and_joins() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let (alice, bob) = alice_on_a_and_bob_on_b(&pair).await;
    let knock_rules = json!({"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}});
    let create = json!({"preset": "private_chat", "name": "Knock knock", "initial_state": [knock_rules]});
    let room = a.server.create_room(&alice, create).await;
    let member_path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", bob.user_id);

    // Without a server to ask, B cannot know where the room lives.
    let knock = |via: &str| format!("/_matrix/client/v3/knock/{}{via}", encode(&room));
    let (status, body) = post(b, &bob, &knock(""), json!({"reason": "let me in"})).await;
    assert_eq!((status, &body["errcode"]), (StatusCode::NOT_FOUND, &json!("M_NOT_FOUND")), "{body}");

    let via = format!("?via={}", encode(a.name().as_str()));
    let (status, body) = post(b, &bob, &knock(&via), json!({"reason": "let me in"})).await;
    assert_eq!(status, StatusCode::OK, "bob knocks through A: {body}");
    assert_eq!(body["room_id"], room);

    // A holds the knock in the room's state; bob's sync on B shows it with the room's name.
    let (status, content) = a.server.get(&member_path, alice.token()).await;
    assert_eq!((status, &content["membership"]), (StatusCode::OK, &json!("knock")), "{content}");
    assert_eq!(content["reason"], "let me in");
    let (status, sync) = b.server.get("/_matrix/client/v3/sync", bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    let knock_state = sync["rooms"]["knock"][&room]["knock_state"]["events"].as_array().cloned().unwrap_or_default();
    let name = stripped(&knock_state, "m.room.name");
    assert_eq!(name.map(|name| &name["content"]["name"]), Some(&json!("Knock knock")), "{sync}");
    assert_eq!(stripped(&knock_state, "m.room.member").unwrap()["content"]["membership"], "knock", "{sync}");

    // Alice lets bob in (an invitation over the knock); he joins and is a member on both sides.
    let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
    let (status, body) = post(a, &alice, &invite, json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::OK, "alice accepts the knock: {body}");
    assert!(invite_state(b, &bob, &room).await.is_some(), "bob's sync on B shows the invitation");
    let (status, body) = post(b, &bob, &format!("/_matrix/client/v3/join/{}", encode(&room)), json!({})).await;
    assert_eq!(status, StatusCode::OK, "bob joins: {body}");
    assert!(joined_members(a, &alice, &room).await.contains(&bob.user_id));
    assert!(joined_members(b, &bob, &room).await.contains(&alice.user_id), "B holds the room's state");
}

#[tokio::test]
async fn a_user_of_b_reads_the_profile_of_a_user_of_a() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let (alice, bob) = alice_on_a_and_bob_on_b(&pair).await;
    let displayname = format!("/_matrix/client/v3/profile/{}/displayname", alice.user_id);
    let (status, body) = a.server.put(&displayname, alice.token(), json!({"displayname": "Alice of A"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // B asks A for it.
    let (status, body) = b.server.get(&format!("/_matrix/client/v3/profile/{}", alice.user_id), bob.token()).await;
    assert_eq!((status, &body["displayname"]), (StatusCode::OK, &json!("Alice of A")), "{body}");
    let (status, body) = b.server.get(&displayname, bob.token()).await;
    assert_eq!((status, &body["displayname"]), (StatusCode::OK, &json!("Alice of A")), "{body}");
    let (status, body) =
        b.server.get(&format!("/_matrix/client/v3/profile/{}/avatar_url", alice.user_id), bob.token()).await;
    assert_eq!((status, &body["errcode"]), (StatusCode::NOT_FOUND, &json!("M_NOT_FOUND")), "no avatar: {body}");
    let nobody = format!("@nobody:{}", a.name());
    let (status, body) = b.server.get(&format!("/_matrix/client/v3/profile/{nobody}"), bob.token()).await;
    assert_eq!((status, &body["errcode"]), (StatusCode::NOT_FOUND, &json!("M_NOT_FOUND")), "{body}");
}
