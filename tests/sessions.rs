//! Sessions: logging in and out, `whoami`, access-token handling, and devices.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const LOGIN: &str = "/_matrix/client/v3/login";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";
const PASSWORD: &str = "correct horse battery";

fn password_login(identifier: Value) -> Value {
    json!({"type": "m.login.password", "identifier": identifier, "password": PASSWORD})
}

fn user_identifier(user: &str) -> Value {
    json!({"type": "m.id.user", "user": user})
}

/// Asserts a successful login response for alice and returns (access_token, device_id).
#[track_caller]
fn assert_logged_in(response: &(StatusCode, Value)) -> (String, String) {
    let (status, body) = response;
    assert_eq!(*status, StatusCode::OK, "login failed: {body}");
    assert_eq!(body["user_id"], "@alice:hearth.test", "{body}");
    let token = body["access_token"].as_str().expect("access_token is a string");
    let device = body["device_id"].as_str().expect("device_id is a string");
    assert!(!token.is_empty() && !device.is_empty(), "{body}");
    (token.to_owned(), device.to_owned())
}

async fn whoami(server: &TestServer, token: &str) -> (StatusCode, Value) {
    server.get(WHOAMI, Some(token)).await
}

async fn device_ids(server: &TestServer, token: &str) -> Vec<String> {
    let (status, body) = server.get("/_matrix/client/v3/devices", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut ids: Vec<String> = body["devices"]
        .as_array()
        .expect("devices is an array")
        .iter()
        .map(|device| device["device_id"].as_str().expect("device_id").to_owned())
        .collect();
    ids.sort();
    ids
}

async fn device_count(server: &TestServer) -> i64 {
    server.count("SELECT count(*) FROM devices").await
}

// ---------------------------------------------------------------------------------------------
// Login

#[tokio::test]
async fn login_types_offer_password() {
    let server = TestServer::start().await;
    let (status, body) = server.get(LOGIN, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let flows = body["flows"].as_array().expect("flows is an array");
    assert!(flows.iter().any(|flow| flow["type"] == "m.login.password"), "{body}");
}

#[tokio::test]
async fn login_accepts_every_way_of_naming_the_user() {
    let server = TestServer::start().await;
    server.register("alice", PASSWORD).await;

    let by_localpart = server.post(LOGIN, None, password_login(user_identifier("alice"))).await;
    let by_user_id = server.post(LOGIN, None, password_login(user_identifier("@alice:hearth.test"))).await;
    let by_upper_case = server.post(LOGIN, None, password_login(user_identifier("ALICE"))).await;
    let legacy =
        server.post(LOGIN, None, json!({"type": "m.login.password", "user": "alice", "password": PASSWORD})).await;

    let mut tokens = Vec::new();
    for response in [&by_localpart, &by_user_id, &by_upper_case, &legacy] {
        let (token, device) = assert_logged_in(response);
        let (status, body) = whoami(&server, &token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["user_id"], "@alice:hearth.test");
        assert_eq!(body["device_id"], device.as_str());
        tokens.push(token);
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 4, "each login gets its own token");
    // Registration opened one session, each login another.
    assert_eq!(device_count(&server).await, 5);
}

#[tokio::test]
async fn login_works_on_the_r0_path() {
    let server = TestServer::start().await;
    server.register("alice", PASSWORD).await;
    let response = server.post("/_matrix/client/r0/login", None, password_login(user_identifier("alice"))).await;
    let (token, _) = assert_logged_in(&response);
    assert_eq!(whoami(&server, &token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn login_with_a_device_id_reuses_it_and_revokes_its_old_token() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;

    let mut request = password_login(user_identifier("alice"));
    request["device_id"] = json!("MYPHONE");
    request["initial_device_display_name"] = json!("Alice's phone");
    let first = server.post(LOGIN, None, request.clone()).await;
    let (first_token, device) = assert_logged_in(&first);
    assert_eq!(device, "MYPHONE");

    let (status, body) = server.get("/_matrix/client/v3/devices/MYPHONE", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["display_name"], "Alice's phone");

    let second = server.post(LOGIN, None, request).await;
    let (second_token, device) = assert_logged_in(&second);
    assert_eq!(device, "MYPHONE");
    assert_ne!(first_token, second_token);

    assert_error(&whoami(&server, &first_token).await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    let (status, body) = whoami(&server, &second_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_id"], "MYPHONE");
    // Still one device for the phone: the registration's and MYPHONE.
    let mut expected = vec![alice.device_id.clone(), "MYPHONE".to_owned()];
    expected.sort();
    assert_eq!(device_ids(&server, &second_token).await, expected);
    assert_eq!(server.count("SELECT count(*) FROM access_tokens WHERE device_id = 'MYPHONE'").await, 1);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let server = TestServer::start().await;
    server.register("alice", PASSWORD).await;
    let devices = device_count(&server).await;

    let wrong_password = server
        .post(
            LOGIN,
            None,
            json!({"type": "m.login.password", "identifier": user_identifier("alice"), "password": "wrong"}),
        )
        .await;
    assert_error(&wrong_password, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    let unknown_user = server.post(LOGIN, None, password_login(user_identifier("mallory"))).await;
    assert_error(&unknown_user, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    let foreign_user = server.post(LOGIN, None, password_login(user_identifier("@alice:elsewhere.org"))).await;
    assert_error(&foreign_user, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    assert_eq!(wrong_password.1["error"], unknown_user.1["error"], "the message must not reveal which names exist");
    assert_eq!(device_count(&server).await, devices, "a failed login creates no device");
    assert_eq!(server.count("SELECT count(*) FROM access_tokens").await, 1);
}

#[tokio::test]
async fn unsupported_login_type_is_refused() {
    let server = TestServer::start().await;
    server.register("alice", PASSWORD).await;
    let devices = device_count(&server).await;

    let token_login = server.post(LOGIN, None, json!({"type": "m.login.token", "token": "abc"})).await;
    assert_error(&token_login, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    let custom = server.post(LOGIN, None, json!({"type": "org.example.magic", "user": "alice"})).await;
    assert_error(&custom, StatusCode::BAD_REQUEST, "M_UNKNOWN");

    assert_eq!(device_count(&server).await, devices);
}

#[tokio::test]
async fn login_without_a_password_is_bad_json() {
    let server = TestServer::start().await;
    server.register("alice", PASSWORD).await;
    let devices = device_count(&server).await;

    let response =
        server.post(LOGIN, None, json!({"type": "m.login.password", "identifier": user_identifier("alice")})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let response = server
        .post(LOGIN, None, json!({"type": "m.login.password", "identifier": user_identifier("alice"), "password": 42}))
        .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");

    assert_eq!(device_count(&server).await, devices);
}

#[tokio::test]
async fn login_without_naming_a_user_is_refused() {
    let server = TestServer::start().await;
    server.register("alice", PASSWORD).await;
    let devices = device_count(&server).await;
    let response = server.post(LOGIN, None, json!({"type": "m.login.password", "password": PASSWORD})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    assert_eq!(device_count(&server).await, devices);
}

#[tokio::test]
async fn login_with_an_unusable_device_id_is_refused() {
    let server = TestServer::start().await;
    server.register("alice", PASSWORD).await;
    let devices = device_count(&server).await;
    for device_id in [String::new(), "D".repeat(256)] {
        let mut request = password_login(user_identifier("alice"));
        request["device_id"] = json!(device_id);
        assert_error(&server.post(LOGIN, None, request).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    assert_eq!(device_count(&server).await, devices);
}

#[tokio::test]
async fn login_body_is_read_whatever_its_content_type() {
    // Browsers send "simple" requests as text/plain to skip a CORS preflight.
    let server = TestServer::start().await;
    server.register("alice", PASSWORD).await;
    let response = server
        .http
        .post(server.url(LOGIN))
        .header("content-type", "text/plain")
        .body(password_login(user_identifier("alice")).to_string())
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON body");
    assert_logged_in(&(status, body));
}

// ---------------------------------------------------------------------------------------------
// whoami and access tokens

#[tokio::test]
async fn whoami_describes_the_session() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let (status, body) = whoami(&server, &alice.access_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:hearth.test");
    assert_eq!(body["device_id"], alice.device_id.as_str());
    // The spec lets `is_guest` be omitted when false (ruma omits it); it must not be true.
    assert!(matches!(body.get("is_guest"), None | Some(Value::Bool(false))), "{body}");
}

#[tokio::test]
async fn whoami_without_a_token_is_missing_token() {
    let server = TestServer::start().await;
    assert_error(&server.get(WHOAMI, None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn whoami_with_a_garbage_token_is_unknown_token() {
    let server = TestServer::start().await;
    server.register("alice", PASSWORD).await;
    assert_error(&whoami(&server, "syt_garbage").await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_error(
        &server.get(&format!("{WHOAMI}?access_token=nonsense"), None).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
}

#[tokio::test]
async fn token_in_the_query_string_works() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let (status, body) = server.get(&format!("{WHOAMI}?access_token={}", alice.access_token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:hearth.test");
}

#[tokio::test]
async fn basic_authorization_is_refused() {
    let server = TestServer::start().await;
    server.register("alice", PASSWORD).await;
    let response =
        server.http.get(server.url(WHOAMI)).header("authorization", "Basic x").send().await.expect("request");
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(matches!(body["errcode"].as_str(), Some("M_MISSING_TOKEN" | "M_UNKNOWN_TOKEN")), "{body}");
}

// ---------------------------------------------------------------------------------------------
// Logging out

#[tokio::test]
async fn logout_ends_the_session_and_removes_the_device() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let laptop = server.login("alice", PASSWORD).await;
    assert_eq!(device_ids(&server, &alice.access_token).await.len(), 2);

    let (status, body) = server.post("/_matrix/client/v3/logout", laptop.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_error(&whoami(&server, &laptop.access_token).await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_eq!(device_ids(&server, &alice.access_token).await, vec![alice.device_id.clone()]);
    assert_eq!(whoami(&server, &alice.access_token).await.0, StatusCode::OK, "the other session lives on");
    // Logging out twice is not possible: the token is gone.
    assert_error(
        &server.post("/_matrix/client/v3/logout", laptop.token(), json!({})).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
}

#[tokio::test]
async fn logout_without_a_body_works() {
    // Many clients send a bare POST.
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let laptop = server.login("alice", PASSWORD).await;
    let (status, body) = server.request(reqwest::Method::POST, "/_matrix/client/v3/logout", laptop.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(&whoami(&server, &laptop.access_token).await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    let (status, body) =
        server.request(reqwest::Method::POST, "/_matrix/client/v3/logout/all", alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(device_count(&server).await, 0);
}

#[tokio::test]
async fn logout_all_ends_every_session() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let laptop = server.login("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;

    let (status, body) = server.post("/_matrix/client/v3/logout/all", laptop.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    for session in [&alice, &laptop] {
        assert_error(&whoami(&server, &session.access_token).await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    }
    assert_eq!(server.count("SELECT count(*) FROM devices WHERE user_id = '@alice:hearth.test'").await, 0);
    assert_eq!(whoami(&server, &bob.access_token).await.0, StatusCode::OK, "other users are not affected");
    // Alice can still log in again.
    let again = server.login("alice", PASSWORD).await;
    assert_eq!(whoami(&server, &again.access_token).await.0, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Devices

#[tokio::test]
async fn devices_list_every_session_with_its_last_sighting() {
    let server = TestServer::start().await;
    let before =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_millis()
            as i64;
    let alice = server.register("alice", PASSWORD).await;
    let laptop = server.login("alice", PASSWORD).await;
    server.register("bob", PASSWORD).await;

    let (status, body) = server.get("/_matrix/client/v3/devices", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let devices = body["devices"].as_array().expect("devices is an array");
    assert_eq!(devices.len(), 2, "only alice's devices: {body}");
    let mut ids: Vec<&str> = devices.iter().map(|d| d["device_id"].as_str().expect("device_id")).collect();
    ids.sort_unstable();
    let mut expected = vec![alice.device_id.as_str(), laptop.device_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    for device in devices {
        assert_eq!(device["last_seen_ip"], "127.0.0.1", "{device}");
        let seen = device["last_seen_ts"].as_i64().expect("last_seen_ts is a number");
        assert!(seen >= before - 1000 && seen <= before + 600_000, "last_seen_ts {seen} is not recent");
    }
}

#[tokio::test]
async fn a_single_device_can_be_read() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;

    let (status, body) = server.get(&format!("/_matrix/client/v3/devices/{}", alice.device_id), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_id"], alice.device_id.as_str());
    assert_eq!(body["last_seen_ip"], "127.0.0.1");

    assert_error(
        &server.get("/_matrix/client/v3/devices/NOSUCHDEVICE", alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    // Another user's device is not found either.
    assert_error(
        &server.get(&format!("/_matrix/client/v3/devices/{}", bob.device_id), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn a_device_can_be_renamed() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let path = format!("/_matrix/client/v3/devices/{}", alice.device_id);

    let (status, body) = server.put(&path, alice.token(), json!({"display_name": "Kitchen tablet"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = server.get(&path, alice.token()).await;
    assert_eq!(body["display_name"], "Kitchen tablet");

    assert_error(
        &server.put("/_matrix/client/v3/devices/NOSUCHDEVICE", alice.token(), json!({"display_name": "x"})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    // Renaming someone else's device is "not found", and leaves it alone.
    assert_error(
        &server.put(&path, bob.token(), json!({"display_name": "Hijacked"})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let (_, body) = server.get(&path, alice.token()).await;
    assert_eq!(body["display_name"], "Kitchen tablet");
}

#[tokio::test]
async fn deleting_a_device_needs_the_password() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let laptop = server.login("alice", PASSWORD).await;
    let path = format!("/_matrix/client/v3/devices/{}", laptop.device_id);

    // Without auth: the flows to follow, and nothing deleted.
    let (status, body) = server.delete(&path, alice.token(), Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let flows = body["flows"].as_array().expect("flows is an array");
    assert!(
        flows.iter().any(|flow| flow["stages"].as_array().is_some_and(|s| s.contains(&json!("m.login.password")))),
        "{body}"
    );
    let session = body["session"].as_str().expect("a UIA session").to_owned();
    assert_eq!(device_ids(&server, &alice.access_token).await.len(), 2);
    assert_eq!(whoami(&server, &laptop.access_token).await.0, StatusCode::OK);

    // With the password: gone, and its token with it.
    let (status, body) =
        server.delete(&path, alice.token(), Some(json!({"auth": alice.password_auth(&session)}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(device_ids(&server, &alice.access_token).await, vec![alice.device_id.clone()]);
    assert_error(&whoami(&server, &laptop.access_token).await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_error(&server.get(&path, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn deleting_a_device_with_the_wrong_password_is_refused() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let laptop = server.login("alice", PASSWORD).await;
    let path = format!("/_matrix/client/v3/devices/{}", laptop.device_id);

    let (status, body) = server.delete(&path, alice.token(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let session = body["session"].as_str().expect("a UIA session").to_owned();

    let mut wrong = alice.clone();
    wrong.password = "not the password".to_owned();
    let (status, body) =
        server.delete(&path, alice.token(), Some(json!({"auth": wrong.password_auth(&session)}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN", "{body}");
    assert!(body["flows"].is_array(), "the client may try again: {body}");
    assert_eq!(device_ids(&server, &alice.access_token).await.len(), 2);
    assert_eq!(whoami(&server, &laptop.access_token).await.0, StatusCode::OK);

    // The UIA session survives the failed attempt: the right password still works in it.
    let (status, body) =
        server.delete(&path, alice.token(), Some(json!({"auth": alice.password_auth(&session)}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(device_ids(&server, &alice.access_token).await, vec![alice.device_id.clone()]);
}

#[tokio::test]
async fn another_users_password_does_not_delete_devices() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let laptop = server.login("alice", PASSWORD).await;
    let bob = server.register("bob", "bob's own password").await;
    let path = format!("/_matrix/client/v3/devices/{}", laptop.device_id);

    let (_, body) = server.delete(&path, alice.token(), None).await;
    let session = body["session"].as_str().expect("a UIA session").to_owned();
    let (status, body) = server.delete(&path, alice.token(), Some(json!({"auth": bob.password_auth(&session)}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN", "{body}");
    assert_eq!(device_ids(&server, &alice.access_token).await.len(), 2);
}

#[tokio::test]
async fn several_devices_can_be_deleted_at_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let laptop = server.login("alice", PASSWORD).await;
    let phone = server.login("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let body = json!({"devices": [laptop.device_id, phone.device_id, bob.device_id]});

    let (status, challenge) = server.post("/_matrix/client/v3/delete_devices", alice.token(), body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    assert_eq!(device_ids(&server, &alice.access_token).await.len(), 3);

    let session = challenge["session"].as_str().expect("a UIA session");
    let mut authed = body;
    authed["auth"] = alice.password_auth(session);
    let (status, response) = server.post("/_matrix/client/v3/delete_devices", alice.token(), authed).await;
    assert_eq!(status, StatusCode::OK, "{response}");

    assert_eq!(device_ids(&server, &alice.access_token).await, vec![alice.device_id.clone()]);
    for gone in [&laptop, &phone] {
        assert_error(&whoami(&server, &gone.access_token).await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    }
    // Bob's device id was in the list, but only the caller's own devices can be deleted.
    assert_eq!(whoami(&server, &bob.access_token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_uia_session_cannot_be_replayed() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let laptop = server.login("alice", PASSWORD).await;
    let phone = server.login("alice", PASSWORD).await;

    let laptop_path = format!("/_matrix/client/v3/devices/{}", laptop.device_id);
    let (_, body) = server.delete(&laptop_path, alice.token(), None).await;
    let session = body["session"].as_str().expect("a UIA session").to_owned();
    let auth = json!({"auth": alice.password_auth(&session)});
    assert_eq!(server.delete(&laptop_path, alice.token(), Some(auth)).await.0, StatusCode::OK);

    // The finished session must not authorise a second deletion without the password.
    let phone_path = format!("/_matrix/client/v3/devices/{}", phone.device_id);
    let replay = json!({"auth": {"type": "m.login.dummy", "session": session}});
    let (status, body) = server.delete(&phone_path, alice.token(), Some(replay)).await;
    assert_ne!(status, StatusCode::OK, "{body}");
    assert_eq!(whoami(&server, &phone.access_token).await.0, StatusCode::OK);
}

/// A login body without a login type once panicked inside the request parser (the client got
/// an empty reply and the log a backtrace). It is the client's mistake: a 400 that says so,
/// and the server goes on answering.
#[tokio::test]
async fn a_login_without_a_type_is_a_clear_error() {
    let server = TestServer::start().await;
    server.register("alice", PASSWORD).await;
    for body in [json!({}), json!({"identifier": {"type": "m.id.user", "user": "alice"}, "password": PASSWORD})] {
        let (status, answer) = server.post("/_matrix/client/v3/login", None, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert!(
            matches!(answer["errcode"].as_str(), Some("M_BAD_JSON" | "M_UNKNOWN" | "M_MISSING_PARAM")),
            "{body} -> {answer}"
        );
        assert!(answer["error"].as_str().is_some_and(|message| !message.is_empty()), "{answer}");
    }
    let (status, _) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the server still logs people in");
}
