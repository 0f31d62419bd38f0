//! `/register` as clients drive it beyond the first attempt (tests/accounts.rs has the rest):
//! usernames are lower-cased as Synapse does, and a registration retried after its
//! authentication completed gets its account back instead of an error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const REGISTER: &str = "/_matrix/client/v3/register";
const USERS: &str = "SELECT count(*) FROM users";

/// Opens a registration session with `body` and returns its id.
async fn open_session(server: &TestServer, body: Value) -> String {
    let (status, body) = server.post(REGISTER, None, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    body["session"].as_str().expect("a UIA session id").to_owned()
}

async fn whoami(server: &TestServer, token: &str) -> Value {
    let (status, body) = server.get("/_matrix/client/v3/account/whoami", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn usernames_with_capitals_are_lower_cased() {
    let server = TestServer::start().await;
    let (status, body) = server
        .post(REGISTER, None, json!({"username": "Alice", "password": "pw-alice", "auth": {"type": "m.login.dummy"}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:hearth.test");
    assert_eq!(whoami(&server, body["access_token"].as_str().unwrap()).await["user_id"], "@alice:hearth.test");
    // Logging in with either spelling reaches the account.
    server.login("Alice", "pw-alice").await;
    server.login("alice", "pw-alice").await;
    // The lower-cased name is taken, whatever the case it is asked for in.
    let again = server
        .post(REGISTER, None, json!({"username": "ALICE", "password": "pw", "auth": {"type": "m.login.dummy"}}))
        .await;
    assert_error(&again, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    // A name given only with the first request of a session is lower-cased too.
    let session = open_session(&server, json!({"username": "BoB", "password": "pw-bob"})).await;
    let (status, body) =
        server.post(REGISTER, None, json!({"auth": {"type": "m.login.dummy", "session": session}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@bob:hearth.test");
    assert_eq!(server.count(USERS).await, 2);
}

#[tokio::test]
async fn a_registration_retried_after_its_authentication_completed_gets_its_account() {
    // A client whose final response was lost retries the same request.
    let server = TestServer::start().await;
    let request = json!({"username": "carol", "password": "pw-carol"});
    let session = open_session(&server, request.clone()).await;
    let mut complete = request.clone();
    complete["auth"] = json!({"type": "m.login.dummy", "session": session});
    let (status, first) = server.post(REGISTER, None, complete.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");

    let (status, retried) = server.post(REGISTER, None, complete).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["user_id"], "@carol:hearth.test");
    let token = retried["access_token"].as_str().expect("the retry is logged in");
    assert_eq!(whoami(&server, token).await["user_id"], "@carol:hearth.test");
    // The first answer's session still works: the retry did not take it away.
    assert_eq!(whoami(&server, first["access_token"].as_str().unwrap()).await["user_id"], "@carol:hearth.test");
    assert_eq!(server.count(USERS).await, 1);

    // Only `auth` in the retry works as well.
    let (status, body) =
        server.post(REGISTER, None, json!({"auth": {"type": "m.login.dummy", "session": session}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@carol:hearth.test");

    // But the session cannot register (or log into) another account.
    let other = json!({"username": "mallory", "password": "pw", "auth": {"type": "m.login.dummy", "session": session}});
    assert_error(&server.post(REGISTER, None, other).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(server.count(USERS).await, 1);
}
