//! Server-side key backups (`/room_keys/*`), driven over HTTP as a client would: versions,
//! keys at the three levels, etag and count, the spec's "better key" rule, the wrong-version
//! error, deletion, isolation between users, and bad input that changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const MEGOLM_V1: &str = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM_A: &str = "!roomA:hearth.test";
const ROOM_B: &str = "!roomB:hearth.test";
// Megolm session ids are unpadded base64, so they can hold `+` and `/`.
const SESSION_1: &str = "ses+sion/1";
const SESSION_2: &str = "session2";

fn version_path(version: Option<&str>) -> String {
    match version {
        Some(version) => format!("/_matrix/client/v3/room_keys/version/{version}"),
        None => "/_matrix/client/v3/room_keys/version".to_owned(),
    }
}

/// Percent-encodes a path segment (room ids and session ids hold `!`, `:`, `+`, `/`).
fn segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn keys_path(version: &str, room_id: Option<&str>, session_id: Option<&str>) -> String {
    let mut path = "/_matrix/client/v3/room_keys/keys".to_owned();
    if let Some(room_id) = room_id {
        path.push('/');
        path.push_str(&segment(room_id));
    }
    if let Some(session_id) = session_id {
        path.push('/');
        path.push_str(&segment(session_id));
    }
    format!("{path}?version={}", segment(version))
}

fn algorithm(public_key: &str) -> Value {
    json!({
        "algorithm": MEGOLM_V1,
        "auth_data": {
            "public_key": public_key,
            "signatures": {"@alice:hearth.test": {"ed25519:DEVICE": "c2lnbmF0dXJl"}},
        },
    })
}

/// Key data as a client uploads it; `tag` makes each key's (opaque) session data distinct.
fn key(first_message_index: u64, forwarded_count: u64, is_verified: bool, tag: &str) -> Value {
    json!({
        "first_message_index": first_message_index,
        "forwarded_count": forwarded_count,
        "is_verified": is_verified,
        "session_data": {"ephemeral": format!("eph-{tag}"), "ciphertext": format!("ct-{tag}"), "mac": format!("mac-{tag}")},
    })
}

