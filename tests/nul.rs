//! U+0000 is refused as bad input everywhere (PostgreSQL cannot store it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn nul_characters_are_bad_input_not_server_errors() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "correct horse battery").await;
    let devices = server.count("SELECT count(*) FROM devices").await;
    let login = |extra: serde_json::Value| {
        let mut body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "correct horse battery"});
        body.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        body
    };
    let me = "/_matrix/client/v3/user/@alice:hearth.test";
    for (what, response, errcode) in [
        (
            "device id",
            server.post("/_matrix/client/v3/login", None, login(json!({"device_id": "D\u{0}X"}))).await,
            "M_BAD_JSON",
        ),
        (
            "device name",
            server.post("/_matrix/client/v3/login", None, login(json!({"initial_device_display_name": "\u{0}"}))).await,
            "M_BAD_JSON",
        ),
        (
            "rename",
            server
                .put(
                    &format!("/_matrix/client/v3/devices/{}", alice.device_id),
                    alice.token(),
                    json!({"display_name": "a\u{0}b"}),
                )
                .await,
            "M_BAD_JSON",
        ),
        ("device path", server.get("/_matrix/client/v3/devices/a%00b", alice.token()).await, "M_INVALID_PARAM"),
        (
            "account data",
            server.put(&format!("{me}/account_data/org.x"), alice.token(), json!({"a": "b\u{0}c"})).await,
            "M_BAD_JSON",
        ),
        (
            "account data key",
            server.put(&format!("{me}/account_data/org.x"), alice.token(), json!({"a\u{0}": 1})).await,
            "M_BAD_JSON",
        ),
        (
            "account data type",
            server.get(&format!("{me}/account_data/org%00x"), alice.token()).await,
            "M_INVALID_PARAM",
        ),
        (
            "displayname",
            server
                .put(
                    "/_matrix/client/v3/profile/@alice:hearth.test/displayname",
                    alice.token(),
                    json!({"displayname": "a\u{0}b"}),
                )
                .await,
            "M_BAD_JSON",
        ),
        (
            "profile field",
            server
                .put(
                    "/_matrix/client/v3/profile/@alice:hearth.test/org.x",
                    alice.token(),
                    json!({"org.x": {"k": "\u{0}"}}),
                )
                .await,
            "M_BAD_JSON",
        ),
        (
            "filter",
            server.post(&format!("{me}/filter"), alice.token(), json!({"event_fields": ["a\u{0}b"]})).await,
            "M_BAD_JSON",
        ),
        (
            "uia session",
            server
                .post(
                    "/_matrix/client/v3/delete_devices",
                    alice.token(),
                    json!({"devices": ["X"], "auth": alice.password_auth("a\u{0}b")}),
                )
                .await,
            "M_BAD_JSON",
        ),
        (
            "register",
            server
                .post(
                    "/_matrix/client/v3/register",
                    None,
                    json!({"username": "bob", "password": "p\u{0}w", "auth": {"type": "m.login.dummy"}}),
                )
                .await,
            "M_BAD_JSON",
        ),
        ("query", server.post("/_matrix/client/v3/register?kind=gu%00est", None, json!({})).await, "M_INVALID_PARAM"),
    ] {
        assert_eq!(response.0, StatusCode::BAD_REQUEST, "{what}: {}", response.1);
        assert_error(&response, StatusCode::BAD_REQUEST, errcode);
    }
    // An escaped backslash followed by "u0000" is ordinary text.
    let text = json!({"a": "\\u0000"});
    assert_eq!(server.put(&format!("{me}/account_data/org.x"), alice.token(), text.clone()).await.0, StatusCode::OK);
    assert_eq!(server.get(&format!("{me}/account_data/org.x"), alice.token()).await.1, text);
    assert_eq!(server.count("SELECT count(*) FROM devices").await, devices);
    assert_eq!(server.count("SELECT count(*) FROM users").await, 1);
}
