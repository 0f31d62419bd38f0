//! Who may do and see what in a room: authorisation by membership and power level, history
//! visibility, createRoom's options, and paging through history — as users observe them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "access-test-password";

async fn send(server: &TestServer, user: &TestUser, room: &str, txn: &str, text: &str) -> (StatusCode, Value) {
    server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            user.token(),
            json!({"msgtype": "m.text", "body": text}),
        )
        .await
}

/// Sends a message that must succeed; returns its event id.
async fn say(server: &TestServer, user: &TestUser, room: &str, text: &str) -> String {
    let (status, body) = send(server, user, room, text, text).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

async fn put_state(
    server: &TestServer,
    user: &TestUser,
    room: &str,
    kind: &str,
    content: Value,
) -> (StatusCode, Value) {
    server.put(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"), user.token(), content).await
}

async fn get_state(server: &TestServer, user: &TestUser, room: &str, kind: &str, key: &str) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/{key}"), user.token()).await
}

/// The content of a state event that `user` must be able to read.
async fn state_content(server: &TestServer, user: &TestUser, room: &str, kind: &str, key: &str) -> Value {
    let (status, body) = get_state(server, user, room, kind, key).await;
    assert_eq!(status, StatusCode::OK, "{kind}/{key}: {body}");
    body
}

async fn membership_action(
    server: &TestServer,
    actor: &TestUser,
    room: &str,
    action: &str,
    target: &TestUser,
) -> (StatusCode, Value) {
    server
        .post(&format!("/_matrix/client/v3/rooms/{room}/{action}"), actor.token(), json!({"user_id": target.user_id}))
        .await
}

async fn invite(server: &TestServer, actor: &TestUser, room: &str, target: &TestUser) {
    let (status, body) = membership_action(server, actor, room, "invite", target).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn try_join(server: &TestServer, user: &TestUser, room: &str) -> (StatusCode, Value) {
    server.post(&format!("/_matrix/client/v3/join/{room}"), user.token(), json!({})).await
}

async fn join(server: &TestServer, user: &TestUser, room: &str) {
    let (status, body) = try_join(server, user, room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn joined_rooms(server: &TestServer, user: &TestUser) -> Vec<String> {
    let (status, body) = server.get("/_matrix/client/v3/joined_rooms", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["joined_rooms"].as_array().expect("joined_rooms").iter().map(|r| r.as_str().expect("id").to_owned()).collect()
}

async fn joined_members(server: &TestServer, user: &TestUser, room: &str) -> Vec<String> {
    let (status, body) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut members: Vec<String> = body["joined"].as_object().expect("joined").keys().cloned().collect();
    members.sort();
    members
}

async fn messages(server: &TestServer, user: &TestUser, room: &str, query: &str) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?{query}"), user.token()).await
}

/// The message bodies a user reads with one backwards page over the whole room, newest first.
async fn readable_bodies(server: &TestServer, user: &TestUser, room: &str) -> Vec<String> {
    let (status, page) = messages(server, user, room, "dir=b&limit=1000").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    bodies(&page)
}

fn bodies(page: &Value) -> Vec<String> {
    chunk(page)
        .iter()
        .filter(|event| event["type"] == "m.room.message")
        .map(|event| event["content"]["body"].as_str().expect("body").to_owned())
        .collect()
}

fn chunk(page: &Value) -> Vec<Value> {
    page["chunk"].as_array().expect("chunk").clone()
}

async fn get_event(server: &TestServer, user: &TestUser, room: &str, event_id: &str) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"), user.token()).await
}

fn state_value<'a>(state: &'a Value, kind: &str, key: &str) -> Option<&'a Value> {
    state.as_array().expect("state").iter().find(|e| e["type"] == kind && e["state_key"] == key)
}

// ---------------------------------------------------------------------------------------------
// Membership and history visibility

#[tokio::test]
async fn outsiders_are_refused_a_private_room_but_may_read_a_world_readable_one() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let eve = server.register("eve", PW).await;

    let private = server.create_room(&alice, json!({"preset": "private_chat", "name": "Secret"})).await;
    let secret = say(&server, &alice, &private, "secret").await;
    let forbidden = |response: (StatusCode, Value)| assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    forbidden(send(&server, &eve, &private, "t1", "hi").await);
    forbidden(messages(&server, &eve, &private, "dir=b").await);
    forbidden(server.get(&format!("/_matrix/client/v3/rooms/{private}/state"), eve.token()).await);
    forbidden(get_state(&server, &eve, &private, "m.room.name", "").await);
    // The spec answers 404 for an event one may not see, so its existence is not revealed.
    assert_error(&get_event(&server, &eve, &private, &secret).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    forbidden(server.get(&format!("/_matrix/client/v3/rooms/{private}/joined_members"), eve.token()).await);
    forbidden(put_state(&server, &eve, &private, "m.room.topic", json!({"topic": "mine"})).await);
    assert_eq!(readable_bodies(&server, &alice, &private).await, vec!["secret"], "only alice's message is there");

    let open = server.create_room(&alice,
        json!({
            "preset": "private_chat",
            "name": "Open book",
            "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}],
        }),
    )
    .await;
    let public_words = say(&server, &alice, &open, "for everyone").await;
    assert_eq!(readable_bodies(&server, &eve, &open).await, vec!["for everyone"]);
    let (status, event) = get_event(&server, &eve, &open, &public_words).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["content"]["body"], "for everyone");
    assert_eq!(state_content(&server, &eve, &open, "m.room.name", "").await["name"], "Open book");
    let (status, state) = server.get(&format!("/_matrix/client/v3/rooms/{open}/state"), eve.token()).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert!(state_value(&state, "m.room.member", &alice.user_id).is_some(), "{state}");
    // Reading is not taking part.
    forbidden(send(&server, &eve, &open, "t2", "hi").await);
    assert_eq!(readable_bodies(&server, &alice, &open).await, vec!["for everyone"]);
}