async fn create_version(server: &TestServer, user: &TestUser, public_key: &str) -> String {
    let (status, body) = server.post(&version_path(None), user.token(), algorithm(public_key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["version"].as_str().expect("version is a string").to_owned()
}

async fn version_info(server: &TestServer, user: &TestUser, version: Option<&str>) -> Value {
    let (status, body) = server.get(&version_path(version), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn put_session(
    server: &TestServer,
    user: &TestUser,
    version: &str,
    room: &str,
    session: &str,
    data: Value,
) -> Value {
    let (status, body) = server.put(&keys_path(version, Some(room), Some(session)), user.token(), data).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn get_session(server: &TestServer, user: &TestUser, version: &str, room: &str, session: &str) -> Value {
    let (status, body) = server.get(&keys_path(version, Some(room), Some(session)), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn all_keys(server: &TestServer, user: &TestUser, version: &str) -> Value {
    let (status, body) = server.get(&keys_path(version, None, None), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn versions_are_created_numbered_and_the_latest_is_current() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;

    assert_error(&server.get(&version_path(None), alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let first = create_version(&server, &alice, "key1").await;
    let latest = version_info(&server, &alice, None).await;
    assert_eq!(latest["version"], first.as_str());
    assert_eq!(latest["algorithm"], MEGOLM_V1);
    assert_eq!(latest["auth_data"], algorithm("key1")["auth_data"]);
    assert_eq!(latest["count"], 0);
    assert!(latest["etag"].is_string(), "{latest}");

    let second = create_version(&server, &alice, "key2").await;
    let first_number: u64 = first.parse().expect("versions are integers");
    let second_number: u64 = second.parse().expect("versions are integers");
    assert!(second_number > first_number, "{second} after {first}");
    assert_eq!(version_info(&server, &alice, None).await["version"], second.as_str());
    assert_eq!(version_info(&server, &alice, None).await["auth_data"]["public_key"], "key2");

    // Older clients use the r0 and unstable paths.
    for prefix in ["r0", "unstable"] {
        let (status, body) = server.get(&format!("/_matrix/client/{prefix}/room_keys/version"), alice.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["version"], second.as_str());
    }

    // The older version can still be read by its number.
    let old = version_info(&server, &alice, Some(&first)).await;
    assert_eq!(old["version"], first.as_str());
    assert_eq!(old["auth_data"]["public_key"], "key1");

    assert_error(&server.get(&version_path(Some("999")), alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(&server.get(&version_path(Some("abc")), alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn keys_are_stored_and_read_back_at_all_three_levels() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let version = create_version(&server, &alice, "key1").await;

    // One session through the session-level endpoint.
    let body = put_session(&server, &alice, &version, ROOM_A, SESSION_1, key(0, 0, true, "a1")).await;
    assert_eq!(body["count"], 1);
    assert!(body["etag"].is_string());

    // A room's sessions through the room-level endpoint.
    let (status, body) = server
        .put(
            &keys_path(&version, Some(ROOM_A), None),
            alice.token(),
            json!({"sessions": {SESSION_2: key(3, 1, false, "a2")}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 2);

    // Several rooms through the top-level endpoint.
    let (status, body) = server
        .put(
            &keys_path(&version, None, None),
            alice.token(),
            json!({"rooms": {ROOM_B: {"sessions": {SESSION_1: key(5, 2, false, "b1")}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 3);

    // Everything comes back exactly as sent.
    assert_eq!(
        all_keys(&server, &alice, &version).await,
        json!({"rooms": {
            ROOM_A: {"sessions": {SESSION_1: key(0, 0, true, "a1"), SESSION_2: key(3, 1, false, "a2")}},
            ROOM_B: {"sessions": {SESSION_1: key(5, 2, false, "b1")}},
        }})
    );
    let (status, body) = server.get(&keys_path(&version, Some(ROOM_A), None), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"sessions": {SESSION_1: key(0, 0, true, "a1"), SESSION_2: key(3, 1, false, "a2")}}));
    assert_eq!(get_session(&server, &alice, &version, ROOM_B, SESSION_1).await, key(5, 2, false, "b1"));

    // A room without keys is an empty map; a session without a key is not found.
    let (status, body) = server.get(&keys_path(&version, Some("!empty:hearth.test"), None), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"sessions": {}}));
    assert_error(
        &server.get(&keys_path(&version, Some(ROOM_B), Some(SESSION_2)), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    // The version reports the count too.
    assert_eq!(version_info(&server, &alice, Some(&version)).await["count"], 3);
    assert_eq!(version_info(&server, &alice, None).await["count"], 3);
}

#[tokio::test]
async fn etag_changes_exactly_when_the_keys_change() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let version = create_version(&server, &alice, "key1").await;
    let initial = version_info(&server, &alice, None).await["etag"].clone();

    let stored = put_session(&server, &alice, &version, ROOM_A, SESSION_1, key(5, 0, false, "first")).await;
    assert_ne!(stored["etag"], initial, "a new key changes the etag");
    assert_eq!(version_info(&server, &alice, None).await["etag"], stored["etag"]);

    // The same key again, and a worse one: nothing changes, so neither does the etag.
    let same = put_session(&server, &alice, &version, ROOM_A, SESSION_1, key(5, 0, false, "first")).await;
    assert_eq!(same["etag"], stored["etag"]);
    assert_eq!(same["count"], 1);
    let worse = put_session(&server, &alice, &version, ROOM_A, SESSION_1, key(6, 0, false, "worse")).await;
    assert_eq!(worse["etag"], stored["etag"]);
    // Reading and updating auth_data leave the etag alone.
    all_keys(&server, &alice, &version).await;
    let (status, body) = server.put(&version_path(Some(&version)), alice.token(), algorithm("rotated")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(version_info(&server, &alice, None).await["etag"], stored["etag"]);

    // A better key replaces the stored one and changes the etag.
    let better = put_session(&server, &alice, &version, ROOM_A, SESSION_1, key(4, 0, false, "better")).await;
    assert_ne!(better["etag"], stored["etag"]);
    assert_eq!(better["count"], 1);

    // Deleting nothing changes nothing; deleting a key changes the etag.
    let (status, none_deleted) = server.delete(&keys_path(&version, Some(ROOM_B), None), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{none_deleted}");
    assert_eq!(none_deleted["etag"], better["etag"]);
    let (status, deleted) = server.delete(&keys_path(&version, Some(ROOM_A), None), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_ne!(deleted["etag"], better["etag"]);
    assert_eq!(deleted["count"], 0);
    assert_eq!(version_info(&server, &alice, None).await["etag"], deleted["etag"]);
}

#[tokio::test]
async fn a_key_is_replaced_only_by_a_better_one() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let version = create_version(&server, &alice, "key1").await;
    let put = |data: Value| {
        let (server, alice, version) = (&server, &alice, &version);
        async move { put_session(server, alice, version, ROOM_A, SESSION_1, data).await }
    };
    let stored = || async { get_session(&server, &alice, &version, ROOM_A, SESSION_1).await };

    put(key(10, 5, false, "start")).await;

    // 1. is_verified: a verified key beats an unverified one, whatever its other fields …
    put(key(20, 9, true, "verified")).await;
    assert_eq!(stored().await, key(20, 9, true, "verified"));
    // … and an unverified key never replaces a verified one, even with better indexes.
    put(key(0, 0, false, "unverified")).await;
    assert_eq!(stored().await, key(20, 9, true, "verified"));

    // 2. With equal is_verified, the lower first_message_index wins, whatever the count.
    put(key(21, 0, true, "higher index")).await;
    assert_eq!(stored().await, key(20, 9, true, "verified"));
    put(key(15, 12, true, "lower index")).await;
    assert_eq!(stored().await, key(15, 12, true, "lower index"));

    // 3. With equal is_verified and first_message_index, the lower forwarded_count wins.
    put(key(15, 13, true, "more forwarded")).await;
    assert_eq!(stored().await, key(15, 12, true, "lower index"));
    put(key(15, 3, true, "less forwarded")).await;
    assert_eq!(stored().await, key(15, 3, true, "less forwarded"));

    // An equal key keeps the stored one.
    put(key(15, 3, true, "equal")).await;
    assert_eq!(stored().await, key(15, 3, true, "less forwarded"));

    // The rule holds through the room- and top-level endpoints as well.
    let (status, body) = server
        .put(
            &keys_path(&version, Some(ROOM_A), None),
            alice.token(),
            json!({"sessions": {SESSION_1: key(16, 0, true, "room-level worse"), SESSION_2: key(1, 1, false, "new")}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 2);
    assert_eq!(stored().await, key(15, 3, true, "less forwarded"));
    let (status, body) = server
        .put(
            &keys_path(&version, None, None),
            alice.token(),
            json!({"rooms": {ROOM_A: {"sessions": {SESSION_1: key(15, 2, true, "top-level better")}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(stored().await, key(15, 2, true, "top-level better"));
}

#[tokio::test]
async fn writing_to_a_version_that_is_not_current_is_refused_with_the_current_version() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;

    // No backup at all: not found.
    assert_error(
        &server.put(&keys_path("1", Some(ROOM_A), Some(SESSION_1)), alice.token(), key(0, 0, false, "x")).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    let old = create_version(&server, &alice, "key1").await;
    put_session(&server, &alice, &old, ROOM_A, SESSION_1, key(0, 0, false, "old")).await;
    let current = create_version(&server, &alice, "key2").await;

    for path in [
        keys_path(&old, Some(ROOM_A), Some(SESSION_2)),
        keys_path(&old, Some(ROOM_A), None),
        keys_path(&old, None, None),
        keys_path("12345", Some(ROOM_A), Some(SESSION_2)),
    ] {
        let body = if path.contains(&segment(SESSION_2)) {
            key(0, 0, false, "stale")
        } else if path.contains(&segment(ROOM_A)) {
            json!({"sessions": {SESSION_2: key(0, 0, false, "stale")}})
        } else {
            json!({"rooms": {ROOM_A: {"sessions": {SESSION_2: key(0, 0, false, "stale")}}}})
        };
        let response = server.put(&path, alice.token(), body).await;
        assert_error(&response, StatusCode::FORBIDDEN, "M_WRONG_ROOM_KEYS_VERSION");
        assert_eq!(response.1["current_version"], current.as_str(), "{}", response.1);
    }

    // Nothing was written anywhere, and the old version's keys can still be read.
    assert_eq!(all_keys(&server, &alice, &current).await, json!({"rooms": {}}));
    assert_eq!(
        all_keys(&server, &alice, &old).await,
        json!({"rooms": {ROOM_A: {"sessions": {SESSION_1: key(0, 0, false, "old")}}}})
    );
    // Reading an unknown version is not found.
    assert_error(
        &server.get(&keys_path("12345", None, None), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn auth_data_can_be_updated_but_not_the_algorithm() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let version = create_version(&server, &alice, "key1").await;
    put_session(&server, &alice, &version, ROOM_A, SESSION_1, key(0, 0, false, "k")).await;

    let (status, body) = server.put(&version_path(Some(&version)), alice.token(), algorithm("key1-resigned")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));
    let info = version_info(&server, &alice, Some(&version)).await;
    assert_eq!(info["auth_data"], algorithm("key1-resigned")["auth_data"]);
    assert_eq!(info["version"], version.as_str());
    assert_eq!(info["count"], 1, "updating auth_data keeps the keys");

    // A matching version in the body is fine; a different one is refused.
    let mut with_version = algorithm("key1-again");
    with_version["version"] = json!(version);
    let (status, body) = server.put(&version_path(Some(&version)), alice.token(), with_version).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut other_version = algorithm("sneaky");
    other_version["version"] = json!("999");
    assert_error(
        &server.put(&version_path(Some(&version)), alice.token(), other_version).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    // The algorithm cannot change.
    let changed = json!({"algorithm": "org.example.other", "auth_data": {"public_key": "sneaky"}});
    assert_error(
        &server.put(&version_path(Some(&version)), alice.token(), changed).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let info = version_info(&server, &alice, Some(&version)).await;
    assert_eq!(info["algorithm"], MEGOLM_V1);
    assert_eq!(info["auth_data"]["public_key"], "key1-again");

    // Unknown versions are not found.
    assert_error(
        &server.put(&version_path(Some("999")), alice.token(), algorithm("x")).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn keys_are_deleted_at_each_level() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let version = create_version(&server, &alice, "key1").await;
    let (status, body) = server
        .put(
            &keys_path(&version, None, None),
            alice.token(),
            json!({"rooms": {
                ROOM_A: {"sessions": {SESSION_1: key(0, 0, false, "a1"), SESSION_2: key(0, 0, false, "a2")}},
                ROOM_B: {"sessions": {SESSION_1: key(0, 0, false, "b1"), SESSION_2: key(0, 0, false, "b2")}},
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 4);

    // One session.
    let (status, body) = server.delete(&keys_path(&version, Some(ROOM_A), Some(SESSION_1)), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 3);
    assert_error(
        &server.get(&keys_path(&version, Some(ROOM_A), Some(SESSION_1)), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_eq!(get_session(&server, &alice, &version, ROOM_B, SESSION_1).await, key(0, 0, false, "b1"));

    // One room.
    let (status, body) = server.delete(&keys_path(&version, Some(ROOM_B), None), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 1);
    assert_eq!(
        all_keys(&server, &alice, &version).await,
        json!({"rooms": {ROOM_A: {"sessions": {SESSION_2: key(0, 0, false, "a2")}}}})
    );

    // Everything.
    let (status, body) = server.delete(&keys_path(&version, None, None), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 0);
    assert!(body["etag"].is_string());
    assert_eq!(all_keys(&server, &alice, &version).await, json!({"rooms": {}}));
    assert_eq!(version_info(&server, &alice, None).await["count"], 0);

    // Deleting keys of an unknown version is not found.
    assert_error(
        &server.delete(&keys_path("999", None, None), alice.token(), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn a_deleted_version_is_gone_with_its_keys() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let first = create_version(&server, &alice, "key1").await;
    let second = create_version(&server, &alice, "key2").await;
    put_session(&server, &alice, &second, ROOM_A, SESSION_1, key(0, 0, false, "k")).await;

    let (status, body) = server.delete(&version_path(Some(&second)), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));

    assert_error(&server.get(&version_path(Some(&second)), alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(
        &server.get(&keys_path(&second, None, None), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.get(&keys_path(&second, Some(ROOM_A), Some(SESSION_1)), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.put(&version_path(Some(&second)), alice.token(), algorithm("key2")).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_eq!(
        server.count("SELECT COUNT(*) FROM key_backup_sessions").await,
        0,
        "the deleted version's keys are removed from the database"
    );

    // The remaining version is current again; deleting the version twice succeeds, as the spec
    // asks, while a version that never existed is not found.
    assert_eq!(version_info(&server, &alice, None).await["version"], first.as_str());
    let (status, body) = server.delete(&version_path(Some(&second)), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(
        &server.delete(&version_path(Some("999")), alice.token(), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    // Writing to the deleted version is refused in favour of the current one.
    let response =
        server.put(&keys_path(&second, Some(ROOM_A), Some(SESSION_1)), alice.token(), key(0, 0, false, "k")).await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(response.1["current_version"], first.as_str());

    // Version numbers are not reused after a deletion.
    server.delete(&version_path(Some(&first)), alice.token(), None).await;
    assert_error(&server.get(&version_path(None), alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let third = create_version(&server, &alice, "key3").await;
    assert!(third.parse::<u64>().expect("integer") > second.parse::<u64>().expect("integer"), "{third} after {second}");
}

#[tokio::test]
async fn another_user_cannot_see_or_touch_my_backup() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let version = create_version(&server, &alice, "alice-key").await;
    put_session(&server, &alice, &version, ROOM_A, SESSION_1, key(0, 0, true, "secret")).await;

    assert_error(&server.get(&version_path(None), bob.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(&server.get(&version_path(Some(&version)), bob.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(
        &server.get(&keys_path(&version, None, None), bob.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.get(&keys_path(&version, Some(ROOM_A), Some(SESSION_1)), bob.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.delete(&keys_path(&version, None, None), bob.token(), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.delete(&version_path(Some(&version)), bob.token(), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.put(&version_path(Some(&version)), bob.token(), algorithm("bob-key")).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    // Bob's own backup is separate: his first version does not see Alice's keys.
    let bobs = create_version(&server, &bob, "bob-key").await;
    assert_eq!(all_keys(&server, &bob, &bobs).await, json!({"rooms": {}}));
    put_session(&server, &bob, &bobs, ROOM_A, SESSION_1, key(9, 9, false, "bob")).await;

    // Alice's backup is untouched.
    let info = version_info(&server, &alice, None).await;
    assert_eq!(info["version"], version.as_str());
    assert_eq!(info["auth_data"]["public_key"], "alice-key");
    assert_eq!(get_session(&server, &alice, &version, ROOM_A, SESSION_1).await, key(0, 0, true, "secret"));

    // Without a token, nothing.
    assert_error(&server.get(&version_path(None), None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;

    // Creating a version.
    let raw = server.request_raw(Method::POST, &version_path(None), alice.token(), b"{not json".to_vec()).await;
    assert_error(&raw, StatusCode::BAD_REQUEST, "M_NOT_JSON");
    for body in [
        json!({"auth_data": {"public_key": "k"}}),
        json!({"algorithm": MEGOLM_V1}),
        json!({"algorithm": MEGOLM_V1, "auth_data": "not an object"}),
        json!({"algorithm": 5, "auth_data": {}}),
    ] {
        assert_error(
            &server.post(&version_path(None), alice.token(), body).await,
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
        );
    }
    assert_error(&server.get(&version_path(None), alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_eq!(server.count("SELECT COUNT(*) FROM key_backup_versions").await, 0);

    let version = create_version(&server, &alice, "key1").await;
    put_session(&server, &alice, &version, ROOM_A, SESSION_1, key(5, 5, false, "kept")).await;
    let before = version_info(&server, &alice, None).await;

    // Storing keys: malformed JSON, and key data with missing or mistyped fields. In a batch
    // with one bad key, the good keys are not stored either.
    let session_path = keys_path(&version, Some(ROOM_A), Some(SESSION_1));
    let raw = server.request_raw(Method::PUT, &session_path, alice.token(), b"[1, 2".to_vec()).await;
    assert_error(&raw, StatusCode::BAD_REQUEST, "M_NOT_JSON");
    let mut missing_data = key(0, 0, true, "x");
    missing_data.as_object_mut().expect("object").remove("session_data");
    let mut missing_verified = key(0, 0, true, "x");
    missing_verified.as_object_mut().expect("object").remove("is_verified");
    let negative_index =
        json!({"first_message_index": -1, "forwarded_count": 0, "is_verified": true, "session_data": {}});
    let string_data = json!({"first_message_index": 0, "forwarded_count": 0, "is_verified": true, "session_data": "x"});
    for bad in [missing_data, missing_verified, negative_index, string_data] {
        assert_error(
            &server.put(&session_path, alice.token(), bad.clone()).await,
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
        );
        let batch = json!({"rooms": {
            ROOM_B: {"sessions": {SESSION_2: key(0, 0, true, "good")}},
            ROOM_A: {"sessions": {SESSION_1: bad}},
        }});
        assert_error(
            &server.put(&keys_path(&version, None, None), alice.token(), batch).await,
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
        );
    }
    assert_error(
        &server.put(&keys_path(&version, Some(ROOM_A), None), alice.token(), json!({"sessions": "nope"})).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &server
            .put(&keys_path(&version, None, None), alice.token(), json!({"rooms": {"not a room id": {"sessions": {}}}}))
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );

    // Updating a version with a malformed body.
    let raw = server.request_raw(Method::PUT, &version_path(Some(&version)), alice.token(), b"{".to_vec()).await;
    assert_error(&raw, StatusCode::BAD_REQUEST, "M_NOT_JSON");
    assert_error(
        &server.put(&version_path(Some(&version)), alice.token(), json!({"algorithm": MEGOLM_V1})).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );

    // Nothing changed: same keys, same etag, same auth_data.
    assert_eq!(version_info(&server, &alice, None).await, before);
    assert_eq!(
        all_keys(&server, &alice, &version).await,
        json!({"rooms": {ROOM_A: {"sessions": {SESSION_1: key(5, 5, false, "kept")}}}})
    );
}

#[tokio::test]
async fn concurrent_uploads_lose_no_key_and_keep_the_best() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let version = create_version(&server, &alice, "key1").await;

    // Twenty clients upload at once: each a session of its own, and each a candidate for one
    // shared session, where the best candidate (verified, lowest index) must win.
    let uploads = (0..20u64).map(|i| {
        let (server, alice, version) = (&server, &alice, &version);
        async move {
            let body = json!({"rooms": {ROOM_A: {"sessions": {
                format!("own-{i}"): key(i, 0, false, "own"),
                "shared": key(100 - i, 0, i % 2 == 1, &format!("shared-{i}")),
            }}}});
            let (status, body) = server.put(&keys_path(version, None, None), alice.token(), body).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    });
    futures_util::future::join_all(uploads).await;

    let info = version_info(&server, &alice, None).await;
    assert_eq!(info["count"], 21);
    let keys = all_keys(&server, &alice, &version).await;
    let sessions = keys["rooms"][ROOM_A]["sessions"].as_object().expect("sessions");
    for i in 0..20u64 {
        assert_eq!(sessions[&format!("own-{i}")], key(i, 0, false, "own"));
    }
    // Verified candidates are the odd ones; the lowest index among them is 100 - 19.
    assert_eq!(sessions["shared"], key(81, 0, true, "shared-19"));
}

#[tokio::test]
async fn concurrent_version_creation_gives_distinct_versions() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;

    let creations = (0..10).map(|i| {
        let (server, alice) = (&server, &alice);
        async move { create_version(server, alice, &format!("key{i}")).await }
    });
    let mut versions: Vec<u64> = futures_util::future::join_all(creations)
        .await
        .iter()
        .map(|version| version.parse().expect("versions are integers"))
        .collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 10, "every creation got its own version: {versions:?}");
    let latest = version_info(&server, &alice, None).await;
    assert_eq!(latest["version"], versions[9].to_string());
}

#[tokio::test]
async fn deactivation_erases_the_backup() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let version = create_version(&server, &alice, "alice-key").await;
    put_session(&server, &alice, &version, ROOM_A, SESSION_1, key(0, 0, true, "alice")).await;
    let bobs = create_version(&server, &bob, "bob-key").await;
    put_session(&server, &bob, &bobs, ROOM_A, SESSION_1, key(0, 0, true, "bob")).await;

    let deactivate = "/_matrix/client/v3/account/deactivate";
    let (status, body) = server.post(deactivate, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let session = body["session"].as_str().expect("UIA session").to_owned();
    let (status, body) = server.post(deactivate, alice.token(), json!({"auth": alice.password_auth(&session)})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let alices = "SELECT COUNT(*) FROM key_backup_sessions WHERE user_id = '@alice:hearth.test'";
    assert_eq!(server.count(alices).await, 0);
    assert_eq!(server.count("SELECT COUNT(*) FROM key_backup_versions WHERE user_id = '@alice:hearth.test'").await, 0);
    // Bob's backup is untouched.
    assert_eq!(get_session(&server, &bob, &bobs, ROOM_A, SESSION_1).await, key(0, 0, true, "bob"));
}
