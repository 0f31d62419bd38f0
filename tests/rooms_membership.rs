//! Membership beyond join and leave: knocking, restricted rooms, member lists at a point in
//! history, forgetting rooms, reports, and what the server says about room versions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "membership-test-pw";

async fn membership_of(server: &TestServer, viewer: &TestUser, room: &str, user: &str) -> Option<String> {
    let (status, member) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}"), viewer.token()).await;
    (status == StatusCode::OK).then(|| member["membership"].as_str().unwrap_or_default().to_owned())
}

async fn join(server: &TestServer, user: &TestUser, room: &str) -> (StatusCode, Value) {
    server.post(&format!("/_matrix/client/v3/join/{room}"), user.token(), json!({})).await
}

#[tokio::test]
async fn knocking_asks_and_an_invitation_lets_in() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice,
        json!({"initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]}),
    )
    .await;
    assert_error(&join(&server, &bob, &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    let (status, body) =
        server.post(&format!("/_matrix/client/v3/knock/{room}"), bob.token(), json!({"reason": "hi!"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], room);
    assert_eq!(membership_of(&server, &alice, &room, &bob.user_id).await.as_deref(), Some("knock"));

    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), alice.token(), json!({"user_id": bob.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(join(&server, &bob, &room).await.0, StatusCode::OK);
    assert_eq!(membership_of(&server, &alice, &room, &bob.user_id).await.as_deref(), Some("join"));
}

#[tokio::test]
async fn knocking_is_refused_where_the_rules_do_not_allow_it() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let invite_only = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    let knock = server.post(&format!("/_matrix/client/v3/knock/{invite_only}"), bob.token(), json!({})).await;
    assert_error(&knock, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Room version 6 predates knocking.
    let old = server.create_room(&alice,
        json!({"room_version": "6", "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]}),
    )
    .await;
    let knock = server.post(&format!("/_matrix/client/v3/knock/{old}"), bob.token(), json!({})).await;
    assert_error(&knock, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(membership_of(&server, &alice, &old, &bob.user_id).await, None);
    let unknown = server.post("/_matrix/client/v3/knock/!nowhere:hearth.test", bob.token(), json!({})).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn restricted_rooms_admit_members_of_the_allowed_room_only() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let eve = server.register("eve", PW).await;
    let space =
        server.create_room(&alice, json!({"preset": "public_chat", "creation_content": {"type": "m.space"}})).await;
    let room = server
        .create_room(
            &alice,
            json!({"initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {
            "join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}]}),
        )
        .await;
    assert_eq!(join(&server, &bob, &space).await.0, StatusCode::OK);

    let (status, body) = join(&server, &bob, &room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, member) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", bob.user_id), bob.token()).await;
    assert_eq!(member["join_authorised_via_users_server"], alice.user_id);

    assert_error(&join(&server, &eve, &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(membership_of(&server, &alice, &room, &eve.user_id).await, None);
}

#[tokio::test]
async fn member_lists_filter_and_go_back_in_time() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &room).await;
    let (_, page) = server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1"), alice.token()).await;
    let before_carol = page["start"].as_str().expect("token").to_owned();
    join(&server, &carol, &room).await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), bob.token(), json!({})).await;

    let members = |query: String| {
        let server = &server;
        let alice = &alice;
        let room = &room;
        async move {
            let (status, body) =
                server.get(&format!("/_matrix/client/v3/rooms/{room}/members{query}"), alice.token()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["chunk"]
                .as_array()
                .expect("chunk")
                .iter()
                .map(|event| {
                    format!(
                        "{}={}",
                        event["state_key"].as_str().unwrap_or(""),
                        event["content"]["membership"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        members(String::new()).await,
        vec![format!("{}=join", alice.user_id), format!("{}=leave", bob.user_id), format!("{}=join", carol.user_id)]
    );
    assert_eq!(
        members("?membership=join".into()).await,
        vec![format!("{}=join", alice.user_id), format!("{}=join", carol.user_id)]
    );
    assert_eq!(members("?not_membership=join".into()).await, vec![format!("{}=leave", bob.user_id)]);
    assert_eq!(
        members(format!("?at={before_carol}")).await,
        vec![format!("{}=join", alice.user_id), format!("{}=join", bob.user_id)]
    );
    let outsider = server.register("dave", PW).await;
    let private = server.create_room(&alice, json!({})).await;
    assert_error(
        &server.get(&format!("/_matrix/client/v3/rooms/{private}/members"), outsider.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn only_left_rooms_can_be_forgotten() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let forget = format!("/_matrix/client/v3/rooms/{room}/forget");
    assert_error(&server.post(&forget, alice.token(), json!({})).await, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), alice.token(), json!({})).await;
    let (status, body) = server.post(&forget, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        server.count(&format!("SELECT count(*) FROM room_memberships WHERE room_id = '{room}' AND forgotten")).await,
        1
    );
}

#[tokio::test]
async fn reports_reach_the_admins_and_cannot_probe_hidden_events() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (_, sent) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t1"),
            alice.token(),
            json!({"msgtype": "m.text", "body": "rude"}),
        )
        .await;
    let event = sent["event_id"].as_str().expect("event id");
    join(&server, &bob, &room).await;

    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/report/{event}"), bob.token(), json!({"reason": "rude"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/report"), bob.token(), json!({"reason": "bad room"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .post(&format!("/_matrix/client/v3/users/{}/report", alice.user_id), bob.token(), json!({"reason": "meanie"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.count("SELECT count(*) FROM reports").await, 3);

    // An outsider of a private room cannot learn whether an event exists by reporting it.
    let private = server.create_room(&alice, json!({})).await;
    let (_, hidden) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{private}/send/m.room.message/t1"),
            alice.token(),
            json!({"msgtype": "m.text", "body": "x"}),
        )
        .await;
    let hidden = hidden["event_id"].as_str().expect("event id");
    let probe =
        server.post(&format!("/_matrix/client/v3/rooms/{private}/report/{hidden}"), bob.token(), json!({})).await;
    assert_error(&probe, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let unknown =
        server.post("/_matrix/client/v3/users/@nobody:hearth.test/report", bob.token(), json!({"reason": "?"})).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_eq!(server.count("SELECT count(*) FROM reports").await, 3);
}

#[tokio::test]
async fn capabilities_list_the_room_versions_honestly() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let (status, body) = server.get("/_matrix/client/v3/capabilities", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let versions = &body["capabilities"]["m.room_versions"];
    assert_eq!(versions["default"], "12");
    let available: Vec<&str> =
        versions["available"].as_object().expect("available").keys().map(String::as_str).collect();
    let mut available = available;
    available.sort_by_key(|v| v.parse::<u32>().unwrap_or(0));
    assert_eq!(available, vec!["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]);
    assert!(versions["available"].as_object().expect("map").values().all(|s| s == "stable"));
}

#[tokio::test]
async fn capabilities_state_what_an_account_may_change_explicitly() {
    // Each capability the spec defines is listed with its value, also where that value is the
    // spec's default (which ruma would leave out): clients and conformance suites read them.
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let (status, body) = server.get("/_matrix/client/v3/capabilities", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let capabilities = &body["capabilities"];
    for (name, enabled) in [
        ("m.change_password", true),
        ("m.set_displayname", true),
        ("m.set_avatar_url", true),
        ("m.3pid_changes", false),
        ("m.get_login_token", false),
    ] {
        assert_eq!(capabilities[name], json!({"enabled": enabled}), "{name}: {body}");
    }
    // Since v1.16 the profile fields have a capability of their own; all may be set.
    assert_eq!(capabilities["m.profile_fields"], json!({"enabled": true}), "{body}");
    // What they promise holds: the display name can be changed.
    let path = format!("/_matrix/client/v3/profile/{}/displayname", alice.user_id);
    let (status, body) = server.put(&path, alice.token(), json!({"displayname": "Alice A."})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn rejoining_a_forgotten_room_remembers_it_again() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), alice.token(), json!({})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{room}/forget"), alice.token(), json!({})).await;
    let forgotten = format!("SELECT count(*) FROM room_memberships WHERE room_id = '{room}' AND forgotten");
    assert_eq!(server.count(&forgotten).await, 1);
    assert_eq!(join(&server, &alice, &room).await.0, StatusCode::OK);
    assert_eq!(server.count(&forgotten).await, 0);
}

#[tokio::test]
async fn guests_join_only_rooms_that_let_guests_in() {
    let server = TestServer::start_with(|config| config.registration.allow_guests = true).await;
    let alice = server.register("alice", PW).await;
    let (status, guest) = server.post("/_matrix/client/v3/register?kind=guest", None, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{guest}");
    let guest_token = guest["access_token"].as_str().expect("guest token").to_owned();
    let guest_id = guest["user_id"].as_str().expect("guest id").to_owned();

    // public_chat forbids guests; a room with guest_access can_join admits them.
    let closed = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let open = server.create_room(&alice,
        json!({"preset": "public_chat", "initial_state": [{"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}}]}),
    )
    .await;
    let refused = server.post(&format!("/_matrix/client/v3/join/{closed}"), Some(&guest_token), json!({})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN");
    assert_eq!(membership_of(&server, &alice, &closed, &guest_id).await, None);

    let (status, body) = server.post(&format!("/_matrix/client/v3/join/{open}"), Some(&guest_token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(membership_of(&server, &alice, &open, &guest_id).await.as_deref(), Some("join"));
}

#[tokio::test]
async fn a_new_display_name_reaches_every_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    join(&server, &bob, &room).await;
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", bob.user_id),
            bob.token(),
            json!({"displayname": "Bobby"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, members) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), alice.token()).await;
    assert_eq!(members["joined"][&bob.user_id]["display_name"], "Bobby");
    let (_, member) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", bob.user_id), alice.token())
        .await;
    assert_eq!(member["displayname"], "Bobby");
    assert_eq!(member["membership"], "join");
}

#[tokio::test]
async fn a_deactivated_account_leaves_its_rooms() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let invited = server.create_room(&alice, json!({"invite": [bob.user_id]})).await;
    join(&server, &bob, &room).await;

    let (status, body) = server.post("/_matrix/client/v3/account/deactivate", bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let session = body["session"].as_str().expect("session").to_owned();
    let (status, body) = server
        .post("/_matrix/client/v3/account/deactivate", bob.token(), json!({"auth": bob.password_auth(&session)}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_eq!(membership_of(&server, &alice, &room, &bob.user_id).await.as_deref(), Some("leave"));
    assert_eq!(membership_of(&server, &alice, &invited, &bob.user_id).await.as_deref(), Some("leave"));
    let (_, members) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), alice.token()).await;
    assert!(members["joined"].get(&bob.user_id).is_none(), "{members}");
}
