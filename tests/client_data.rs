//! Per-user data (profiles, account data, filters) and the HTTP error model shared by every
//! endpoint: error codes for bad input, body limits, unknown paths and methods, CORS,
//! discovery and request ids.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ALICE: &str = "@alice:hearth.test";
const BOB: &str = "@bob:hearth.test";
const PASSWORD: &str = "correct horse battery";

fn profile_path(user_id: &str, field: Option<&str>) -> String {
    match field {
        Some(field) => format!("/_matrix/client/v3/profile/{user_id}/{field}"),
        None => format!("/_matrix/client/v3/profile/{user_id}"),
    }
}

async fn stored_profile(server: &TestServer, user_id: &str) -> Value {
    sqlx::query_scalar::<_, Value>("SELECT profile FROM users WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&server.state.pool)
        .await
        .expect("profile row")
}

// ---------------------------------------------------------------------------------------------
// Profiles

#[tokio::test]
async fn new_accounts_are_named_after_their_localpart() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;

    let (status, body) = server.get(&profile_path(ALICE, Some("displayname")), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"displayname": "alice"}));

    let (status, body) = server.get(&profile_path(ALICE, None), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"displayname": "alice"}));

    // No avatar yet.
    assert_error(
        &server.get(&profile_path(ALICE, Some("avatar_url")), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn displayname_is_set_and_visible_to_everyone() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;

    let (status, body) =
        server.put(&profile_path(ALICE, Some("displayname")), alice.token(), json!({"displayname": "Alice A."})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for token in [alice.token(), bob.token(), None] {
        let (status, body) = server.get(&profile_path(ALICE, Some("displayname")), token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"displayname": "Alice A."}));
        let (status, body) = server.get(&profile_path(ALICE, None), token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["displayname"], "Alice A.");
    }
    // Bob's own profile is untouched.
    let (_, body) = server.get(&profile_path(BOB, Some("displayname")), None).await;
    assert_eq!(body, json!({"displayname": "bob"}));
}

#[tokio::test]
async fn avatar_url_is_set_and_visible_to_everyone() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;

    let (status, body) = server
        .put(&profile_path(ALICE, Some("avatar_url")), alice.token(), json!({"avatar_url": "mxc://hearth.test/abc"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for token in [alice.token(), bob.token(), None] {
        let (status, body) = server.get(&profile_path(ALICE, Some("avatar_url")), token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"avatar_url": "mxc://hearth.test/abc"}));
        let (status, body) = server.get(&profile_path(ALICE, None), token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"displayname": "alice", "avatar_url": "mxc://hearth.test/abc"}));
    }
}

