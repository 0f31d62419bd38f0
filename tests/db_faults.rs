//! Database faults (#15 item 2): a PostgreSQL backend that dies under Hearth — an operator's
//! `pg_terminate_backend`, an out-of-memory kill — costs at most the request that was using
//! it, answered 503 with `Retry-After` (never 500); every connection Hearth holds, the stream
//! writer's and the notification listener's included, comes back by itself; and `/health`
//! tells a load balancer when the database cannot take writes. (The embedded postmaster's
//! death is in tests/embedded.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use std::time::Duration;

/// Kills every backend of `database` except the killer's own.
async fn terminate_backends(database: &str) -> i64 {
    let mut admin = admin_connection().await;
    sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_one(&mut admin)
    .await
    .expect("terminate backends")
}

async fn set_read_only(database: &str, read_only: bool) {
    let mut admin = admin_connection().await;
    let sql = match read_only {
        true => format!("ALTER DATABASE {database} SET default_transaction_read_only = on"),
        false => format!("ALTER DATABASE {database} RESET default_transaction_read_only"),
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.expect("alter database");
}

/// Sends a message as a client does: the same transaction id again after a 503, until it is
/// acknowledged. Returns the event id and how many 503s it took. Any other failure fails.
async fn send_until_acknowledged(server: &TestServer, user: &TestUser, room: &str, txn: &str) -> (String, u32) {
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", encode(room));
    let mut unavailable = 0;
    loop {
        let response = server
            .http
            .put(server.url(&path))
            .bearer_auth(&user.access_token)
            .json(&text(txn))
            .send()
            .await
            .expect("the server answers");
        let status = response.status();
        let retry_after = response.headers().get("retry-after").cloned();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            StatusCode::OK => return (body["event_id"].as_str().expect("event_id").to_owned(), unavailable),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(body["errcode"], "M_UNKNOWN", "{body}");
                assert!(retry_after.is_some(), "a 503 must say when to retry");
                unavailable += 1;
                assert!(unavailable < 20, "{txn} still unavailable after {unavailable} tries");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("sending {txn} answered {other}: {body}"),
        }
    }
}

async fn health(server: &TestServer) -> StatusCode {
    server.http.get(server.url("/health")).send().await.expect("health answers").status()
}

/// Every message of the room, oldest first, as `/messages` serves them.
async fn room_messages(server: &TestServer, user: &TestUser, room: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000", encode(room));
    let (status, body) = server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut ids = message_ids(&body);
    ids.reverse();
    ids
}

#[tokio::test]
async fn killed_backends_are_replaced_and_nothing_acknowledged_is_lost() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "alice-password").await;
    let room = server.create_room(&alice, json!({})).await;
    let mut acknowledged = Vec::new();
    for n in 0..5 {
        acknowledged.push(send_until_acknowledged(&server, &alice, &room, &format!("before-{n}")).await.0);
    }

    // Every connection of the server dies at once: the pool's, the stream writer's and the
    // notification listener's.
    assert!(terminate_backends(&server.database).await >= 2, "Hearth holds connections to kill");
    let mut retries = 0;
    for n in 0..10 {
        let (event_id, unavailable) = send_until_acknowledged(&server, &alice, &room, &format!("after-{n}")).await;
        acknowledged.push(event_id);
        retries += unavailable;
    }
    // One request meets a dead connection; after it the pool checks its other idle ones
    // before use, so the failure is not repeated once per pooled connection.
    eprintln!("{retries} sends answered 503 after the kill");
    assert!(retries <= 2, "{retries} retries after one kill");
    assert_eq!(health(&server).await, StatusCode::OK);

    // A sync waiting for news hears of a new message: the listener came back too.
    let (status, body) = server.get("/_matrix/client/v3/sync?timeout=0", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let since = body["next_batch"].as_str().expect("next_batch").to_owned();
    terminate_backends(&server.database).await;
    let waiting = {
        let (http, url, token) = (
            server.http.clone(),
            server.url(&format!("/_matrix/client/v3/sync?timeout=20000&since={since}")),
            alice.access_token.clone(),
        );
        tokio::spawn(async move {
            loop {
                let response = http.get(&url).bearer_auth(&token).send().await.expect("sync answers");
                if response.status() == StatusCode::OK {
                    return response.json::<Value>().await.expect("sync body");
                }
                assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (live, _) = send_until_acknowledged(&server, &alice, &room, "live").await;
    acknowledged.push(live.clone());
    let woken = tokio::time::timeout(Duration::from_secs(15), waiting).await.expect("the sync was woken").unwrap();
    let timeline = woken["rooms"]["join"][&room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
    assert!(timeline.iter().any(|event| event["event_id"] == live.as_str()), "the waiting sync missed {live}: {woken}");

    assert_eq!(room_messages(&server, &alice, &room).await, acknowledged, "every acknowledged message, once, in order");
}

#[tokio::test]
async fn health_reports_a_database_that_does_not_take_writes() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "alice-password").await;
    let room = server.create_room(&alice, json!({})).await;
    let (first, _) = send_until_acknowledged(&server, &alice, &room, "first").await;
    assert_eq!(health(&server).await, StatusCode::OK);

    // The device was last seen long ago, so the next request would note its sighting: a
    // write, which must not cost the read it comes with.
    let mut database =
        PgConnection::connect_with(&hearth::testing::db::embedded::connect_options(&cluster_dir(), &server.database))
            .await
            .unwrap();
    sqlx::query("UPDATE devices SET last_seen_ts = 0").execute(&mut database).await.unwrap();
    drop(database);

    // Reads go on; writes cannot. Existing connections keep their settings, so they are cut.
    set_read_only(&server.database, true).await;
    terminate_backends(&server.database).await;
    let mut answered = StatusCode::OK;
    for _ in 0..3 {
        answered = health(&server).await;
    }
    assert_eq!(answered, StatusCode::SERVICE_UNAVAILABLE, "a server that cannot write is not healthy");
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/refused", encode(&room));
    let refused = server.request(Method::PUT, &path, alice.token(), Some(text("refused"))).await;
    assert_error(&refused, StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN");
    // Reading still works.
    assert_eq!(room_messages(&server, &alice, &room).await, vec![first.clone()]);

    set_read_only(&server.database, false).await;
    terminate_backends(&server.database).await;
    let (second, _) = send_until_acknowledged(&server, &alice, &room, "refused").await;
    assert_eq!(health(&server).await, StatusCode::OK);
    assert_eq!(room_messages(&server, &alice, &room).await, vec![first, second]);
}

/// A load balancer's probe right after PostgreSQL lost every backend (an operator's terminate,
/// a restart) finds the database serving: the pooled connections that died with them are
/// replaced, not taken for an unreachable database (which would pull a working server out of
/// rotation). Writes go on too.
#[tokio::test]
async fn health_right_after_every_backend_died_reports_serving() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "alice-password").await;
    let room = server.create_room(&alice, json!({})).await;
    send_until_acknowledged(&server, &alice, &room, "before").await;
    assert_eq!(health(&server).await, StatusCode::OK);

    assert!(terminate_backends(&server.database).await > 0, "the server held connections");
    assert_eq!(health(&server).await, StatusCode::OK, "dead pooled connections are not a database that is down");
    let (after, _) = send_until_acknowledged(&server, &alice, &room, "after").await;
    assert!(room_messages(&server, &alice, &room).await.contains(&after));
}
