//! A user-interactive-auth session authorises only the request that opened it: the same
//! endpoint and the same meaningful fields (which devices, which keys, whether to erase...),
//! as Synapse's `check_ui_auth` compares them. Any other request presenting the session is
//! refused with 403, changes nothing, and leaves the session usable for its own request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PW: &str = "uia-binding-test-pw";

/// Sends `body` without `auth`, expects the 401 challenge, and returns its session id.
async fn challenge(server: &TestServer, method: Method, path: &str, user: &TestUser, body: Value) -> String {
    let (status, body) = server.request(method, path, user.token(), Some(body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    body["session"].as_str().expect("a UIA session").to_owned()
}

fn with_auth(mut body: Value, user: &TestUser, session: &str) -> Value {
    body["auth"] = user.password_auth(session);
    body
}

async fn device_ids(server: &TestServer, user: &TestUser) -> Vec<String> {
    let (status, body) = server.get("/_matrix/client/v3/devices", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut ids: Vec<String> = body["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&TestUser]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|user| user.device_id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_session_for_deleting_one_device_cannot_delete_another() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let laptop = server.login("alice", PW).await;
    let phone = server.login("alice", PW).await;
    let laptop_path = format!("/_matrix/client/v3/devices/{}", laptop.device_id);
    let phone_path = format!("/_matrix/client/v3/devices/{}", phone.device_id);

    let session = challenge(&server, Method::DELETE, &laptop_path, &alice, json!({})).await;
    let hijack = server.delete(&phone_path, alice.token(), Some(with_auth(json!({}), &alice, &session))).await;
    assert_error(&hijack, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Nor through the bulk endpoint, which is another operation.
    let bulk = with_auth(json!({"devices": [phone.device_id]}), &alice, &session);
    assert_error(
        &server.post("/_matrix/client/v3/delete_devices", alice.token(), bulk).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_eq!(device_ids(&server, &alice).await, sorted(&[&alice, &laptop, &phone]));

    // The session still serves the request that opened it.
    let (status, body) = server.delete(&laptop_path, alice.token(), Some(with_auth(json!({}), &alice, &session))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(device_ids(&server, &alice).await, sorted(&[&alice, &phone]));
}

#[tokio::test]
async fn a_session_for_deleting_some_devices_cannot_delete_others() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let laptop = server.login("alice", PW).await;
    let phone = server.login("alice", PW).await;
    const BULK: &str = "/_matrix/client/v3/delete_devices";

    let asked = json!({"devices": [laptop.device_id]});
    let session = challenge(&server, Method::POST, BULK, &alice, asked.clone()).await;
    let more = with_auth(json!({"devices": [laptop.device_id, phone.device_id]}), &alice, &session);
    assert_error(&server.post(BULK, alice.token(), more).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let single = format!("/_matrix/client/v3/devices/{}", laptop.device_id);
    let other_endpoint = server.delete(&single, alice.token(), Some(with_auth(json!({}), &alice, &session))).await;
    assert_error(&other_endpoint, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(device_ids(&server, &alice).await, sorted(&[&alice, &laptop, &phone]));

    let (status, body) = server.post(BULK, alice.token(), with_auth(asked, &alice, &session)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(device_ids(&server, &alice).await, sorted(&[&alice, &phone]));
}

#[tokio::test]
async fn a_session_is_bound_to_what_a_password_change_or_deactivation_asked() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let laptop = server.login("alice", PW).await;
    const PASSWORD: &str = "/_matrix/client/v3/account/password";
    const DEACTIVATE: &str = "/_matrix/client/v3/account/deactivate";

    // Opened to change the password and keep the other devices: it cannot log them out.
    let keep = json!({"new_password": "a new password", "logout_devices": false});
    let session = challenge(&server, Method::POST, PASSWORD, &alice, keep.clone()).await;
    let logout = with_auth(json!({"new_password": "a new password", "logout_devices": true}), &alice, &session);
    assert_error(&server.post(PASSWORD, alice.token(), logout).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Nor deactivate the account.
    let deactivate = with_auth(json!({}), &alice, &session);
    assert_error(&server.post(DEACTIVATE, alice.token(), deactivate).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(device_ids(&server, &alice).await, sorted(&[&alice, &laptop]));
    let (status, body) = server.post(PASSWORD, alice.token(), with_auth(keep, &alice, &session)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(device_ids(&server, &alice).await, sorted(&[&alice, &laptop]));
    let alice = TestUser { password: "a new password".to_owned(), ..alice };

    // Opened to deactivate without erasure: it cannot erase.
    let session = challenge(&server, Method::POST, DEACTIVATE, &alice, json!({"erase": false})).await;
    let erase = with_auth(json!({"erase": true}), &alice, &session);
    assert_error(&server.post(DEACTIVATE, alice.token(), erase).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", alice.token()).await.0, StatusCode::OK);
    let (status, body) = server.post(DEACTIVATE, alice.token(), with_auth(json!({}), &alice, &session)).await;
    assert_eq!(status, StatusCode::OK, "erase: false is the default: {body}");
}

#[tokio::test]
async fn a_session_for_one_set_of_cross_signing_keys_cannot_upload_another() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    const UPLOAD: &str = "/_matrix/client/v3/keys/device_signing/upload";
    let master =
        |key: &str| json!({"user_id": alice.user_id, "usage": ["master"], "keys": {format!("ed25519:{key}"): key}});
    // The first master key needs no authentication; replacing it does.
    let (status, body) = server.post(UPLOAD, alice.token(), json!({"master_key": master("first")})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let asked = json!({"master_key": master("second")});
    let session = challenge(&server, Method::POST, UPLOAD, &alice, asked.clone()).await;
    let other = with_auth(json!({"master_key": master("mallorys")}), &alice, &session);
    assert_error(&server.post(UPLOAD, alice.token(), other).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let query = json!({"device_keys": {&alice.user_id: []}});
    let (_, keys) = server.post("/_matrix/client/v3/keys/query", alice.token(), query.clone()).await;
    assert_eq!(keys["master_keys"][&alice.user_id]["keys"], json!({"ed25519:first": "first"}), "{keys}");

    let (status, body) = server.post(UPLOAD, alice.token(), with_auth(asked, &alice, &session)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, keys) = server.post("/_matrix/client/v3/keys/query", alice.token(), query).await;
    assert_eq!(keys["master_keys"][&alice.user_id]["keys"], json!({"ed25519:second": "second"}), "{keys}");
}
