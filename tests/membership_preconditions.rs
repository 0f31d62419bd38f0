//! What kick, ban, unban, invite and leave ask of the target's current membership beyond the
//! auth rules (spec: each endpoint's 403s; Synapse's `update_membership`): a kick needs the
//! target in the room, an unban needs a ban, an invite neither a ban nor a join. A refused
//! change writes nothing: the room's state and timeline stay as they were.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "preconditions-test-pw";

async fn action(server: &TestServer, actor: &TestUser, room: &str, action: &str, target: &str) -> (StatusCode, Value) {
    server.post(&format!("/_matrix/client/v3/rooms/{room}/{action}"), actor.token(), json!({"user_id": target})).await
}

/// The target's member event as `viewer` reads it: (membership, event id), or `None`.
async fn member_event(server: &TestServer, viewer: &TestUser, room: &str, user: &str) -> Option<(String, String)> {
    let (status, state) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), viewer.token()).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    state.as_array().expect("state").iter().find(|e| e["type"] == "m.room.member" && e["state_key"] == user).map(|e| {
        (
            e["content"]["membership"].as_str().expect("membership").to_owned(),
            e["event_id"].as_str().unwrap().to_owned(),
        )
    })
}

/// The newest event id of the room's timeline, as `viewer` pages it.
async fn newest_event(server: &TestServer, viewer: &TestUser, room: &str) -> String {
    let (status, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1"), viewer.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["chunk"][0]["event_id"].as_str().expect("an event").to_owned()
}

struct Room {
    server: TestServer,
    alice: TestUser,
    bob: TestUser,
    carol: TestUser,
    dave: TestUser,
    eve: TestUser,
    room: String,
}

/// Alice's public room: bob joined, carol never came, dave joined and left, eve is banned.
async fn room_with_every_membership() -> Room {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let dave = server.register("dave", PW).await;
    let eve = server.register("eve", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    server.join(&dave, &room).await;
    server.leave(&dave, &room).await;
    server.join(&eve, &room).await;
    let (status, body) = action(&server, &alice, &room, "ban", &eve.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    Room { server, alice, bob, carol, dave, eve, room }
}

#[tokio::test]
async fn a_kick_needs_the_target_in_the_room_and_never_lifts_a_ban() {
    let Room { server, alice, bob, carol, dave, eve, room } = room_with_every_membership().await;
    let newest = newest_event(&server, &alice, &room).await;

    // Banned: the kick would have turned the ban into `leave`, letting eve back in.
    assert_error(&action(&server, &alice, &room, "kick", &eve.user_id).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(member_event(&server, &alice, &room, &eve.user_id).await.expect("eve").0, "ban");
    assert_error(
        &server.post(&format!("/_matrix/client/v3/join/{room}"), eve.token(), json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    // Never in the room, or gone already: nothing to kick.
    assert_error(&action(&server, &alice, &room, "kick", &carol.user_id).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(member_event(&server, &alice, &room, &carol.user_id).await, None);
    let dave_left = member_event(&server, &alice, &room, &dave.user_id).await;
    assert_error(&action(&server, &alice, &room, "kick", &dave.user_id).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(member_event(&server, &alice, &room, &dave.user_id).await, dave_left);
    // None of the refusals wrote an event.
    assert_eq!(newest_event(&server, &alice, &room).await, newest);

    // Joined and invited users are kicked.
    let (status, body) = action(&server, &alice, &room, "kick", &bob.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(member_event(&server, &alice, &room, &bob.user_id).await.expect("bob").0, "leave");
    let (status, body) = action(&server, &alice, &room, "invite", &carol.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = action(&server, &alice, &room, "kick", &carol.user_id).await;
    assert_eq!(status, StatusCode::OK, "rescinding an invitation is a kick: {body}");
    assert_eq!(member_event(&server, &alice, &room, &carol.user_id).await.expect("carol").0, "leave");
}

#[tokio::test]
async fn an_unban_needs_a_ban_and_an_invite_neither_a_ban_nor_a_join() {
    let Room { server, alice, bob, carol, dave, eve, room } = room_with_every_membership().await;
    let newest = newest_event(&server, &alice, &room).await;

    // An "unban" of a joined member would have kicked them with the ban level's authority.
    assert_error(&action(&server, &alice, &room, "unban", &bob.user_id).await, StatusCode::FORBIDDEN, "M_BAD_STATE");
    assert_eq!(member_event(&server, &alice, &room, &bob.user_id).await.expect("bob").0, "join");
    assert_error(&action(&server, &alice, &room, "unban", &carol.user_id).await, StatusCode::FORBIDDEN, "M_BAD_STATE");
    assert_error(&action(&server, &alice, &room, "unban", &dave.user_id).await, StatusCode::FORBIDDEN, "M_BAD_STATE");
    // A banned user cannot be invited back; a member cannot be invited again.
    assert_error(&action(&server, &alice, &room, "invite", &eve.user_id).await, StatusCode::FORBIDDEN, "M_BAD_STATE");
    assert_eq!(member_event(&server, &alice, &room, &eve.user_id).await.expect("eve").0, "ban");
    assert_error(&action(&server, &alice, &room, "invite", &bob.user_id).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // A banned user cannot leave (and so lift) their own ban.
    assert_error(
        &server.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), eve.token(), json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_eq!(newest_event(&server, &alice, &room).await, newest);

    // What the endpoints are for still works: unban the banned, ban anyone, invite who left.
    let (status, body) = action(&server, &alice, &room, "unban", &eve.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(member_event(&server, &alice, &room, &eve.user_id).await.expect("eve").0, "leave");
    let (status, body) = action(&server, &alice, &room, "ban", &carol.user_id).await;
    assert_eq!(status, StatusCode::OK, "a user who never joined can be banned: {body}");
    assert_eq!(member_event(&server, &alice, &room, &carol.user_id).await.expect("carol").0, "ban");
    let (status, body) = action(&server, &alice, &room, "invite", &dave.user_id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(member_event(&server, &alice, &room, &dave.user_id).await.expect("dave").0, "invite");
}

#[tokio::test]
async fn an_invite_through_the_state_endpoint_is_held_to_the_invite_endpoints_checks() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/user/{}/account_data/m.invite_permission_config", bob.user_id),
            bob.token(),
            json!({"default_action": "block"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let newest = newest_event(&server, &alice, &room).await;

    let invite_by_state = |target: String| {
        let (server, alice, room) = (&server, &alice, &room);
        async move {
            server
                .put(
                    &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{target}"),
                    alice.token(),
                    json!({"membership": "invite"}),
                )
                .await
        }
    };
    // Bob refuses invites, whichever endpoint carries them.
    assert_error(&invite_by_state(bob.user_id.clone()).await, StatusCode::FORBIDDEN, "M_INVITE_BLOCKED");
    assert_eq!(member_event(&server, &alice, &room, &bob.user_id).await, None);
    // An account that does not exist cannot be invited.
    assert_error(&invite_by_state("@nobody:hearth.test".to_owned()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_eq!(newest_event(&server, &alice, &room).await, newest);
}