#[tokio::test]
async fn joined_visibility_hides_what_was_said_before_a_member_joined() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(
            &alice,
            json!({
                "preset": "public_chat",
                "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}],
            }),
        )
        .await;
    let before = say(&server, &alice, &room, "before bob").await;
    join(&server, &bob, &room).await;
    let after = say(&server, &alice, &room, "after bob").await;

    assert_eq!(readable_bodies(&server, &bob, &room).await, vec!["after bob"]);
    assert_eq!(readable_bodies(&server, &alice, &room).await, vec!["after bob", "before bob"]);
    let (status, page) = messages(&server, &bob, &room, "dir=b&limit=1000").await;
    assert_eq!(status, StatusCode::OK);
    // Bob sees his own arrival.
    assert!(chunk(&page).iter().any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str()));
    assert_error(&get_event(&server, &bob, &room, &before).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_eq!(get_event(&server, &bob, &room, &after).await.0, StatusCode::OK);
}

#[tokio::test]
async fn invited_visibility_shows_history_from_the_invitation_on() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(
            &alice,
            json!({
                "preset": "private_chat",
                "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "invited"}}],
            }),
        )
        .await;
    say(&server, &alice, &room, "before the invite").await;
    invite(&server, &alice, &room, &bob).await;
    say(&server, &alice, &room, "while bob is invited").await;
    join(&server, &bob, &room).await;
    say(&server, &alice, &room, "after bob joined").await;

    assert_eq!(readable_bodies(&server, &bob, &room).await, vec!["after bob joined", "while bob is invited"]);
    assert_eq!(readable_bodies(&server, &alice, &room).await.len(), 3);
}

