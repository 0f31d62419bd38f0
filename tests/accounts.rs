//! Account creation and account security, driven over HTTP as clients drive them:
//! `/register` and its user-interactive authentication, registration tokens, Synapse's
//! shared-secret registration, password changes, deactivation, rate limits, and how secrets
//! are stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha1::Sha1;

const REGISTER: &str = "/_matrix/client/v3/register";
const LOGIN: &str = "/_matrix/client/v3/login";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";
const PASSWORD: &str = "/_matrix/client/v3/account/password";
const DEACTIVATE: &str = "/_matrix/client/v3/account/deactivate";
const DEVICES: &str = "/_matrix/client/v3/devices";
const ADMIN_REGISTER: &str = "/_synapse/admin/v1/register";
const USERS: &str = "SELECT count(*) FROM users";

async fn available(server: &TestServer, username: &str) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v3/register/available?username={}", encode(username)), None).await
}

async fn token_validity(server: &TestServer, token: &str) -> (StatusCode, Value) {
    server
        .get(&format!("/_matrix/client/v1/register/m.login.registration_token/validity?token={}", encode(token)), None)
        .await
}

async fn login_attempt(server: &TestServer, user: &str, password: &str) -> (StatusCode, Value) {
    server
        .post(
            LOGIN,
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}),
        )
        .await
}

