//! Each process keeps the access tokens it resolved lately (`users::token_cache`), so that a
//! request costs no query to learn who sent it. A token must still stop working everywhere the
//! moment it is revoked — by a request to this process or another, or by a program writing the
//! database directly (the account tools run with no server) — and an admin's change to its
//! owner must count at once.

use crate::common;
use common::node::*;
use common::*;
use hearth::signing_key::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const WHOAMI: &str = "/_matrix/client/v3/account/whoami";
/// What resolving a token from the database looks like.
const TOKEN_LOOKUP: &str = "FROM access_tokens t";

/// Asks `api` for `path` with `token` until `done` holds for the answer (at most 5 s), and
/// returns it.
async fn get_until(
    api: &impl Api,
    path: &str,
    token: &str,
    what: &str,
    done: impl Fn(&(StatusCode, Value)) -> bool,
) -> (StatusCode, Value) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = api.call(Method::GET, path, Some(token), None).await;
        if done(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "{what}: still {answer:?} after 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn whoami_until(
    api: &impl Api,
    token: &str,
    what: &str,
    done: impl Fn(&(StatusCode, Value)) -> bool,
) -> (StatusCode, Value) {
    get_until(api, WHOAMI, token, what, done).await
}

/// Alice, registered on `server`, after one request with her token (so the process knows it).
async fn known_alice(server: &TestServer) -> TestUser {
    let alice = server.register("alice", "password-alice").await;
    let (status, body) = server.get(WHOAMI, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    alice
}

/// Whether the statements counted include a lookup of a token in the database.
fn looked_up_a_token(statements: &[(i64, String)]) -> bool {
    common::statements::calls(statements, TOKEN_LOOKUP) > 0
}

fn refused(answer: &(StatusCode, Value)) -> bool {
    answer.0 == StatusCode::UNAUTHORIZED
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_token_costs_no_query_and_a_logout_ends_it_at_once() {
    let server = TestServer::start().await;
    statements::enable(&server).await;
    let alice = known_alice(&server).await;
    let token = alice.token().expect("token");

    statements::reset(&server).await;
    for _ in 0..5 {
        let (status, body) = server.get(WHOAMI, Some(token)).await;
        assert_eq!((status, body["user_id"].as_str()), (StatusCode::OK, Some(alice.user_id.as_str())));
    }
    let statements = statements::statements(&server).await;
    let (_, listing) = statements::listing(&statements);
    assert!(!looked_up_a_token(&statements), "a token this process knew was looked up again:\n{listing}");

    // The logout answers once the token is gone here: the very next request is refused.
    let (status, body) = server.post("/_matrix/client/v3/logout", Some(token), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(&server.get(WHOAMI, Some(token)).await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_through_one_process_stops_working_on_the_other() {
    let (database, _pool) = fresh_database().await;
    let key_dir = tempfile::tempdir().expect("temp dir");
    let key = || SigningKey::load_or_generate(&key_dir.path().join("signing.key")).expect("signing key");
    let first = start_node(&database, key()).await;
    let second = start_node(&database, key()).await;
    let alice = register_through(&first, "alice", "pw").await;
    let token = alice.token().expect("token");
    // Both processes know the token now.
    for api in [&first, &second] {
        let (status, body) = api.call(Method::GET, WHOAMI, Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let (status, body) = first.call(Method::POST, "/_matrix/client/v3/logout", Some(token), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = whoami_until(&second, token, "the other process after the logout", refused).await;
    assert_eq!(answer.1["errcode"], "M_UNKNOWN_TOKEN", "{answer:?}");
}

/// What the account tools (or an operator's SQL) do, with no server to tell: only the
/// database's own notifications can reach the running processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_written_straight_to_the_database_reach_a_running_process() {
    let server = TestServer::start().await;
    let alice = known_alice(&server).await;
    let token = alice.token().expect("token");
    let pool = server.state.pool.clone();
    let user_id = alice.user_id.clone();

    sqlx::query("UPDATE users SET locked = TRUE WHERE user_id = $1").bind(&user_id).execute(&*pool).await.unwrap();
    let answer = whoami_until(&server, token, "after the account was locked", refused).await;
    assert_eq!(answer.1["errcode"], "M_USER_LOCKED", "{answer:?}");
    sqlx::query("UPDATE users SET locked = FALSE WHERE user_id = $1").bind(&user_id).execute(&*pool).await.unwrap();
    whoami_until(&server, token, "after the account was unlocked", |answer| answer.0 == StatusCode::OK).await;

    // An admin flag set behind the server's back counts at once for the admin API.
    let admin_path = format!("/_synapse/admin/v2/users/{user_id}");
    let admin_path = admin_path.as_str();
    assert_error(&server.get(admin_path, Some(token)).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    sqlx::query("UPDATE users SET is_admin = TRUE WHERE user_id = $1").bind(&user_id).execute(&*pool).await.unwrap();
    let answer =
        get_until(&server, admin_path, token, "after the admin flag was set", |answer| answer.0 == StatusCode::OK)
            .await;
    assert_eq!(answer.1["admin"], true, "{answer:?}");

    sqlx::query("DELETE FROM devices WHERE user_id = $1").bind(&user_id).execute(&*pool).await.unwrap();
    let answer = whoami_until(&server, token, "after the device was deleted", refused).await;
    assert_eq!(answer.1["errcode"], "M_UNKNOWN_TOKEN", "{answer:?}");
}

/// Notifications sent while the listener's connection is down are lost: the process must not
/// trust what it kept from before. After the connection is cut and the listener listens again,
/// the next request reads the token again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_connection_empties_the_cache() {
    let server = TestServer::start().await;
    statements::enable(&server).await;
    let alice = known_alice(&server).await;
    let token = alice.token().expect("token");

    let listeners: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&*server.state.pool)
    .await
    .unwrap();
    assert_eq!(listeners.len(), 1, "one listener per process: {listeners:?}");
    sqlx::query("SELECT pg_terminate_backend($1)").bind(listeners[0]).execute(&*server.state.pool).await.unwrap();
    // The process notices the loss and listens again on a new connection.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let relistened: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> $1
             AND query = 'SELECT ''hearth: listening again'''",
        )
        .bind(listeners[0])
        .fetch_one(&*server.state.pool)
        .await
        .unwrap();
        if relistened > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the listener did not reconnect within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    statements::reset(&server).await;
    let (status, body) = server.get(WHOAMI, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let statements = statements::statements(&server).await;
    let (_, listing) = statements::listing(&statements);
    assert!(looked_up_a_token(&statements), "a token kept from before the lost connection was trusted:\n{listing}");
}