#[tokio::test]
async fn shared_visibility_shows_everything_while_joined_and_up_to_the_leave_afterwards() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat", "name": "Before"})).await;
    let visibility = state_content(&server, &alice, &room, "m.room.history_visibility", "").await;
    assert_eq!(visibility["history_visibility"], "shared");
    say(&server, &alice, &room, "before bob").await;
    join(&server, &bob, &room).await;
    let during = say(&server, &bob, &room, "bob was here").await;
    assert_eq!(readable_bodies(&server, &bob, &room).await, vec!["bob was here", "before bob"]);

    server.leave(&bob, &room).await;
    let after = say(&server, &alice, &room, "after bob left").await;
    let (status, body) = put_state(&server, &alice, &room, "m.room.name", json!({"name": "After"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // History up to the leave, the leave itself, and nothing after it.
    let (status, page) = messages(&server, &bob, &room, "dir=b&limit=1000").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(bodies(&page), vec!["bob was here", "before bob"]);
    let newest = &chunk(&page)[0];
    assert_eq!(
        (newest["type"].as_str(), newest["content"]["membership"].as_str()),
        (Some("m.room.member"), Some("leave"))
    );
    assert_eq!(get_event(&server, &bob, &room, &during).await.0, StatusCode::OK);
    assert_error(&get_event(&server, &bob, &room, &after).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // The state as it was when bob left.
    assert_eq!(state_content(&server, &bob, &room, "m.room.name", "").await["name"], "Before");
    let (status, state) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!(state_value(&state, "m.room.name", "").expect("name")["content"]["name"], "Before");
    assert_eq!(state_value(&state, "m.room.member", &bob.user_id).expect("bob")["content"]["membership"], "leave");
    assert_eq!(state_content(&server, &alice, &room, "m.room.name", "").await["name"], "After");
    assert_error(
        &server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), bob.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    // Back in, everything is visible again.
    join(&server, &bob, &room).await;
    assert_eq!(readable_bodies(&server, &bob, &room).await, vec!["after bob left", "bob was here", "before bob"]);
    assert_eq!(state_content(&server, &bob, &room, "m.room.name", "").await["name"], "After");
}

// ---------------------------------------------------------------------------------------------
// Power levels and membership changes

async fn power_levels(server: &TestServer, user: &TestUser, room: &str) -> Value {
    state_content(server, user, room, "m.room.power_levels", "").await
}

#[tokio::test]
async fn power_levels_decide_who_may_change_state_and_cannot_be_raised_past_ones_own() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat", "name": "Alice's", "topic": "Hers"})).await;
    join(&server, &bob, &room).await;
    join(&server, &carol, &room).await;

    // Below state_default (50) bob may talk but not change the room.
    say(&server, &bob, &room, "hi").await;
    for (kind, content) in [("m.room.name", json!({"name": "Bob's"})), ("m.room.topic", json!({"topic": "His"}))] {
        assert_error(&put_state(&server, &bob, &room, kind, content).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    assert_eq!(state_content(&server, &bob, &room, "m.room.name", "").await["name"], "Alice's");
    assert_eq!(state_content(&server, &bob, &room, "m.room.topic", "").await["topic"], "Hers");

    // Bob cannot promote himself.
    let mut raised = power_levels(&server, &bob, &room).await;
    raised["users"][&bob.user_id] = json!(50);
    raised["events"]["m.room.power_levels"] = json!(50);
    assert_error(
        &put_state(&server, &bob, &room, "m.room.power_levels", raised.clone()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert!(power_levels(&server, &alice, &room).await["users"].get(&bob.user_id).is_none());

    // The creator raises bob to moderator, who may then edit power levels too; now bob may
    // rename the room.
    let (status, body) = put_state(&server, &alice, &room, "m.room.power_levels", raised).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = put_state(&server, &bob, &room, "m.room.name", json!({"name": "Bob's"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(state_content(&server, &alice, &room, "m.room.name", "").await["name"], "Bob's");

    // ...but not above his own level, nor give others more than he has.
    let mut too_high = power_levels(&server, &bob, &room).await;
    too_high["users"][&bob.user_id] = json!(100);
    assert_error(
        &put_state(&server, &bob, &room, "m.room.power_levels", too_high).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let mut carol_higher = power_levels(&server, &bob, &room).await;
    carol_higher["users"][&carol.user_id] = json!(75);
    assert_error(
        &put_state(&server, &bob, &room, "m.room.power_levels", carol_higher).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let levels = power_levels(&server, &alice, &room).await;
    assert_eq!(levels["users"][&bob.user_id], 50);
    assert!(levels["users"].get(&carol.user_id).is_none(), "{levels}");
    // Within his level he may share power.
    let mut carol_equal = levels.clone();
    carol_equal["users"][&carol.user_id] = json!(25);
    let (status, body) = put_state(&server, &bob, &room, "m.room.power_levels", carol_equal).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(power_levels(&server, &carol, &room).await["users"][&carol.user_id], 25);
}

#[tokio::test]
async fn kicks_bans_and_unbans_follow_power_and_joined_rooms_follows_membership() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &room).await;
    join(&server, &carol, &room).await;
    assert_eq!(joined_rooms(&server, &carol).await, vec![room.clone()]);

    // Kicking needs the kick level (50): carol has 0.
    assert_error(&membership_action(&server, &carol, &room, "kick", &bob).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert!(joined_members(&server, &alice, &room).await.contains(&bob.user_id));
    assert_error(&membership_action(&server, &carol, &room, "ban", &bob).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    let (status, body) = membership_action(&server, &alice, &room, "kick", &carol).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!joined_members(&server, &alice, &room).await.contains(&carol.user_id));
    assert_eq!(joined_rooms(&server, &carol).await, Vec::<String>::new());
    assert_error(&send(&server, &carol, &room, "k1", "still here?").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // A kicked user may come back to a public room.
    join(&server, &carol, &room).await;
    assert_eq!(joined_rooms(&server, &carol).await, vec![room.clone()]);

    // A banned one may not, until unbanned.
    let (status, body) = membership_action(&server, &alice, &room, "ban", &carol).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(state_content(&server, &alice, &room, "m.room.member", &carol.user_id).await["membership"], "ban");
    assert_error(&try_join(&server, &carol, &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(joined_rooms(&server, &carol).await, Vec::<String>::new());
    // Only those with ban power may lift a ban.
    assert_error(&membership_action(&server, &bob, &room, "unban", &carol).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(&try_join(&server, &carol, &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (status, body) = membership_action(&server, &alice, &room, "unban", &carol).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(state_content(&server, &alice, &room, "m.room.member", &carol.user_id).await["membership"], "leave");
    join(&server, &carol, &room).await;
    assert_eq!(joined_rooms(&server, &carol).await, vec![room.clone()]);

    // Leaving and coming back.
    server.leave(&bob, &room).await;
    assert_eq!(joined_rooms(&server, &bob).await, Vec::<String>::new());
    let mut expected = vec![alice.user_id.clone(), carol.user_id.clone()];
    expected.sort();
    assert_eq!(joined_members(&server, &alice, &room).await, expected);
    join(&server, &bob, &room).await;
    assert_eq!(joined_rooms(&server, &bob).await, vec![room.clone()]);
    say(&server, &bob, &room, "back").await;
}

#[tokio::test]
async fn only_invited_users_may_join_an_invite_only_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = server.create_room(&alice, json!({"preset": "private_chat"})).await;

    assert_error(&try_join(&server, &bob, &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    invite(&server, &alice, &room, &bob).await;
    assert_eq!(state_content(&server, &alice, &room, "m.room.member", &bob.user_id).await["membership"], "invite");
    // An invitation is for its invitee only; an invited user who has not joined cannot invite.
    assert_error(&try_join(&server, &carol, &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(
        &membership_action(&server, &bob, &room, "invite", &carol).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    join(&server, &bob, &room).await;
    assert_eq!(joined_rooms(&server, &bob).await, vec![room.clone()]);

    // After leaving, the invitation is spent.
    server.leave(&bob, &room).await;
    assert_error(&try_join(&server, &bob, &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(joined_rooms(&server, &bob).await, Vec::<String>::new());
    // Any member may invite (invite level 0), and the invitee may then join.
    invite(&server, &alice, &room, &carol).await;
    join(&server, &carol, &room).await;
    invite(&server, &carol, &room, &bob).await;
    join(&server, &bob, &room).await;
    assert_eq!(joined_members(&server, &alice, &room).await.len(), 3);

    // Inviting someone unknown is a 404 and changes nothing.
    let before = server.count("SELECT count(*) FROM events").await;
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            alice.token(),
            json!({"user_id": "@nobody:hearth.test"}),
        )
        .await;
    assert_error(&(status, body), StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_eq!(server.count("SELECT count(*) FROM events").await, before);
}

// ---------------------------------------------------------------------------------------------
// createRoom

#[tokio::test]
async fn presets_set_join_rules_history_visibility_and_guest_access() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    for (body, join_rule, guest_access) in [
        (json!({"preset": "private_chat"}), "invite", "can_join"),
        (json!({"preset": "trusted_private_chat"}), "invite", "can_join"),
        (json!({"preset": "public_chat"}), "public", "forbidden"),
        (json!({"visibility": "public"}), "public", "forbidden"),
        (json!({}), "invite", "can_join"),
    ] {
        let room = server.create_room(&alice, body.clone()).await;
        let rules = state_content(&server, &alice, &room, "m.room.join_rules", "").await;
        assert_eq!(rules["join_rule"], join_rule, "{body}");
        let visibility = state_content(&server, &alice, &room, "m.room.history_visibility", "").await;
        assert_eq!(visibility["history_visibility"], "shared", "{body}");
        let guests = state_content(&server, &alice, &room, "m.room.guest_access", "").await;
        assert_eq!(guests["guest_access"], guest_access, "{body}");
    }
}

#[tokio::test]
async fn trusted_private_chat_invitees_get_the_creators_power() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;

    // Before v12: power level 100 in m.room.power_levels.
    let room = server
        .create_room(
            &alice,
            json!({"preset": "trusted_private_chat", "invite": [bob.user_id], "room_version": "11", "is_direct": true}),
        )
        .await;
    let levels = power_levels(&server, &alice, &room).await;
    assert_eq!(levels["users"][&alice.user_id], 100);
    assert_eq!(levels["users"][&bob.user_id], 100);
    let member = state_content(&server, &alice, &room, "m.room.member", &bob.user_id).await;
    assert_eq!(member["membership"], "invite");
    assert_eq!(member["is_direct"], true);
    join(&server, &bob, &room).await;
    let (status, body) = put_state(&server, &bob, &room, "m.room.name", json!({"name": "Ours"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // v12: creators are named in the create event and stand above power levels.
    let room = server.create_room(&alice, json!({"preset": "trusted_private_chat", "invite": [bob.user_id]})).await;
    let create = state_content(&server, &alice, &room, "m.room.create", "").await;
    assert_eq!(create["room_version"], "12");
    assert_eq!(create["additional_creators"], json!([bob.user_id]));
    assert!(create.get("creator").is_none(), "v12 has no creator field: {create}");
    let levels = power_levels(&server, &alice, &room).await;
    assert!(levels["users"].get(&alice.user_id).is_none(), "{levels}");
    assert!(levels["users"].get(&bob.user_id).is_none(), "{levels}");
    let member = state_content(&server, &alice, &room, "m.room.member", &bob.user_id).await;
    assert!(member.get("is_direct").is_none(), "{member}");
    join(&server, &bob, &room).await;
    let (status, body) = put_state(&server, &bob, &room, "m.room.power_levels", json!({"users_default": 10})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A private chat gives invitees nothing.
    let room = server
        .create_room(&alice, json!({"preset": "private_chat", "invite": [bob.user_id], "room_version": "11"}))
        .await;
    assert!(power_levels(&server, &alice, &room).await["users"].get(&bob.user_id).is_none());
}

#[tokio::test]
async fn power_level_overrides_initial_state_and_creation_content_shape_the_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;

    let room = server
        .create_room(
            &alice,
            json!({
                "preset": "public_chat",
                "room_version": "11",
                "power_level_content_override": {
                    "users": {alice.user_id.clone(): 100, bob.user_id.clone(): 60},
                    "events_default": 10,
                    "events": {"m.room.name": 60},
                },
            }),
        )
        .await;
    let levels = power_levels(&server, &alice, &room).await;
    assert_eq!(levels["users"], json!({alice.user_id.clone(): 100, bob.user_id.clone(): 60}));
    assert_eq!(levels["events_default"], 10);
    assert_eq!(levels["events"], json!({"m.room.name": 60}), "override replaces the key whole");
    assert_eq!(levels["state_default"], 50, "keys not overridden keep their defaults");
    join(&server, &bob, &room).await;
    let (status, body) = put_state(&server, &bob, &room, "m.room.name", json!({"name": "Bob may"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // initial_state wins over the preset; name and topic win over initial_state.
    let room = server
        .create_room(
            &alice,
            json!({
                "preset": "public_chat",
                "name": "From the field",
                "initial_state": [
                    {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "invite"}},
                    {"type": "m.room.name", "content": {"name": "From initial_state"}},
                    {"type": "org.example.setting", "state_key": "k", "content": {"on": true}},
                ],
            }),
        )
        .await;
    assert_eq!(state_content(&server, &alice, &room, "m.room.join_rules", "").await["join_rule"], "invite");
    assert_eq!(state_content(&server, &alice, &room, "m.room.name", "").await["name"], "From the field");
    assert_eq!(state_content(&server, &alice, &room, "org.example.setting", "k").await["on"], true);
    assert_error(&try_join(&server, &bob, &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (_, page) = messages(&server, &alice, &room, "dir=b&limit=1000").await;
    let join_rules = chunk(&page).iter().filter(|e| e["type"] == "m.room.join_rules").count();
    assert_eq!(join_rules, 1, "the preset's join rule is not sent at all: {page}");

    // A space.
    let room = server.create_room(&alice, json!({"creation_content": {"type": "m.space"}, "name": "Space"})).await;
    let create = state_content(&server, &alice, &room, "m.room.create", "").await;
    assert_eq!(create["type"], "m.space");
    assert_eq!(create["room_version"], "12");
}

#[tokio::test]
async fn every_supported_room_version_can_be_created_and_others_are_refused_without_a_trace() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let supported = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"];
    for version in supported {
        let room = server.create_room(&alice, json!({"room_version": version})).await;
        assert_eq!(state_content(&server, &alice, &room, "m.room.create", "").await["room_version"], version);
        say(&server, &alice, &room, &format!("hello v{version}")).await;
    }
    let rooms = server.count("SELECT count(*) FROM rooms").await;
    let events = server.count("SELECT count(*) FROM events").await;
    for version in ["0", "13", "org.example.custom"] {
        let response =
            server.post("/_matrix/client/v3/createRoom", alice.token(), json!({"room_version": version})).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION");
    }
    // An unknown invitee is a 404, and no half-made room is left behind.
    let response = server
        .post(
            "/_matrix/client/v3/createRoom",
            alice.token(),
            json!({"invite": ["@nobody:hearth.test"], "name": "Never"}),
        )
        .await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // So is power-level content the auth rules refuse: it must not leave a half-made room.
    let response = server
        .post(
            "/_matrix/client/v3/createRoom",
            alice.token(),
            json!({"room_version": "11", "power_level_content_override": {"ban": "a lot"}}),
        )
        .await;
    assert_eq!(response.0.as_u16() / 100, 4, "a client error: {}", response.1);
    assert_eq!(server.count("SELECT count(*) FROM rooms").await, rooms);
    assert_eq!(server.count("SELECT count(*) FROM events").await, events);
    assert_eq!(joined_rooms(&server, &alice).await.len(), supported.len());
}

// ---------------------------------------------------------------------------------------------
// Paging through history

#[tokio::test]
async fn messages_pages_backwards_and_forwards_with_tokens() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({"preset": "private_chat", "name": "Pages"})).await;
    let setup = {
        let (_, page) = messages(&server, &alice, &room, "dir=b&limit=1000").await;
        chunk(&page).len()
    };
    assert!(setup >= 6, "create, join, power levels, join rules, visibility, guests, name");
    let sent: Vec<String> = {
        let mut sent = Vec::new();
        for i in 0..25 {
            sent.push(say(&server, &alice, &room, &format!("m{i:02}")).await);
        }
        sent
    };
    let texts: Vec<String> = (0..25).map(|i| format!("m{i:02}")).collect();

    // Backwards, 10 at a time, each page's `end` the next page's `from`.
    let mut pages = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let query = match &from {
            Some(token) => format!("dir=b&limit=10&from={token}"),
            None => "dir=b&limit=10".to_owned(),
        };
        let (status, page) = messages(&server, &alice, &room, &query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page["start"].is_string());
        pages.push(page.clone());
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
        assert!(pages.len() < 10, "pagination ends");
    }
    let message_counts: Vec<usize> = pages.iter().map(|page| bodies(page).len()).filter(|n| *n > 0).collect();
    assert_eq!(message_counts, vec![10, 10, 5]);
    let all: Vec<Value> = pages.iter().flat_map(chunk).collect();
    assert_eq!(all.len(), 25 + setup, "every event once");
    let mut backwards_bodies: Vec<String> = pages.iter().flat_map(bodies).collect();
    backwards_bodies.reverse();
    assert_eq!(backwards_bodies, texts, "newest first");
    // The room's setup comes last going backwards, ending with its creation.
    assert!(all[25..].iter().all(|e| e["type"] != "m.room.message"));
    assert_eq!(all.last().expect("events")["type"], "m.room.create");
    let ids: Vec<&str> = all[..25].iter().map(|e| e["event_id"].as_str().expect("id")).collect();
    let mut expected_ids: Vec<&str> = sent.iter().map(String::as_str).collect();
    expected_ids.reverse();
    assert_eq!(ids, expected_ids);

    // Forwards from the first page's end: the rest of the room, oldest first.
    let first_end = pages[0]["end"].as_str().expect("end");
    let (status, forwards) = messages(&server, &alice, &room, &format!("dir=f&limit=10&from={first_end}")).await;
    assert_eq!(status, StatusCode::OK, "{forwards}");
    let forwards_ids: Vec<String> =
        chunk(&forwards).iter().map(|e| e["event_id"].as_str().expect("id").to_owned()).collect();
    assert_eq!(forwards_ids, sent[15..25].to_vec(), "the first backwards page, in order");
    // Forwards from the second page's end returns what the second and first pages held.
    let second_end = pages[1]["end"].as_str().expect("end");
    let (_, forwards) = messages(&server, &alice, &room, &format!("dir=f&limit=100&from={second_end}")).await;
    assert_eq!(bodies(&forwards), texts[5..].to_vec());
    assert!(forwards.get("end").is_none_or(Value::is_null), "no more events: {forwards}");

    // `to` stops where asked, in either direction.
    let (_, limited) = messages(&server, &alice, &room, &format!("dir=b&limit=100&to={second_end}")).await;
    assert_eq!(bodies(&limited), texts[5..].iter().rev().cloned().collect::<Vec<_>>());
    let (_, limited) =
        messages(&server, &alice, &room, &format!("dir=f&limit=100&from={second_end}&to={first_end}")).await;
    assert_eq!(bodies(&limited), texts[5..15].to_vec());

    // Bad tokens and unknown rooms.
    // (`s-5` is a token: backfilled history sits at negative positions.)
    for bad in ["nonsense", "s--5", "s-", "t12", "s1x"] {
        let response = messages(&server, &alice, &room, &format!("dir=b&from={bad}")).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
        let response = messages(&server, &alice, &room, &format!("dir=f&from=s0&to={bad}")).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    let (status, body) = messages(&server, &alice, "!unknown:hearth.test", "dir=b").await;
    assert!(matches!(status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN), "{status} {body}");
    assert!(matches!(body["errcode"].as_str(), Some("M_NOT_FOUND" | "M_FORBIDDEN")), "{body}");
}

#[tokio::test]
async fn messages_accept_a_sync_token_as_from_and_to() {
    // The spec lets `/messages` take any token the server hands out; clients page back from
    // `/sync`'s `next_batch` (e.g. after a gap they noticed themselves).
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    say(&server, &alice, &room, "before").await;
    let (status, sync) = server.get("/_matrix/client/v3/sync", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    let next_batch = sync["next_batch"].as_str().expect("next_batch").to_owned();
    say(&server, &alice, &room, "after").await;

    let (status, page) = messages(&server, &alice, &room, &format!("dir=b&limit=10&from={next_batch}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(bodies(&page), vec!["before"], "back from the sync token: what the sync had seen");
    let (status, page) = messages(&server, &alice, &room, &format!("dir=f&limit=10&from={next_batch}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(bodies(&page), vec!["after"], "forwards from it: what came since");
    let (status, page) = messages(&server, &alice, &room, &format!("dir=b&limit=10&to={next_batch}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(bodies(&page), vec!["after"], "down to it");
    // Garbage that merely looks like a sync token is still refused.
    let response = messages(&server, &alice, &room, "dir=b&from=h1_x").await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
}
