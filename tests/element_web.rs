//! What Element Web asks of a homeserver beyond the core APIs, checked over HTTP: the member
//! list at a `/sync` token (the request encrypted sends wait on), unstable feature flags, and the
//! settings tabs' third-party id, bridge and TURN paths. `real_clients::element` runs the same
//! flows through matrix-js-sdk, Element's own engine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;

use base64::Engine;
use common::{TestServer, TestUser, assert_error, own_invite_member};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha1::Sha1;

async fn sync_token(server: &TestServer, user: &TestUser) -> (String, Value) {
    let (status, body) = server.get("/_matrix/client/v3/sync?timeout=0", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (body["next_batch"].as_str().unwrap().to_owned(), body)
}

async fn member_ids(server: &TestServer, user: &TestUser, room: &str, query: &str) -> Vec<(String, String)> {
    let (status, body) = server.get(&format!("/_matrix/client/v3/rooms/{room}/members?{query}"), user.token()).await;
    assert_eq!(status, StatusCode::OK, "/members?{query}: {body}");
    body["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            let membership = event["content"]["membership"].as_str().unwrap().to_owned();
            (event["state_key"].as_str().unwrap().to_owned(), membership)
        })
        .collect()
}

/// Element sends in an encrypted room only after `GET /members?not_membership=leave&at=<its
/// /sync token>`; every token Hearth hands out must work there, and in `/messages` and `/sync`.
#[tokio::test]
async fn every_token_hearth_hands_out_is_accepted_wherever_a_token_is_taken() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "alice's password").await;
    let bob = server.register("bob", "bob's password").await;
    let carol = server.register("carol", "carol's password").await;
    let room = server.create_room(&alice, json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    server.join(&bob, &room).await;
    server.send_text(&alice, &room, "t1", "before carol").await;
    let (token_before_carol, _) = sync_token(&server, &alice).await;
    // A limited timeline's prev_batch: the point before the last message.
    let (status, limited) = server
        .get(
            "/_matrix/client/v3/sync?timeout=0&filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A1%7D%7D%7D",
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{limited}");
    let prev_batch = limited["rooms"]["join"][&room]["timeline"]["prev_batch"].as_str().unwrap().to_owned();

    // Carol is invited and bob leaves after that token.
    let (status, body) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/invite"), alice.token(), json!({"user_id": carol.user_id}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.leave(&bob, &room).await;

    // Element's own request, at the /sync token: the room as it was then.
    let then = member_ids(&server, &alice, &room, &format!("not_membership=leave&at={token_before_carol}")).await;
    assert_eq!(then, [(alice.user_id.clone(), "join".to_owned()), (bob.user_id.clone(), "join".to_owned())]);
    // And now: bob's leave filtered out, carol invited.
    let (latest, _) = sync_token(&server, &alice).await;
    let now = member_ids(&server, &alice, &room, &format!("not_membership=leave&at={latest}")).await;
    assert_eq!(now, [(alice.user_id.clone(), "join".to_owned()), (carol.user_id.clone(), "invite".to_owned())]);
    // A timeline's prev_batch and a /messages end token are accepted as `at` too.
    assert!(member_ids(&server, &alice, &room, &format!("at={prev_batch}")).await.len() >= 2);
    let (status, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=2"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let end = page["end"].as_str().unwrap();
    assert!(!member_ids(&server, &alice, &room, &format!("at={end}")).await.is_empty());

    // /messages from a /sync token, and /sync since a /messages token.
    let (status, page) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&from={token_before_carol}&limit=1"),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["chunk"][0]["content"]["body"], "before carol", "{page}");
    let (status, since_page) =
        server.get(&format!("/_matrix/client/v3/sync?timeout=0&since={end}"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{since_page}");
    // /keys/changes takes the same tokens.
    let (status, body) =
        server.get(&format!("/_matrix/client/v3/keys/changes?from={prev_batch}&to={latest}"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Tokens Hearth never handed out are refused clearly, everywhere.
    for bad in ["s--1", "h1_", "t5-3", "s5x", "h1_%2B5", "h1_-2"] {
        let members = server.get(&format!("/_matrix/client/v3/rooms/{room}/members?at={bad}"), alice.token()).await;
        assert_error(&members, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
        let sync = server.get(&format!("/_matrix/client/v3/sync?timeout=0&since={bad}"), alice.token()).await;
        assert_error(&sync, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
        let messages =
            server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&from={bad}"), alice.token()).await;
        assert_error(&messages, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
}

#[tokio::test]
async fn versions_advertise_cross_signing_and_the_other_features_served() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    for feature in [
        "org.matrix.e2e_cross_signing",
        "org.matrix.msc2285.stable",
        "org.matrix.msc3440.stable",
        "org.matrix.msc3916.stable",
        "org.matrix.simplified_msc3575",
    ] {
        assert_eq!(body["unstable_features"][feature], true, "{feature} in {body}");
    }
}

/// Element's Notifications and Security tabs ask for the account's 3pids, pushers and bridged
/// protocols; its call code asks for a TURN server. Without them configured, each answers what
/// is true, in the spec's shape.
#[tokio::test]
async fn settings_tabs_get_answers_for_third_party_ids_bridges_and_turn() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "alice's password").await;
    let token = alice.token();
    assert_eq!(server.get("/_matrix/client/v3/account/3pid", token).await, (StatusCode::OK, json!({"threepids": []})));
    assert_eq!(server.get("/_matrix/client/r0/account/3pid", token).await.0, StatusCode::OK);
    assert_eq!(server.get("/_matrix/client/v3/pushers", token).await, (StatusCode::OK, json!({"pushers": []})));
    assert_eq!(server.get("/_matrix/client/v3/thirdparty/protocols", token).await, (StatusCode::OK, json!({})));
    assert_eq!(server.get("/_matrix/client/v3/voip/turnServer", token).await, (StatusCode::OK, json!({})));
    // They are account paths: no token, no answer.
    assert_error(
        &server.get("/_matrix/client/v3/account/3pid", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );

    // Unknown protocols and lookups: the spec's 404.
    for path in ["protocol/irc", "location/irc?searchFields=x", "user/irc", "location?alias=%23a:b", "user?userid=@a:b"]
    {
        assert_error(
            &server.get(&format!("/_matrix/client/v3/thirdparty/{path}"), token).await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
    }
    // Adding an identifier is refused with the spec's errcodes, and nothing is added.
    let request = json!({"client_secret": "secret", "email": "alice@example.org", "send_attempt": 1});
    for path in
        ["account/3pid/email/requestToken", "register/email/requestToken", "account/password/email/requestToken"]
    {
        let answer = server.post(&format!("/_matrix/client/v3/{path}"), None, request.clone()).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
    }
    let msisdn = json!({"client_secret": "secret", "country": "GB", "phone_number": "07700900000", "send_attempt": 1});
    let answer = server.post("/_matrix/client/v3/account/3pid/msisdn/requestToken", None, msisdn).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
    let add =
        server.post("/_matrix/client/v3/account/3pid/add", token, json!({"client_secret": "c", "sid": "s"})).await;
    assert_error(&add, StatusCode::BAD_REQUEST, "M_THREEPID_AUTH_FAILED");
    let delete = server
        .post(
            "/_matrix/client/v3/account/3pid/delete",
            token,
            json!({"medium": "email", "address": "alice@example.org"}),
        )
        .await;
    assert_eq!(delete, (StatusCode::OK, json!({"id_server_unbind_result": "no-support"})));
    assert_eq!(server.get("/_matrix/client/v3/account/3pid", token).await.1, json!({"threepids": []}));
}

/// With a TURN server configured, clients get credentials the TURN server can check by itself.
#[tokio::test]
async fn turn_credentials_are_made_from_the_shared_secret() {
    let server = TestServer::start_with(|config| {
        config.voip.turn_uris = vec!["turn:turn.example.org?transport=udp".to_owned()];
        config.voip.turn_shared_secret = Some("coturn secret".to_owned());
        config.voip.turn_user_lifetime_secs = 600;
    })
    .await;
    let alice = server.register("alice", "alice's password").await;
    let (status, body) = server.get("/_matrix/client/v3/voip/turnServer", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["uris"], json!(["turn:turn.example.org?transport=udp"]));
    assert_eq!(body["ttl"], 600);
    let username = body["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, alice.user_id);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!((now + 590..=now + 610).contains(&expiry), "expiry {expiry} vs now {now}");
    // What coturn checks: base64(HMAC-SHA1(secret, username)).
    let mut mac = Hmac::<Sha1>::new_from_slice(b"coturn secret").unwrap();
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.decode(body["password"].as_str().unwrap()).unwrap();
    mac.verify_slice(&password).expect("the password is the HMAC of the username");
    // `hearth config check` prints the configuration without the secret.
    let mut config = common::test_config();
    config.voip.turn_shared_secret = Some("coturn secret".to_owned());
    let printed = config.to_masked_toml();
    assert!(!printed.contains("coturn secret") && printed.contains("turn_shared_secret = \"********\""), "{printed}");
}

/// An invite carries the invitee's profile, so the room (and the invitee's client, before
/// joining) shows a name rather than a bare user id.
#[tokio::test]
async fn invite_events_carry_the_invitees_display_name_and_avatar() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "alice's password").await;
    let bob = server.register("bob", "bob's password").await;
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", bob.user_id),
            bob.token(),
            json!({"displayname": "Bob B."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/profile/{}/avatar_url", bob.user_id),
            bob.token(),
            json!({"avatar_url": "mxc://hearth.test/bobface"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let room = server.create_room(&alice, json!({"invite": [bob.user_id]})).await;
    let (status, member) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", bob.user_id), alice.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["membership"], "invite");
    assert_eq!(member["displayname"], "Bob B.");
    assert_eq!(member["avatar_url"], "mxc://hearth.test/bobface");
    // The invitee's own /sync shows the name in the invite state.
    let (_, sync) = sync_token(&server, &bob).await;
    let own = own_invite_member(&sync["rooms"]["invite"][&room], &bob.user_id)
        .expect("the invitee's member event in invite_state");
    assert_eq!(own["content"]["displayname"], "Bob B.", "{own}");
}