#[tokio::test]
async fn another_users_profile_cannot_be_changed() {
    let server = TestServer::start().await;
    server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let before = stored_profile(&server, ALICE).await;

    assert_error(
        &server.put(&profile_path(ALICE, Some("displayname")), bob.token(), json!({"displayname": "Mallory"})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .put(&profile_path(ALICE, Some("avatar_url")), bob.token(), json!({"avatar_url": "mxc://evil.test/x"}))
            .await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.delete(&profile_path(ALICE, Some("displayname")), bob.token(), None).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_eq!(stored_profile(&server, ALICE).await, before);
    let (_, body) = server.get(&profile_path(ALICE, Some("displayname")), None).await;
    assert_eq!(body, json!({"displayname": "alice"}));
}

#[tokio::test]
async fn setting_a_profile_needs_a_token() {
    let server = TestServer::start().await;
    server.register("alice", PASSWORD).await;
    assert_error(
        &server.put(&profile_path(ALICE, Some("displayname")), None, json!({"displayname": "Anon"})).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    assert_eq!(stored_profile(&server, ALICE).await, json!({"displayname": "alice"}));
}

#[tokio::test]
async fn unknown_users_have_no_profile() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let nobody = "@nobody:hearth.test";
    for token in [alice.token(), None] {
        assert_error(&server.get(&profile_path(nobody, None), token).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
        assert_error(
            &server.get(&profile_path(nobody, Some("displayname")), token).await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
    }
}

#[tokio::test]
async fn displayname_of_the_wrong_type_is_bad_json() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    for bad in [json!({"displayname": 42}), json!({"displayname": {"nested": true}}), json!({"displayname": ["a"]})] {
        let response = server.put(&profile_path(ALICE, Some("displayname")), alice.token(), bad.clone()).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }
    let response =
        server.put(&profile_path(ALICE, Some("avatar_url")), alice.token(), json!({"avatar_url": false})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    assert_eq!(stored_profile(&server, ALICE).await, json!({"displayname": "alice"}));
}

#[tokio::test]
async fn a_profile_body_must_name_the_field_in_the_path() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let path = profile_path(ALICE, Some("displayname"));
    for body in [json!({}), json!({"avatar_url": "mxc://hearth.test/abc"}), json!({"m.tz": "Europe/Paris"})] {
        let response = server.put(&path, alice.token(), body.clone()).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }
    assert_eq!(stored_profile(&server, ALICE).await, json!({"displayname": "alice"}));

    // Other keys beside the path's are ignored, wherever they stand in the object.
    let body = r#"{"avatar_url": "mxc://hearth.test/abc", "displayname": "Alice", "zzz": [1]}"#;
    let response = server.request_raw(reqwest::Method::PUT, &path, alice.token(), body.as_bytes().to_vec()).await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    assert_eq!(stored_profile(&server, ALICE).await, json!({"displayname": "Alice"}));
}

#[tokio::test]
async fn extended_profile_fields_round_trip_and_can_be_deleted() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let tz = profile_path(ALICE, Some("m.tz"));

    let (status, body) = server.put(&tz, alice.token(), json!({"m.tz": "Europe/Paris"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.get(&tz, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"m.tz": "Europe/Paris"}));
    let (_, body) = server.get(&profile_path(ALICE, None), None).await;
    assert_eq!(body, json!({"displayname": "alice", "m.tz": "Europe/Paris"}));

    // A custom field may hold any JSON.
    let custom = profile_path(ALICE, Some("org.example.pets"));
    let pets = json!({"org.example.pets": {"cats": ["Tom"], "count": 1}});
    assert_eq!(server.put(&custom, alice.token(), pets.clone()).await.0, StatusCode::OK);
    assert_eq!(server.get(&custom, None).await.1, pets);

    let (status, body) = server.delete(&tz, alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(&server.get(&tz, None).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let (_, body) = server.get(&profile_path(ALICE, None), None).await;
    assert_eq!(body, json!({"displayname": "alice", "org.example.pets": {"cats": ["Tom"], "count": 1}}));
}

#[tokio::test]
async fn a_profile_over_64_kib_is_refused() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let half = "x".repeat(40 * 1024);

    let first = profile_path(ALICE, Some("org.example.first"));
    assert_eq!(server.put(&first, alice.token(), json!({"org.example.first": half})).await.0, StatusCode::OK);
    let before = stored_profile(&server, ALICE).await;

    // Each field alone fits; together they do not.
    let second = profile_path(ALICE, Some("org.example.second"));
    let response = server.put(&second, alice.token(), json!({"org.example.second": half})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_PROFILE_TOO_LARGE");
    assert_eq!(stored_profile(&server, ALICE).await, before);
    assert_error(&server.get(&second, None).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let whole = "y".repeat(65 * 1024);
    let third = profile_path(ALICE, Some("org.example.third"));
    let response = server.put(&third, alice.token(), json!({"org.example.third": whole})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_PROFILE_TOO_LARGE");
    assert_eq!(stored_profile(&server, ALICE).await, before);
}

// ---------------------------------------------------------------------------------------------
// Account data

fn global_data(user_id: &str, data_type: &str) -> String {
    format!("/_matrix/client/v3/user/{user_id}/account_data/{data_type}")
}

fn room_data(user_id: &str, room_id: &str, data_type: &str) -> String {
    format!("/_matrix/client/v3/user/{user_id}/rooms/{room_id}/account_data/{data_type}")
}

async fn account_data_rows(server: &TestServer) -> i64 {
    server.count("SELECT count(*) FROM account_data").await
}

#[tokio::test]
async fn global_account_data_round_trips() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let path = global_data(ALICE, "org.example.settings");
    let content = json!({"theme": "dark", "nested": {"list": [1, 2, {"x": null}], "flag": true}, "n": 1.5});

    let (status, body) = server.put(&path, alice.token(), content.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, content);

    // Overwriting replaces the content wholesale.
    assert_eq!(server.put(&path, alice.token(), json!({"theme": "light"})).await.0, StatusCode::OK);
    assert_eq!(server.get(&path, alice.token()).await.1, json!({"theme": "light"}));
    assert_eq!(account_data_rows(&server).await, 1);

    // A well-known type works as well.
    let direct = global_data(ALICE, "m.direct");
    let rooms = json!({"@bob:hearth.test": ["!abc:hearth.test"]});
    assert_eq!(server.put(&direct, alice.token(), rooms.clone()).await.0, StatusCode::OK);
    assert_eq!(server.get(&direct, alice.token()).await.1, rooms);
}

#[tokio::test]
async fn room_account_data_is_independent_of_global_data() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let global = global_data(ALICE, "org.example.note");
    let room_a = room_data(ALICE, "!abc:hearth.test", "org.example.note");
    let room_b = room_data(ALICE, "!def:hearth.test", "org.example.note");

    assert_eq!(server.put(&room_a, alice.token(), json!({"text": "room a"})).await.0, StatusCode::OK);
    assert_error(&server.get(&global, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(&server.get(&room_b, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    assert_eq!(server.put(&global, alice.token(), json!({"text": "global"})).await.0, StatusCode::OK);
    assert_eq!(server.get(&room_a, alice.token()).await.1, json!({"text": "room a"}));
    assert_eq!(server.get(&global, alice.token()).await.1, json!({"text": "global"}));
    assert_eq!(account_data_rows(&server).await, 2);
}

#[tokio::test]
async fn missing_account_data_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    assert_error(
        &server.get(&global_data(ALICE, "org.example.nothing"), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.get(&room_data(ALICE, "!abc:hearth.test", "org.example.nothing"), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn another_users_account_data_is_forbidden() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let path = global_data(ALICE, "org.example.secret");
    let room_path = room_data(ALICE, "!abc:hearth.test", "org.example.secret");
    assert_eq!(server.put(&path, alice.token(), json!({"pin": 1234})).await.0, StatusCode::OK);
    assert_eq!(server.put(&room_path, alice.token(), json!({"pin": 1234})).await.0, StatusCode::OK);

    for path in [&path, &room_path] {
        assert_error(&server.get(path, bob.token()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
        assert_error(&server.put(path, bob.token(), json!({"pin": 0})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
        assert_eq!(server.get(path, alice.token()).await.1, json!({"pin": 1234}));
    }
    assert_error(&server.get(&path, None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    assert_eq!(account_data_rows(&server).await, 2);
}

#[tokio::test]
async fn server_controlled_account_data_cannot_be_set() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    for data_type in ["m.fully_read", "m.push_rules"] {
        let response = server.put(&global_data(ALICE, data_type), alice.token(), json!({"event_id": "$x"})).await;
        assert_error(&response, StatusCode::METHOD_NOT_ALLOWED, "M_BAD_JSON");
        let response = server
            .put(&room_data(ALICE, "!abc:hearth.test", data_type), alice.token(), json!({"event_id": "$x"}))
            .await;
        assert_error(&response, StatusCode::METHOD_NOT_ALLOWED, "M_BAD_JSON");
    }
    assert_eq!(account_data_rows(&server).await, 0);
}

#[tokio::test]
async fn invalid_room_id_in_an_account_data_path_is_invalid_param() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    // (`!opaque` without a server name is a valid room id since room version 12.)
    for room in ["not-a-room", "%23alias:hearth.test", "@alice:hearth.test"] {
        let path = room_data(ALICE, room, "org.example.note");
        let response = server.put(&path, alice.token(), json!({"a": 1})).await;
        assert_eq!(response.0, StatusCode::BAD_REQUEST, "{room}: {}", response.1);
        assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
        assert_error(&server.get(&path, alice.token()).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    assert_eq!(account_data_rows(&server).await, 0);
}

#[tokio::test]
async fn account_data_must_be_a_json_object() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let path = global_data(ALICE, "org.example.list");
    for body in [json!([1, 2, 3]), json!("text"), json!(42), json!(null)] {
        let response = server.put(&path, alice.token(), body.clone()).await;
        assert_eq!(response.0, StatusCode::BAD_REQUEST, "{body} was accepted: {}", response.1);
        assert_eq!(response.1["errcode"], "M_BAD_JSON", "{}", response.1);
    }
    let room_path = room_data(ALICE, "!abc:hearth.test", "org.example.list");
    let response = server.put(&room_path, alice.token(), json!([1])).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    assert_eq!(account_data_rows(&server).await, 0);
}

// ---------------------------------------------------------------------------------------------
// Filters

fn filter_path(user_id: &str) -> String {
    format!("/_matrix/client/v3/user/{user_id}/filter")
}

#[tokio::test]
async fn filters_are_stored_and_returned() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let definition = json!({
        "event_fields": ["type", "content.body"],
        "event_format": "client",
        "presence": {"not_types": ["m.presence"]},
        "room": {
            "rooms": ["!abc:hearth.test"],
            "timeline": {"limit": 10, "types": ["m.room.message"], "not_senders": ["@spam:hearth.test"]},
            "state": {"lazy_load_members": true},
        },
    });

    let (status, body) = server.post(&filter_path(ALICE), alice.token(), definition.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let filter_id = body["filter_id"].as_str().expect("filter_id is a string").to_owned();
    // The spec forbids ids starting with `{`: clients tell ids from inline filters that way.
    assert!(!filter_id.is_empty() && !filter_id.starts_with('{'), "{filter_id}");

    let (status, stored) = server.get(&format!("{}/{filter_id}", filter_path(ALICE)), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["event_fields"], definition["event_fields"]);
    // "client" is the default, which may be left out.
    assert!(matches!(stored.get("event_format"), None | Some(Value::String(_))), "{stored}");
    assert_ne!(stored["event_format"], "federation");
    assert_eq!(stored["presence"]["not_types"], definition["presence"]["not_types"]);
    assert_eq!(stored["room"]["rooms"], definition["room"]["rooms"]);
    assert_eq!(stored["room"]["timeline"]["limit"], 10);
    assert_eq!(stored["room"]["timeline"]["types"], definition["room"]["timeline"]["types"]);
    assert_eq!(stored["room"]["timeline"]["not_senders"], definition["room"]["timeline"]["not_senders"]);
    assert_eq!(stored["room"]["state"]["lazy_load_members"], true);

    // A second filter gets a different id, and the first one is unchanged.
    let (_, body) = server.post(&filter_path(ALICE), alice.token(), json!({"room": {"timeline": {"limit": 1}}})).await;
    let second = body["filter_id"].as_str().expect("filter_id").to_owned();
    assert_ne!(second, filter_id);
    let (_, again) = server.get(&format!("{}/{filter_id}", filter_path(ALICE)), alice.token()).await;
    assert_eq!(again, stored);
    let (_, other) = server.get(&format!("{}/{second}", filter_path(ALICE)), alice.token()).await;
    assert_eq!(other["room"]["timeline"]["limit"], 1);
}

#[tokio::test]
async fn invalid_filters_are_refused_and_not_stored() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    for bad in [
        json!({"room": {"timeline": {"limit": "ten"}}}),
        json!({"room": {"rooms": "!abc:hearth.test"}}),
        json!({"event_format": "xml"}),
        json!({"presence": {"types": [1, 2]}}),
        json!([]),
    ] {
        let response = server.post(&filter_path(ALICE), alice.token(), bad.clone()).await;
        assert_eq!(response.0, StatusCode::BAD_REQUEST, "{bad} was accepted: {}", response.1);
        assert_eq!(response.1["errcode"], "M_BAD_JSON", "{bad}: {}", response.1);
    }
    assert_eq!(server.count("SELECT count(*) FROM filters").await, 0);
}

#[tokio::test]
async fn another_users_filters_are_forbidden() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let (_, body) = server.post(&filter_path(ALICE), alice.token(), json!({"room": {"timeline": {"limit": 5}}})).await;
    let filter_id = body["filter_id"].as_str().expect("filter_id").to_owned();

    assert_error(
        &server.get(&format!("{}/{filter_id}", filter_path(ALICE)), bob.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(&server.post(&filter_path(ALICE), bob.token(), json!({})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(server.count("SELECT count(*) FROM filters").await, 1);
    // Bob's own filter namespace does not contain Alice's filter.
    assert_error(
        &server.get(&format!("{}/{filter_id}", filter_path(BOB)), bob.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn unknown_filters_are_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    for id in ["0", "12345", "not-a-number", "99999999999999999999999"] {
        assert_error(
            &server.get(&format!("{}/{id}", filter_path(ALICE)), alice.token()).await,
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The error model

#[tokio::test]
async fn malformed_json_is_not_json() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let devices = server.count("SELECT count(*) FROM devices").await;

    for body in [&b"{\"type\": "[..], b"not json at all", b"{\"type\": \"m.login.password\",}"] {
        let response = server.request_raw(Method::POST, "/_matrix/client/v3/login", None, body.to_vec()).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_NOT_JSON");
    }
    let response = server
        .request_raw(Method::PUT, &global_data(ALICE, "org.example.x"), alice.token(), b"{\"a\": ".to_vec())
        .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_NOT_JSON");
    let response = server.request_raw(Method::POST, &filter_path(ALICE), alice.token(), b"{{".to_vec()).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_NOT_JSON");

    assert_eq!(server.count("SELECT count(*) FROM devices").await, devices);
    assert_eq!(account_data_rows(&server).await, 0);
    assert_eq!(server.count("SELECT count(*) FROM filters").await, 0);
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_bad_json() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let devices = server.count("SELECT count(*) FROM devices").await;

    let response = server.post("/_matrix/client/v3/login", None, json!({"type": 5})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let response = server.post("/_matrix/client/v3/login", None, json!(["m.login.password"])).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let device = format!("/_matrix/client/v3/devices/{}", alice.device_id);
    let response = server.put(&device, alice.token(), json!({"display_name": 5})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");

    assert_eq!(server.count("SELECT count(*) FROM devices").await, devices);
    assert_eq!(server.count("SELECT count(*) FROM devices WHERE display_name IS NOT NULL").await, 0);
}

#[tokio::test]
async fn oversized_bodies_are_too_large() {
    let server = TestServer::start_with(|config| config.limits.max_request_size = 1024).await;
    let alice = server.register("alice", PASSWORD).await;

    let padding = "x".repeat(4096);
    let response = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "user": "alice", "password": PASSWORD, "padding": padding}),
        )
        .await;
    assert_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");

    let path = global_data(ALICE, "org.example.big");
    let response = server.put(&path, alice.token(), json!({"padding": padding})).await;
    assert_error(&response, StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    assert_eq!(account_data_rows(&server).await, 0);

    // Bodies under the limit still work.
    assert_eq!(server.put(&path, alice.token(), json!({"small": true})).await.0, StatusCode::OK);
    assert_eq!(server.get(&path, alice.token()).await.1, json!({"small": true}));
}

#[tokio::test]
async fn oversized_chunked_bodies_are_too_large() {
    // Without a Content-Length the limit can only be enforced while reading.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_with(|config| config.limits.max_request_size = 1024).await;
    let address = server.base_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let mut request = format!(
        "POST /_matrix/client/v3/login HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    let chunk = "x".repeat(512);
    for _ in 0..8 {
        request.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).await.expect("send");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("M_TOO_LARGE"), "{response}");
}

#[tokio::test]
async fn unknown_paths_are_unrecognized() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    for (method, path) in [
        (Method::GET, "/_matrix/client/v3/no_such_thing"),
        (Method::POST, "/_matrix/client/v3/no_such_thing"),
        (Method::GET, "/_matrix/client/v3/account/whoami/extra"),
        (Method::GET, "/totally/elsewhere"),
    ] {
        for token in [None, alice.token()] {
            let response = server.request(method.clone(), path, token, None).await;
            assert_error(&response, StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
        }
    }
}

#[tokio::test]
async fn known_paths_with_the_wrong_method_are_unrecognized() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    for (method, path) in [
        (Method::DELETE, "/_matrix/client/v3/login"),
        (Method::PUT, "/_matrix/client/v3/login"),
        (Method::POST, "/_matrix/client/v3/account/whoami"),
        (Method::GET, "/_matrix/client/v3/logout"),
        (Method::PATCH, "/_matrix/client/versions"),
    ] {
        let response = server.request(method.clone(), path, alice.token(), None).await;
        assert_error(&response, StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED");
    }
    // The session the wrong method could have touched is intact.
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", alice.token()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn invalid_user_ids_in_paths_are_invalid_param() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    assert_error(
        &server.get("/_matrix/client/v3/profile/not-a-user-id", None).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.get("/_matrix/client/v3/profile/not-a-user-id/displayname", alice.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server
            .put("/_matrix/client/v3/profile/not-a-user-id/displayname", alice.token(), json!({"displayname": "x"}))
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.get(&global_data("alice", "org.example.x"), alice.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.post(&filter_path("@nocolon"), alice.token(), json!({})).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_eq!(server.count("SELECT count(*) FROM filters").await, 0);
    assert_eq!(stored_profile(&server, ALICE).await, json!({"displayname": "alice"}));
}

// ---------------------------------------------------------------------------------------------
// CORS

#[track_caller]
fn assert_cors(response: &reqwest::Response) {
    let headers = response.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("{} {} lacks {name}", response.status(), response.url()))
            .to_str()
            .expect("an ASCII header")
            .to_owned()
    };
    assert_eq!(header("access-control-allow-origin"), "*");
    let methods = header("access-control-allow-methods");
    let methods: Vec<&str> = methods.split(',').map(str::trim).collect();
    for method in ["GET", "POST", "PUT", "DELETE", "OPTIONS"] {
        assert!(methods.contains(&method), "allowed methods {methods:?} lack {method}");
    }
    let allowed = header("access-control-allow-headers").to_ascii_lowercase();
    let allowed: Vec<&str> = allowed.split(',').map(str::trim).collect();
    for name in ["authorization", "content-type"] {
        assert!(allowed.contains(&name), "allowed headers {allowed:?} lack {name}");
    }
}

#[tokio::test]
async fn every_response_carries_cors_headers() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let whoami = server.url("/_matrix/client/v3/account/whoami");

    let ok = server.http.get(&whoami).bearer_auth(&alice.access_token).send().await.expect("request");
    assert_eq!(ok.status(), StatusCode::OK);
    assert_cors(&ok);

    let unauthorized = server.http.get(&whoami).send().await.expect("request");
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    assert_cors(&unauthorized);

    let not_found = server.http.get(server.url("/_matrix/client/v3/no_such_thing")).send().await.expect("request");
    assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
    assert_cors(&not_found);

    let wrong_method = server.http.delete(server.url("/_matrix/client/v3/login")).send().await.expect("request");
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_cors(&wrong_method);

    let bad_json = server
        .http
        .post(server.url("/_matrix/client/v3/login"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("request");
    assert_eq!(bad_json.status(), StatusCode::BAD_REQUEST);
    assert_cors(&bad_json);

    let health = server.http.get(server.url("/health")).send().await.expect("request");
    assert_eq!(health.status(), StatusCode::OK);
    assert_cors(&health);
}

#[tokio::test]
async fn preflight_requests_succeed_on_any_path_without_a_token() {
    let server = TestServer::start().await;
    for path in [
        "/_matrix/client/v3/login",
        "/_matrix/client/v3/account/whoami",
        "/_matrix/client/v3/devices/SOMEDEVICE",
        "/_matrix/client/v3/no_such_thing",
        "/nowhere/at/all",
    ] {
        let response = server
            .http
            .request(Method::OPTIONS, server.url(path))
            .header("origin", "https://app.example.org")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "OPTIONS {path}");
        assert_cors(&response);
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery and health

#[tokio::test]
async fn versions_are_listed() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let versions = body["versions"].as_array().expect("versions is an array");
    assert!(!versions.is_empty());
    assert!(versions.iter().all(|v| v.as_str().is_some_and(|v| v.starts_with('v') || v.starts_with("r0"))), "{body}");
    assert!(versions.contains(&json!("v1.1")), "{body}");
}

#[tokio::test]
async fn capabilities_need_a_token_and_allow_password_changes() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let path = "/_matrix/client/v3/capabilities";
    assert_error(&server.get(path, None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    let (status, body) = server.get(path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The spec has clients assume password changes are possible when the capability is
    // absent, and ruma leaves it out in that case; it must not say `false`.
    let capabilities = body["capabilities"].as_object().expect("capabilities is an object");
    match capabilities.get("m.change_password") {
        None => {}
        Some(change_password) => assert_eq!(change_password["enabled"], true, "{body}"),
    }
}

#[tokio::test]
async fn well_known_client_points_at_the_public_base_url() {
    let server =
        TestServer::start_with(|config| config.public_baseurl = Some("https://chat.example.org/".to_owned())).await;
    let (status, body) = server.get("/.well-known/matrix/client", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["m.homeserver"]["base_url"], "https://chat.example.org/", "{body}");
}

#[tokio::test]
async fn well_known_server_is_derived_from_the_public_base_url() {
    for (base_url, expected) in [
        ("https://chat.example.org/", "chat.example.org:443"),
        ("https://chat.example.org:8448/matrix/", "chat.example.org:8448"),
        ("http://localhost:8008", "localhost:8008"),
        ("http://matrix.example.net", "matrix.example.net:80"),
    ] {
        let server = TestServer::start_with(|config| config.public_baseurl = Some(base_url.to_owned())).await;
        let (status, body) = server.get("/.well-known/matrix/server", None).await;
        assert_eq!(status, StatusCode::OK, "{base_url}: {body}");
        assert_eq!(body["m.server"], expected, "{base_url}: {body}");
    }
}

#[tokio::test]
async fn health_answers_ok() {
    let server = TestServer::start().await;
    let response = server.http.get(server.url("/health")).send().await.expect("request");
    assert_eq!(response.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Request ids

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let server = TestServer::start_with(|config| config.limits.max_request_size = 1024).await;
    let alice = server.register("alice", PASSWORD).await;
    let requests = [
        server.http.get(server.url("/_matrix/client/versions")),
        server.http.get(server.url("/_matrix/client/v3/account/whoami")).bearer_auth(&alice.access_token),
        server.http.get(server.url("/_matrix/client/v3/account/whoami")),
        server.http.get(server.url("/_matrix/client/v3/no_such_thing")),
        server.http.delete(server.url("/_matrix/client/v3/login")),
        server.http.request(Method::OPTIONS, server.url("/_matrix/client/v3/login")),
        server.http.post(server.url("/_matrix/client/v3/login")).body("x".repeat(4096)),
        server.http.get(server.url("/health")),
    ];
    let mut ids = Vec::new();
    for request in requests {
        let response = request.send().await.expect("request");
        let id = response
            .headers()
            .get("x-request-id")
            .unwrap_or_else(|| panic!("{} {} lacks x-request-id", response.status(), response.url()))
            .to_str()
            .expect("ASCII")
            .to_owned();
        assert!(!id.is_empty());
        ids.push(id);
    }
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "request ids are unique");
}