/// Starts a UIA-protected request without `auth` and returns the session the 401 opened.
async fn open_session(server: &TestServer, path: &str, token: Option<&str>, body: Value) -> String {
    let (status, body) = server.post(path, token, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    body["session"].as_str().expect("a UIA session id").to_owned()
}

/// A nonce from `GET /_synapse/admin/v1/register`.
async fn nonce(server: &TestServer) -> String {
    let (status, body) = server.get(ADMIN_REGISTER, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["nonce"].as_str().expect("nonce").to_owned()
}

/// The MAC Synapse's `register_new_matrix_user` computes.
fn shared_secret_mac(secret: &str, nonce: &str, username: &str, password: &str, admin: bool) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(nonce.as_bytes());
    mac.update(b"\0");
    mac.update(username.as_bytes());
    mac.update(b"\0");
    mac.update(password.as_bytes());
    mac.update(b"\0");
    mac.update(if admin { b"admin" as &[u8] } else { b"notadmin" });
    hex::encode(mac.finalize().into_bytes())
}

fn shared_secret_body(nonce: &str, username: &str, password: &str, admin: bool) -> Value {
    json!({
        "nonce": nonce,
        "username": username,
        "password": password,
        "admin": admin,
        "mac": shared_secret_mac(SHARED_SECRET, nonce, username, password, admin),
    })
}

fn dummy_registration(username: &str, password: &str) -> Value {
    json!({"username": username, "password": password, "auth": {"type": "m.login.dummy"}})
}

// ---------------------------------------------------------------------------------------
// POST /register
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn register_without_auth_offers_the_dummy_flow_and_creates_nothing() {
    let server = TestServer::start().await;
    let (status, body) = server.post(REGISTER, None, json!({"username": "alice", "password": "secret pw"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["flows"], json!([{"stages": ["m.login.dummy"]}]));
    assert!(body["session"].as_str().is_some_and(|s| !s.is_empty()), "a session id: {body}");
    assert!(body.get("errcode").is_none(), "the first challenge carries no error: {body}");
    assert_eq!(server.count(USERS).await, 0);
    assert_eq!(available(&server, "alice").await, (StatusCode::OK, json!({"available": true})));
}

#[tokio::test]
async fn register_completes_the_dummy_stage_in_its_session() {
    let server = TestServer::start().await;
    let registration = json!({"username": "alice", "password": "secret pw"});
    let session = open_session(&server, REGISTER, None, registration.clone()).await;

    let mut completed = registration;
    completed["auth"] = json!({"type": "m.login.dummy", "session": session});
    let (status, body) = server.post(REGISTER, None, completed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:hearth.test");
    let token = body["access_token"].as_str().expect("access_token");
    let device_id = body["device_id"].as_str().expect("device_id");

    let (status, whoami) = server.get(WHOAMI, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{whoami}");
    assert_eq!(whoami["user_id"], "@alice:hearth.test");
    assert_eq!(whoami["device_id"], device_id);
    // `is_guest` defaults to false; ruma leaves it out in that case.
    assert!(whoami.get("is_guest").is_none_or(|guest| guest == false), "{whoami}");
    assert_eq!(server.count(USERS).await, 1);
    // The new password works.
    server.login("alice", "secret pw").await;
}

#[tokio::test]
async fn register_without_a_username_gets_a_generated_one() {
    let server = TestServer::start().await;
    let (status, body) =
        server.post(REGISTER, None, json!({"password": "secret pw", "auth": {"type": "m.login.dummy"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user_id = body["user_id"].as_str().expect("user_id");
    let localpart = user_id.strip_prefix('@').and_then(|id| id.strip_suffix(":hearth.test")).expect("a local id");
    assert!(!localpart.is_empty() && localpart.bytes().all(|b| b.is_ascii_digit()), "{user_id}");
    let (status, whoami) = server.get(WHOAMI, body["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whoami["user_id"], user_id);
    server.login(user_id, "secret pw").await;
}

#[tokio::test]
async fn register_with_inhibit_login_returns_no_session() {
    let server = TestServer::start().await;
    let mut request = dummy_registration("alice", "secret pw");
    request["inhibit_login"] = json!(true);
    let (status, body) = server.post(REGISTER, None, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:hearth.test");
    assert!(body.get("access_token").is_none(), "no access token: {body}");
    assert!(body.get("device_id").is_none(), "no device: {body}");
    assert_eq!(server.count("SELECT count(*) FROM devices").await, 0);
    assert_eq!(server.count("SELECT count(*) FROM access_tokens").await, 0);
    // The account exists and can log in.
    server.login("alice", "secret pw").await;
}

#[tokio::test]
async fn register_names_the_first_device_as_asked() {
    let server = TestServer::start().await;
    let mut request = dummy_registration("alice", "secret pw");
    request["initial_device_display_name"] = json!("Alice's phone");
    request["device_id"] = json!("PHONEDEVICE");
    let (status, body) = server.post(REGISTER, None, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device_id"], "PHONEDEVICE");
    let token = body["access_token"].as_str().expect("access_token");

    let (status, devices) = server.get(DEVICES, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{devices}");
    let devices = devices["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0]["device_id"], "PHONEDEVICE");
    assert_eq!(devices[0]["display_name"], "Alice's phone");
}

#[tokio::test]
async fn register_answers_on_the_legacy_r0_path() {
    let server = TestServer::start().await;
    let (status, challenge) = server.post("/_matrix/client/r0/register", None, json!({"username": "alice"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    assert_eq!(challenge["flows"], json!([{"stages": ["m.login.dummy"]}]));

    let (status, body) = server.post("/_matrix/client/r0/register", None, dummy_registration("alice", "pw")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:hearth.test");
    let (status, _) = server.get("/_matrix/client/r0/account/whoami", body["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_taken_username_is_refused() {
    let server = TestServer::start().await;
    assert_eq!(available(&server, "alice").await, (StatusCode::OK, json!({"available": true})));
    server.register("alice", "first").await;

    assert_error(&available(&server, "alice").await, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    // Refused before any authentication stage (so clients can say so at once)…
    let first_step = server.post(REGISTER, None, json!({"username": "alice", "password": "second"})).await;
    assert_error(&first_step, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    // …and with a completed stage.
    let completed = server.post(REGISTER, None, dummy_registration("alice", "second")).await;
    assert_error(&completed, StatusCode::BAD_REQUEST, "M_USER_IN_USE");

    assert_eq!(server.count(USERS).await, 1);
    // The first owner keeps the account and its password.
    server.login("alice", "first").await;
    assert_error(&login_attempt(&server, "alice", "second").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Another name is still free.
    assert_eq!(available(&server, "bob").await, (StatusCode::OK, json!({"available": true})));
}

#[tokio::test]
async fn invalid_usernames_are_refused() {
    let server = TestServer::start().await;
    // "@" + localpart + ":hearth.test" is 256 bytes: one over the spec's limit.
    let too_long = "a".repeat(255 - ":hearth.test".len());
    let longest = "a".repeat(254 - ":hearth.test".len());
    // Capitals are lower-cased at /register (tests/registration.rs); like Synapse,
    // /register/available judges the name as given.
    assert_error(&available(&server, "Alice").await, StatusCode::BAD_REQUEST, "M_INVALID_USERNAME");
    for bad in ["zoë", "al ice", "_bridge", "12345", "", "a:b", "alice\n", too_long.as_str()] {
        let response = server.post(REGISTER, None, dummy_registration(bad, "secret pw")).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_USERNAME");
        let response = available(&server, bad).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_USERNAME");
    }
    assert_eq!(server.count(USERS).await, 0);

    // The boundary itself is fine: exactly 255 bytes, and every allowed character.
    let (status, body) = server.post(REGISTER, None, dummy_registration(&longest, "secret pw")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"].as_str().map(str::len), Some(255));
    let (status, body) = server.post(REGISTER, None, dummy_registration("a.b_c=d-e/f+9", "secret pw")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@a.b_c=d-e/f+9:hearth.test");
    assert_eq!(server.count(USERS).await, 2);
}

#[tokio::test]
async fn registration_can_be_disabled() {
    let server = TestServer::start_with(|config| config.registration.enabled = false).await;
    let first_step = server.post(REGISTER, None, json!({"username": "alice", "password": "secret pw"})).await;
    assert_error(&first_step, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let with_auth = server.post(REGISTER, None, dummy_registration("alice", "secret pw")).await;
    assert_error(&with_auth, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Like Synapse, the availability check is closed too: it would only help enumerate names.
    assert_error(&available(&server, "alice").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(server.count(USERS).await, 0);
    assert_eq!(server.count("SELECT count(*) FROM uia_sessions").await, 0);
}

#[tokio::test]
async fn guest_registration_is_refused_unless_allowed() {
    let server = TestServer::start().await;
    let response = server.post(&format!("{REGISTER}?kind=guest"), None, json!({})).await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN");
    assert_eq!(server.count(USERS).await, 0);
}

#[tokio::test]
async fn guests_can_register_when_allowed_but_not_use_member_endpoints() {
    let server = TestServer::start_with(|config| config.registration.allow_guests = true).await;
    let (status, body) = server.post(&format!("{REGISTER}?kind=guest"), None, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user_id = body["user_id"].as_str().expect("user_id");
    let token = body["access_token"].as_str().expect("a guest gets a token");
    assert!(body["device_id"].is_string(), "{body}");

    let (status, whoami) = server.get(WHOAMI, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{whoami}");
    assert_eq!(whoami["user_id"], user_id);
    assert_eq!(whoami["is_guest"], true);
    assert_eq!(server.count("SELECT count(*) FROM users WHERE is_guest").await, 1);

    assert_error(&server.get(DEVICES, Some(token)).await, StatusCode::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN");
    let change = server.post(PASSWORD, Some(token), json!({"new_password": "mine now"})).await;
    assert_error(&change, StatusCode::FORBIDDEN, "M_GUEST_ACCESS_FORBIDDEN");

    // A guest account is not a member account: ordinary registration is still a separate thing.
    let member = server.register("alice", "secret pw").await;
    let (status, whoami) = server.get(WHOAMI, member.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(whoami.get("is_guest").is_none_or(|guest| guest == false), "{whoami}");
}

#[tokio::test]
async fn unacceptable_passwords_are_refused_before_any_account_exists() {
    let server = TestServer::start().await;
    let empty = server.post(REGISTER, None, dummy_registration("alice", "")).await;
    assert_error(&empty, StatusCode::BAD_REQUEST, "M_WEAK_PASSWORD");
    let huge = server.post(REGISTER, None, dummy_registration("alice", &"x".repeat(513))).await;
    assert_eq!(huge.0, StatusCode::BAD_REQUEST, "{}", huge.1);
    assert_eq!(server.count(USERS).await, 0);
}

// ---------------------------------------------------------------------------------------
// Registration tokens
// ---------------------------------------------------------------------------------------

async fn token_server() -> TestServer {
    TestServer::start_with(|config| config.registration.token_required = true).await
}

async fn create_token(server: &TestServer, token: &str, uses: Option<i32>) {
    hearth::testing::users::accounts::create_registration_token(&server.state.pool, Some(token), uses, None)
        .await
        .expect("create a registration token");
}

fn token_registration(username: &str, token: &str, session: Option<&str>) -> Value {
    let mut auth = json!({"type": "m.login.registration_token", "token": token});
    if let Some(session) = session {
        auth["session"] = json!(session);
    }
    json!({"username": username, "password": "secret pw", "auth": auth})
}

#[tokio::test]
async fn token_registration_offers_the_token_stage_only() {
    let server = token_server().await;
    let (status, body) = server.post(REGISTER, None, json!({"username": "alice", "password": "secret pw"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["flows"], json!([{"stages": ["m.login.registration_token"]}]));
    // The dummy stage no longer opens the door.
    let session = body["session"].as_str().expect("session");
    let dummy = json!({
        "username": "alice", "password": "secret pw",
        "auth": {"type": "m.login.dummy", "session": session},
    });
    let (status, body) = server.post(REGISTER, None, dummy).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["errcode"].is_string(), "the refused stage is explained: {body}");
    assert_eq!(server.count(USERS).await, 0);
}

#[tokio::test]
async fn a_wrong_registration_token_is_refused() {
    let server = token_server().await;
    create_token(&server, "right", None).await;
    let session = open_session(&server, REGISTER, None, json!({"username": "alice", "password": "secret pw"})).await;

    let (status, body) = server.post(REGISTER, None, token_registration("alice", "wrong", Some(&session))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN", "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(body["flows"], json!([{"stages": ["m.login.registration_token"]}]));
    assert_eq!(body["session"], session.as_str(), "the same session carries on");
    assert_eq!(server.count(USERS).await, 0);

    // The session is still good for the right token.
    let (status, body) = server.post(REGISTER, None, token_registration("alice", "right", Some(&session))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:hearth.test");
}

#[tokio::test]
async fn a_single_use_token_admits_exactly_one_registration() {
    let server = token_server().await;
    create_token(&server, "once", Some(1)).await;

    let (status, body) = server.post(REGISTER, None, token_registration("alice", "once", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:hearth.test");

    let (status, body) = server.post(REGISTER, None, token_registration("bob", "once", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN", "{body}");
    assert_eq!(server.count(USERS).await, 1);
    assert_eq!(server.count("SELECT completed::bigint FROM registration_tokens WHERE token = 'once'").await, 1);
}

#[tokio::test]
async fn registration_token_validity_is_reported() {
    let server = token_server().await;
    create_token(&server, "once", Some(1)).await;
    create_token(&server, "expired", None).await;
    sqlx::query("UPDATE registration_tokens SET expiry_ts = 1 WHERE token = 'expired'")
        .execute(&server.state.pool)
        .await
        .expect("expire a token");

    assert_eq!(token_validity(&server, "once").await, (StatusCode::OK, json!({"valid": true})));
    assert_eq!(token_validity(&server, "unknown").await, (StatusCode::OK, json!({"valid": false})));
    assert_eq!(token_validity(&server, "expired").await, (StatusCode::OK, json!({"valid": false})));

    let (status, body) = server.post(REGISTER, None, token_registration("alice", "once", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(token_validity(&server, "once").await, (StatusCode::OK, json!({"valid": false})));
    // Checking does not use a token up.
    create_token(&server, "many", Some(2)).await;
    for _ in 0..3 {
        assert_eq!(token_validity(&server, "many").await, (StatusCode::OK, json!({"valid": true})));
    }
}

#[tokio::test]
async fn registration_token_validity_is_forbidden_without_tokens() {
    let server = TestServer::start().await;
    create_token(&server, "exists", None).await;
    assert_error(&token_validity(&server, "exists").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

// ---------------------------------------------------------------------------------------
// User-interactive authentication edge cases
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_uia_session_is_refused() {
    let server = TestServer::start().await;
    let request = json!({
        "username": "alice", "password": "secret pw",
        "auth": {"type": "m.login.dummy", "session": "no-such-session"},
    });
    assert_error(&server.post(REGISTER, None, request).await, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    assert_eq!(server.count(USERS).await, 0);
}

#[tokio::test]
async fn a_registration_session_cannot_authorise_a_password_change() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "old password").await;
    let session = open_session(&server, REGISTER, None, json!({"username": "mallory"})).await;

    let request = json!({"new_password": "new password", "auth": alice.password_auth(&session)});
    assert_error(&server.post(PASSWORD, alice.token(), request).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    server.login("alice", "old password").await;
    assert_error(&login_attempt(&server, "alice", "new password").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_session_of_another_user_is_refused() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "alice password").await;
    let bob = server.register("bob", "bob password").await;
    let alices_session = open_session(&server, PASSWORD, alice.token(), json!({"new_password": "x"})).await;

    let request = json!({"new_password": "taken over", "auth": bob.password_auth(&alices_session)});
    assert_error(&server.post(PASSWORD, bob.token(), request).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    server.login("alice", "alice password").await;
    server.login("bob", "bob password").await;
}

#[tokio::test]
async fn an_auth_type_that_is_not_offered_is_refused() {
    let server = TestServer::start().await;
    let session = open_session(&server, REGISTER, None, json!({"username": "alice"})).await;
    let request = json!({
        "username": "alice", "password": "secret pw",
        "auth": {"type": "m.login.registration_token", "token": "anything", "session": session},
    });
    let (status, body) = server.post(REGISTER, None, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["errcode"].as_str().is_some_and(|code| code.starts_with("M_")), "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(body["flows"], json!([{"stages": ["m.login.dummy"]}]));
    assert!(body.get("completed").is_none_or(|c| c == &json!([])), "nothing completed: {body}");

    let password_stage = json!({
        "username": "alice", "password": "secret pw",
        "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                 "password": "secret pw", "session": session},
    });
    let (status, body) = server.post(REGISTER, None, password_stage).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["errcode"].is_string(), "{body}");
    assert_eq!(server.count(USERS).await, 0);
}

#[tokio::test]
async fn a_completed_session_cannot_be_reused() {
    let server = TestServer::start().await;
    let session = open_session(&server, REGISTER, None, json!({"username": "alice"})).await;
    let auth = json!({"type": "m.login.dummy", "session": session});
    let (status, body) =
        server.post(REGISTER, None, json!({"username": "alice", "password": "pw", "auth": auth.clone()})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A retry gets alice back (tests/registration.rs); another account is refused.
    let replay = server.post(REGISTER, None, json!({"username": "bob", "password": "pw", "auth": auth})).await;
    assert_error(&replay, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(server.count(USERS).await, 1);
    assert_eq!(available(&server, "bob").await, (StatusCode::OK, json!({"available": true})));
}

// ---------------------------------------------------------------------------------------
// Shared-secret registration (/_synapse/admin/v1/register)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn shared_secret_registration_creates_a_logged_in_account() {
    let server = TestServer::start().await;
    let nonce = nonce(&server).await;
    let (status, body) =
        server.post(ADMIN_REGISTER, None, shared_secret_body(&nonce, "alice", "secret pw", false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:hearth.test");
    assert!(body["device_id"].is_string(), "{body}");
    let token = body["access_token"].as_str().expect("access_token");

    let (status, whoami) = server.get(WHOAMI, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{whoami}");
    assert_eq!(whoami["user_id"], "@alice:hearth.test");
    assert_eq!(server.count("SELECT count(*) FROM users WHERE is_admin").await, 0);
    server.login("alice", "secret pw").await;
}

#[tokio::test]
async fn shared_secret_registration_can_create_admins() {
    let server = TestServer::start().await;
    let nonce = nonce(&server).await;
    let (status, body) = server.post(ADMIN_REGISTER, None, shared_secret_body(&nonce, "root", "secret pw", true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.count("SELECT count(*) FROM users WHERE user_id = '@root:hearth.test' AND is_admin").await, 1);
}

#[tokio::test]
async fn shared_secret_registration_lowercases_the_username_like_synapse() {
    let server = TestServer::start().await;
    let nonce = nonce(&server).await;
    // The MAC covers the name as sent; the account gets the lower-case form.
    let (status, body) =
        server.post(ADMIN_REGISTER, None, shared_secret_body(&nonce, "Alice", "secret pw", false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:hearth.test");
}

#[tokio::test]
async fn shared_secret_registration_applies_the_username_rules() {
    let server = TestServer::start().await;
    server.register("alice", "first").await;
    let nonce = nonce(&server).await;
    let taken = server.post(ADMIN_REGISTER, None, shared_secret_body(&nonce, "alice", "second", false)).await;
    assert_error(&taken, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    let nonce = self::nonce(&server).await;
    let invalid = server.post(ADMIN_REGISTER, None, shared_secret_body(&nonce, "zoë", "secret pw", false)).await;
    assert_error(&invalid, StatusCode::BAD_REQUEST, "M_INVALID_USERNAME");
    assert_eq!(server.count(USERS).await, 1);
    server.login("alice", "first").await;
}

#[tokio::test]
async fn shared_secret_registration_refuses_a_wrong_mac() {
    let server = TestServer::start().await;
    let nonce = nonce(&server).await;
    let mut body = shared_secret_body(&nonce, "alice", "secret pw", false);
    body["mac"] = json!(shared_secret_mac("not-the-secret", &nonce, "alice", "secret pw", false));
    assert_error(&server.post(ADMIN_REGISTER, None, body).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // A MAC over different content (admin flag flipped) is just as wrong.
    let nonce2 = self::nonce(&server).await;
    let mut body = shared_secret_body(&nonce2, "alice", "secret pw", false);
    body["admin"] = json!(true);
    assert_error(&server.post(ADMIN_REGISTER, None, body).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    let nonce3 = self::nonce(&server).await;
    let mut body = shared_secret_body(&nonce3, "alice", "secret pw", false);
    body["mac"] = json!("not hex at all");
    assert_error(&server.post(ADMIN_REGISTER, None, body).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(server.count(USERS).await, 0);
}

#[tokio::test]
async fn shared_secret_nonces_are_single_use() {
    let server = TestServer::start().await;
    let nonce = nonce(&server).await;
    let (status, body) =
        server.post(ADMIN_REGISTER, None, shared_secret_body(&nonce, "alice", "secret pw", false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let replay = server.post(ADMIN_REGISTER, None, shared_secret_body(&nonce, "bob", "secret pw", false)).await;
    assert_error(&replay, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    assert!(replay.1["error"].as_str().is_some_and(|e| e.contains("unrecognised nonce")), "{}", replay.1);

    let invented = server.post(ADMIN_REGISTER, None, shared_secret_body("made-up", "carol", "secret pw", false)).await;
    assert_error(&invented, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    assert_eq!(server.count(USERS).await, 1);
}

#[tokio::test]
async fn shared_secret_registration_requires_every_field() {
    let server = TestServer::start().await;
    for field in ["nonce", "username", "password", "mac"] {
        let nonce = nonce(&server).await;
        let mut body = shared_secret_body(&nonce, "alice", "secret pw", false);
        body.as_object_mut().expect("object").remove(field);
        let response = server.post(ADMIN_REGISTER, None, body).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
        assert!(response.1["error"].as_str().is_some_and(|e| e.contains(field)), "names {field}: {}", response.1);
    }
    assert_eq!(server.count(USERS).await, 0);
}

#[tokio::test]
async fn shared_secret_registration_is_off_without_a_secret() {
    let server = TestServer::start_with(|config| config.registration.shared_secret = None).await;
    let (status, body) = server.get(ADMIN_REGISTER, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["errcode"].is_string(), "{body}");

    // A MAC keyed by the secret tests use is not a way in either.
    let request = shared_secret_body("some-nonce", "alice", "secret pw", false);
    let (status, body) = server.post(ADMIN_REGISTER, None, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["errcode"].is_string(), "{body}");
    assert_eq!(server.count(USERS).await, 0);
}

// ---------------------------------------------------------------------------------------
// POST /account/password
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn changing_the_password_asks_for_the_current_one() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "old password").await;
    let (status, body) = server.post(PASSWORD, alice.token(), json!({"new_password": "new password"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["flows"], json!([{"stages": ["m.login.password"]}]));
    assert!(body["session"].is_string(), "{body}");
    // Nothing changed yet.
    server.login("alice", "old password").await;
}

#[tokio::test]
async fn a_wrong_current_password_changes_nothing() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "old password").await;
    let session = open_session(&server, PASSWORD, alice.token(), json!({"new_password": "new password"})).await;
    let mut impostor = alice.clone();
    impostor.password = "guessed".to_owned();

    let request = json!({"new_password": "new password", "auth": impostor.password_auth(&session)});
    let (status, body) = server.post(PASSWORD, alice.token(), request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN", "{body}");
    assert_eq!(body["session"], session.as_str());

    server.login("alice", "old password").await;
    assert_error(&login_attempt(&server, "alice", "new password").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (status, _) = server.get(WHOAMI, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "the session survives a failed attempt");
}

#[tokio::test]
async fn changing_the_password_logs_out_other_devices() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "old password").await;
    let laptop = server.login("alice", "old password").await;
    let tablet = server.login("alice", "old password").await;

    let session = open_session(&server, PASSWORD, alice.token(), json!({"new_password": "new password"})).await;
    let request = json!({"new_password": "new password", "auth": alice.password_auth(&session)});
    let (status, body) = server.post(PASSWORD, alice.token(), request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));

    assert_error(&login_attempt(&server, "alice", "old password").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    server.login("alice", "new password").await;
    for other in [&laptop, &tablet] {
        assert_error(&server.get(WHOAMI, other.token()).await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    }
    let (status, whoami) = server.get(WHOAMI, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "the requesting session stays: {whoami}");
    assert_eq!(whoami["device_id"], alice.device_id.as_str());
}

#[tokio::test]
async fn changing_the_password_can_keep_other_devices() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "old password").await;
    let laptop = server.login("alice", "old password").await;

    // Each request of the session asks the same (a session opened to log others out could not
    // be completed to keep them, nor the reverse: see tests/uia_binding.rs).
    let asked = json!({"new_password": "new password", "logout_devices": false});
    let session = open_session(&server, PASSWORD, alice.token(), asked).await;
    let request =
        json!({"new_password": "new password", "logout_devices": false, "auth": alice.password_auth(&session)});
    let (status, body) = server.post(PASSWORD, alice.token(), request).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, _) = server.get(WHOAMI, laptop.token()).await;
    assert_eq!(status, StatusCode::OK, "the other session survives");
    let (status, _) = server.get(WHOAMI, alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(&login_attempt(&server, "alice", "old password").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    server.login("alice", "new password").await;
}

#[tokio::test]
async fn changing_the_password_needs_an_access_token() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "old password").await;
    let request = json!({
        "new_password": "new password",
        "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                 "password": "old password"},
    });
    assert_error(&server.post(PASSWORD, None, request).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    let bogus = server.post(PASSWORD, Some("not-a-token"), json!({"new_password": "x"})).await;
    assert_error(&bogus, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    server.login("alice", "old password").await;
    let (status, _) = server.get(WHOAMI, alice.token()).await;
    assert_eq!(status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------
// POST /account/deactivate
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn deactivation_asks_for_the_password() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "secret pw").await;
    let (status, body) = server.post(DEACTIVATE, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = body["session"].as_str().expect("session").to_owned();

    let mut impostor = alice.clone();
    impostor.password = "guessed".to_owned();
    let (status, body) =
        server.post(DEACTIVATE, alice.token(), json!({"auth": impostor.password_auth(&session)})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN", "{body}");

    assert_eq!(server.count("SELECT count(*) FROM users WHERE deactivated").await, 0);
    let (status, _) = server.get(WHOAMI, alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    server.login("alice", "secret pw").await;
}

#[tokio::test]
async fn deactivation_closes_the_account_for_good() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "secret pw").await;
    let laptop = server.login("alice", "secret pw").await;

    let session = open_session(&server, DEACTIVATE, alice.token(), json!({})).await;
    let (status, body) = server.post(DEACTIVATE, alice.token(), json!({"auth": alice.password_auth(&session)})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id_server_unbind_result"], "no-support");

    assert_error(&login_attempt(&server, "alice", "secret pw").await, StatusCode::FORBIDDEN, "M_USER_DEACTIVATED");
    for token in [&alice, &laptop] {
        assert_error(&server.get(WHOAMI, token.token()).await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    }
    // The name is never given out again.
    assert_error(&available(&server, "alice").await, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    let again = server.post(REGISTER, None, dummy_registration("alice", "new owner")).await;
    assert_error(&again, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    assert_eq!(server.count(USERS).await, 1);
    assert_eq!(server.count("SELECT count(*) FROM access_tokens").await, 0);
    assert_eq!(server.count("SELECT count(*) FROM users WHERE deactivated AND password_hash IS NULL").await, 1);
}

// ---------------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------------

/// Asserts a 429 `M_LIMIT_EXCEEDED` with a positive integer `retry_after_ms`.
#[track_caller]
fn assert_limited(response: &(StatusCode, Value)) {
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");
    let retry = &response.1["retry_after_ms"];
    assert!(retry.as_u64().is_some_and(|ms| ms > 0), "retry_after_ms is a positive integer: {}", response.1);
}

#[tokio::test]
async fn login_attempts_are_rate_limited() {
    let server = TestServer::start_with(|config| {
        config.rate_limits.enabled = true;
        config.rate_limits.login_burst = 2;
        // Slow enough that no budget comes back during the test, however slow the machine.
        config.rate_limits.login_per_second = 0.001;
    })
    .await;
    server.register("alice", "secret pw").await;
    for _ in 0..2 {
        assert_error(&login_attempt(&server, "alice", "guess").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    assert_limited(&login_attempt(&server, "alice", "guess").await);
    // Even the right password waits: the limit is on attempts, not failures.
    assert_limited(&login_attempt(&server, "alice", "secret pw").await);
    assert_eq!(server.count("SELECT count(*) FROM devices").await, 1, "only the registration's device");
}

#[tokio::test]
async fn login_attempts_are_not_limited_when_limits_are_off() {
    let server = TestServer::start_with(|config| {
        config.rate_limits.enabled = false;
        config.rate_limits.login_burst = 2;
        config.rate_limits.login_per_second = 0.001;
    })
    .await;
    server.register("alice", "secret pw").await;
    for _ in 0..4 {
        assert_error(&login_attempt(&server, "alice", "guess").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    server.login("alice", "secret pw").await;
}

#[tokio::test]
async fn registration_attempts_are_rate_limited() {
    let server = TestServer::start_with(|config| {
        config.rate_limits.enabled = true;
        config.rate_limits.registration_burst = 2;
        config.rate_limits.registration_per_second = 0.001;
    })
    .await;
    for name in ["alice", "bob"] {
        let (status, body) = server.post(REGISTER, None, dummy_registration(name, "secret pw")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_limited(&server.post(REGISTER, None, dummy_registration("carol", "secret pw")).await);
    assert_limited(&available(&server, "carol").await);
    assert_eq!(server.count(USERS).await, 2);
}

#[tokio::test]
async fn registration_attempts_are_not_limited_when_limits_are_off() {
    let server = TestServer::start_with(|config| {
        config.rate_limits.enabled = false;
        config.rate_limits.registration_burst = 2;
        config.rate_limits.registration_per_second = 0.001;
    })
    .await;
    for name in ["alice", "bob", "carol", "dave"] {
        let (status, body) = server.post(REGISTER, None, dummy_registration(name, "secret pw")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(server.count(USERS).await, 4);
}

// ---------------------------------------------------------------------------------------
// Secrets at rest
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn passwords_and_tokens_are_not_stored_in_clear() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "correct horse battery staple").await;

    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE user_id = '@alice:hearth.test'")
        .fetch_one(&server.state.pool)
        .await
        .expect("password hash");
    assert!(hash.starts_with("$argon2id$"), "argon2id: {hash}");
    assert!(!hash.contains("correct horse"), "{hash}");

    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM access_tokens")
        .fetch_all(&server.state.pool)
        .await
        .expect("token hashes");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].len(), 32, "a SHA-256 digest");
    assert_ne!(stored[0], alice.access_token.as_bytes());
    let leaked = format!(
        "SELECT count(*) FROM access_tokens WHERE position(convert_to('{}', 'UTF8') IN token_hash) > 0",
        alice.access_token.replace('\'', "''")
    );
    assert_eq!(server.count(&leaked).await, 0);
    // Two accounts with the same password still get different hashes (salted).
    server.register("bob", "correct horse battery staple").await;
    assert_eq!(server.count("SELECT count(DISTINCT password_hash) FROM users").await, 2);
}

#[tokio::test]
async fn a_final_request_with_only_auth_registers_what_the_first_one_asked_for() {
    // Some clients send the account details once, then only `auth` for each stage.
    let server = TestServer::start().await;
    let session = open_session(
        &server,
        REGISTER,
        None,
        json!({"username": "remy", "password": "first-request-pw", "initial_device_display_name": "Remy's phone"}),
    )
    .await;
    let (status, body) =
        server.post(REGISTER, None, json!({"auth": {"type": "m.login.dummy", "session": session}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@remy:hearth.test");
    let token = body["access_token"].as_str().expect("token");
    let (status, devices) = server.get(DEVICES, Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(devices["devices"][0]["display_name"], "Remy's phone");
    // The password given in the first request is the account's password.
    assert_eq!(login_attempt(&server, "remy", "first-request-pw").await.0, StatusCode::OK);
    // The kept parameters never hold the clear-text password.
    assert_eq!(server.count("SELECT count(*) FROM uia_sessions WHERE params::text LIKE '%first-request-pw%'").await, 0);
}

#[tokio::test]
async fn registration_without_any_password_is_refused() {
    let server = TestServer::start().await;
    let before = server.count(USERS).await;
    let response = server.post(REGISTER, None, json!({"username": "nopass", "auth": {"type": "m.login.dummy"}})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    assert_eq!(server.count(USERS).await, before);
}

#[tokio::test]
async fn uia_challenges_carry_a_params_object() {
    let server = TestServer::start().await;
    let (status, body) = server.post(REGISTER, None, json!({"username": "p", "password": "pw"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["params"].is_object(), "{body}");
}
