//! Limits on what a client may send, enforced as the client's mistake (400 or 413 with the
//! spec's error JSON), never as an internal error at PostgreSQL and never as data Hearth
//! cannot serve back (#15 items 5, 7, 10, 11, 12).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

const PASSWORD: &str = "hostile-limits-password";

// ---------------------------------------------------------------------------------------------
// Item 5: identifiers

#[tokio::test]
async fn identifiers_longer_than_the_spec_allows_are_refused_with_400() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let event = server.send_text(&alice, &room, "first", "hi").await;
    let (long, e, a) = (incompressible(3000), encode(&event), alice.user_id.clone());
    let limit = incompressible(255);
    let events_before = server.count("SELECT count(*) FROM events").await;
    for (what, method, path, body) in [
        (
            "transaction id",
            Method::PUT,
            format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{long}"),
            json!({"msgtype": "m.text", "body": "x"}),
        ),
        ("event type", Method::PUT, format!("/_matrix/client/v3/rooms/{room}/send/{long}/t1"), json!({})),
        ("state event type", Method::PUT, format!("/_matrix/client/v3/rooms/{room}/state/{long}/k"), json!({})),
        ("state key", Method::PUT, format!("/_matrix/client/v3/rooms/{room}/state/org.example.x/{long}"), json!({})),
        (
            "state key read",
            Method::GET,
            format!("/_matrix/client/v3/rooms/{room}/state/org.example.x/{long}"),
            json!({}),
        ),
        ("relation type", Method::GET, format!("/_matrix/client/v1/rooms/{room}/relations/{e}/{long}"), json!({})),
        (
            "to-device transaction",
            Method::PUT,
            format!("/_matrix/client/v3/sendToDevice/m.test/{long}"),
            json!({"messages": {}}),
        ),
        (
            "to-device type",
            Method::PUT,
            format!("/_matrix/client/v3/sendToDevice/{long}/t2"),
            json!({"messages": {a.clone(): {"*": {}}}}),
        ),
        (
            "one-time key id",
            Method::POST,
            "/_matrix/client/v3/keys/upload".to_owned(),
            json!({"one_time_keys": {format!("curve25519:{long}"): "k"}}),
        ),
        (
            "fallback key id",
            Method::POST,
            "/_matrix/client/v3/keys/upload".to_owned(),
            json!({"fallback_keys": {format!("curve25519:{long}"): "k"}}),
        ),
        (
            "initial state type",
            Method::POST,
            "/_matrix/client/v3/createRoom".to_owned(),
            json!({"initial_state": [{"type": long, "state_key": "", "content": {}}]}),
        ),
        (
            "initial state key",
            Method::POST,
            "/_matrix/client/v3/createRoom".to_owned(),
            json!({"initial_state": [{"type": "org.example.x", "state_key": long, "content": {}}]}),
        ),
        (
            "backup session",
            Method::PUT,
            "/_matrix/client/v3/room_keys/keys?version=1".to_owned(),
            json!({"rooms": {room.clone(): {"sessions": {long.clone(): {"first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": {}}}}}}),
        ),
    ] {
        let body = (method != Method::GET).then_some(body);
        let answer = server.request(method.clone(), &path, alice.token(), body).await;
        assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{what}: {}", answer.1);
        assert_error(&answer, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    assert_eq!(server.count("SELECT count(*) FROM events").await, events_before, "no event was stored");

    // A relation type too long to be one is no relation: the event is stored, not indexed.
    let reaction = json!({"m.relates_to": {"rel_type": long, "event_id": event, "key": "k"}});
    let sent =
        server.put(&format!("/_matrix/client/v3/rooms/{room}/send/m.reaction/r1"), alice.token(), reaction).await;
    assert_eq!(sent.0, StatusCode::OK, "{}", sent.1);
    assert_eq!(server.count("SELECT count(*) FROM event_relations").await, 0);

    // 255 bytes is allowed everywhere, and everything keeps working for everyone.
    let state = format!("/_matrix/client/v3/rooms/{room}/state/org.example.x/{limit}");
    assert_eq!(server.put(&state, alice.token(), json!({"ok": true})).await.0, StatusCode::OK);
    assert_eq!(server.get(&state, bob.token()).await, (StatusCode::OK, json!({"ok": true})));
    let sent =
        server.put(&format!("/_matrix/client/v3/rooms/{room}/send/{limit}/{limit}"), alice.token(), json!({})).await;
    assert_eq!(sent.0, StatusCode::OK, "{}", sent.1);
    let (status, sync) = server.get("/_matrix/client/v3/sync", bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert!(timeline.as_array().unwrap().iter().any(|event| event["type"] == limit.as_str()), "{timeline}");
}

// ---------------------------------------------------------------------------------------------
// Item 7: U+0000

/// Shared-secret registration reads its body itself (Synapse's shape, not ruma's), so it
/// missed the check every other endpoint had: a NUL in the nonce reached PostgreSQL as a 500.
#[tokio::test]
async fn nul_in_a_shared_secret_registration_is_bad_json() {
    let server = TestServer::start().await;
    let path = "/_synapse/admin/v1/register";
    for field in ["nonce", "username", "password", "mac", "displayname"] {
        let mut body = json!({"nonce": "n", "username": "carol", "password": PASSWORD, "mac": "00", "admin": false});
        body[field] = json!("a\u{0}b");
        let answer = server.post(path, None, body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }
    // So are numbers it could not serve back, and the endpoint still works.
    let answer = server.request_raw(Method::POST, path, None, br#"{"nonce": "n", "x": 1e400}"#.to_vec()).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let (status, body) = server.get(path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.count("SELECT count(*) FROM users").await, 0);
}

/// A filter in the query string is JSON: a `\u0000` in it is U+0000 in a string the filter
/// matches in SQL.
#[tokio::test]
async fn nul_in_a_filter_in_the_query_string_is_refused() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let room = server.create_room(&alice, json!({})).await;
    let filter = encode(r#"{"types": ["a\u0000b"], "not_senders": ["@x\u0000:y"]}"#);
    let sync_filter = encode(r#"{"room": {"timeline": {"types": ["a\u0000b"]}}}"#);
    for path in [
        format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&filter={filter}"),
        format!("/_matrix/client/v3/sync?filter={sync_filter}"),
    ] {
        let answer = server.get(&path, alice.token()).await;
        assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{path}: {}", answer.1);
        assert_error(&answer, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    // Text that only looks like the escape is text.
    let text = encode(r#"{"types": ["a\\u0000b"]}"#);
    let answer =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&filter={text}"), alice.token()).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
}

// ---------------------------------------------------------------------------------------------
// Item 10: sizes

/// A device display name has one limit wherever it is set: at registration, at login and on
/// rename (100 characters, Synapse's), answered 413 `M_TOO_LARGE`.
#[tokio::test]
async fn a_device_display_name_has_one_limit_everywhere() {
    let server = TestServer::start().await;
    let too_long = "n".repeat(101);
    let register = json!({"username": "alice", "password": PASSWORD, "auth": {"type": "m.login.dummy"},
        "initial_device_display_name": too_long});
    assert_error(
        &server.post("/_matrix/client/v3/register", None, register).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    assert_eq!(server.count("SELECT count(*) FROM users").await, 0, "nothing was registered");
    let alice = server.register("alice", PASSWORD).await;
    let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": PASSWORD, "initial_device_display_name": too_long});
    assert_error(
        &server.post("/_matrix/client/v3/login", None, login).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    let rename = format!("/_matrix/client/v3/devices/{}", alice.device_id);
    let answer = server.put(&rename, alice.token(), json!({"display_name": too_long})).await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    assert_eq!(server.count("SELECT count(*) FROM devices").await, 1);

    // 100 characters are accepted, however many bytes they take.
    let longest = "é".repeat(100);
    let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": PASSWORD, "initial_device_display_name": longest});
    let (status, body) = server.post("/_matrix/client/v3/login", None, login).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, device) =
        server.get(&format!("/_matrix/client/v3/devices/{}", body["device_id"].as_str().unwrap()), alice.token()).await;
    assert_eq!(device["display_name"], longest.as_str());
    assert_eq!(server.put(&rename, alice.token(), json!({"display_name": longest})).await.0, StatusCode::OK);
}

/// Account data is bounded per entry and per user; rewriting an entry counts its new size
/// only, so a user at the limit can still change (or shrink) what they have.
#[tokio::test]
async fn account_data_is_bounded_per_entry_and_per_user() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let path =
        |user: &TestUser, n: usize| format!("/_matrix/client/v3/user/{}/account_data/org.example.{n}", user.user_id);
    const MIB: usize = 1024 * 1024;
    let entry = |bytes: usize| json!({"data": "d".repeat(bytes - 20)});

    let answer = server.put(&path(&alice, 0), alice.token(), entry(MIB + 100)).await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    for n in 0..8 {
        let answer = server.put(&path(&alice, n), alice.token(), entry(MIB - 100)).await;
        assert_eq!(answer.0, StatusCode::OK, "entry {n}: {}", answer.1);
    }
    let answer = server.put(&path(&alice, 8), alice.token(), entry(MIB - 100)).await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    // Rewriting an entry at the same size, or smaller, is fine; the space freed can be used.
    assert_eq!(server.put(&path(&alice, 7), alice.token(), entry(MIB - 100)).await.0, StatusCode::OK);
    assert_eq!(server.put(&path(&alice, 7), alice.token(), json!({})).await.0, StatusCode::OK);
    assert_eq!(server.put(&path(&alice, 8), alice.token(), entry(MIB / 2)).await.0, StatusCode::OK);
    // Room account data counts toward the same total.
    let room = server.create_room(&alice, json!({})).await;
    let room_path = format!("/_matrix/client/v3/user/{}/rooms/{room}/account_data/org.example.x", alice.user_id);
    assert_error(
        &server.put(&room_path, alice.token(), entry(MIB - 100)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    // Another user's limit is their own, and alice's account still syncs.
    assert_eq!(server.put(&path(&bob, 0), bob.token(), entry(MIB - 100)).await.0, StatusCode::OK);
    let (status, sync) = server.get("/_matrix/client/v3/sync", alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    let entries = sync["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"].as_str().is_some_and(|kind| kind.starts_with("org.example.")));
    assert_eq!(entries.count(), 9);
}

// ---------------------------------------------------------------------------------------------
// Item 12: what the spec's OpenAPI accepts

/// A device without a name has no `display_name` (the spec types it as a string, so `null`
/// fails validation against the OpenAPI).
#[tokio::test]
async fn a_device_without_a_name_has_no_display_name_field() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let named = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                "password": PASSWORD, "initial_device_display_name": "Phone"}),
        )
        .await
        .1;
    let (status, body) = server.get("/_matrix/client/v3/devices", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let devices = body["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    for device in devices {
        let name = device.get("display_name");
        if device["device_id"] == named["device_id"] {
            assert_eq!(name, Some(&json!("Phone")), "{device}");
        } else {
            assert_eq!(name, None, "no name, no field: {device}");
        }
    }
    let (status, device) = server.get(&format!("/_matrix/client/v3/devices/{}", alice.device_id), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{device}");
    assert_eq!(device.get("display_name"), None, "{device}");
    assert_eq!(device["device_id"], alice.device_id.as_str());
}

/// Backup versions are of the algorithm the spec defines, with the `auth_data` it requires.
#[tokio::test]
async fn a_backup_version_needs_a_known_algorithm_and_its_auth_data() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let path = "/_matrix/client/v3/room_keys/version";
    let megolm = "m.megolm_backup.v1.curve25519-aes-sha2";
    let unknown = server.post(path, alice.token(), json!({"algorithm": "org.example.none", "auth_data": {}})).await;
    assert_error(&unknown, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    for auth_data in [json!({}), json!({"public_key": 5}), json!({"public_key": "k", "signatures": "none"})] {
        let answer = server.post(path, alice.token(), json!({"algorithm": megolm, "auth_data": auth_data})).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }
    assert_eq!(server.count("SELECT count(*) FROM key_backup_versions").await, 0);
    let auth_data = json!({"public_key": "k", "signatures": {alice.user_id.clone(): {"ed25519:X": "sig"}}});
    let (status, body) = server.post(path, alice.token(), json!({"algorithm": megolm, "auth_data": auth_data})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let version = body["version"].as_str().unwrap();
    let update =
        server.put(&format!("{path}/{version}"), alice.token(), json!({"algorithm": megolm, "auth_data": {}})).await;
    assert_error(&update, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let (_, info) = server.get(path, alice.token()).await;
    assert_eq!(info["auth_data"], auth_data);
}

// ---------------------------------------------------------------------------------------------
// Item 11: login timing

/// Whether a name belongs to a deactivated account must not show in how long a login takes:
/// an unknown name costs a password-hash verification (against a decoy), and so must a
/// deactivated one. The two differ by an order of magnitude when one skips the hash (about
/// 1 ms against tens of ms for argon2id), so the generous bound below is not a speed target
/// but that difference.
#[tokio::test]
async fn a_deactivated_account_answers_login_no_faster_than_an_unknown_name() {
    let server = TestServer::start().await;
    let carol = server.register("carol", PASSWORD).await;
    let deactivate = "/_matrix/client/v3/account/deactivate";
    let (_, challenge) = server.post(deactivate, carol.token(), json!({})).await;
    let session = challenge["session"].as_str().unwrap();
    let done = server.post(deactivate, carol.token(), json!({"auth": carol.password_auth(session)})).await;
    assert_eq!(done.0, StatusCode::OK, "{}", done.1);

    let login = |user: &str| json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": PASSWORD});
    let (mut unknown, mut deactivated) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let started = std::time::Instant::now();
        let answer = server.post("/_matrix/client/v3/login", None, login("nobody")).await;
        unknown.push(started.elapsed());
        assert_error(&answer, StatusCode::FORBIDDEN, "M_FORBIDDEN");
        let started = std::time::Instant::now();
        let answer = server.post("/_matrix/client/v3/login", None, login("carol")).await;
        deactivated.push(started.elapsed());
        assert_error(&answer, StatusCode::FORBIDDEN, "M_USER_DEACTIVATED");
    }
    unknown.sort();
    deactivated.sort();
    let (unknown, deactivated) = (unknown[3], deactivated[3]);
    println!("median login: unknown name {unknown:?}, deactivated account {deactivated:?}");
    assert!(deactivated * 3 >= unknown, "deactivated {deactivated:?} against unknown {unknown:?}");
}
