//! `unsigned.transaction_id` (spec: "Transaction identifiers"): an event carries the client's
//! transaction id when served to the device that sent it — clients match it to their local
//! echo — and to nobody else: not the sender's other devices, not other users.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "txn-test-pw";

/// The transaction id the event carries in every way `viewer` can read it: `/sync`,
/// `/messages`, `GET /event` and `/context` (each must say the same).
async fn transaction_id_seen_by(server: &TestServer, viewer: &TestUser, room: &str, event_id: &str) -> Option<String> {
    let mut seen: Vec<Value> = Vec::new();
    let (status, sync) = server.get("/_matrix/client/v3/sync", viewer.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    let timeline = sync["rooms"]["join"][room]["timeline"]["events"].as_array().expect("timeline").clone();
    seen.extend(timeline.into_iter().filter(|event| event["event_id"] == event_id));
    let (status, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), viewer.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    seen.extend(page["chunk"].as_array().unwrap().iter().filter(|event| event["event_id"] == event_id).cloned());
    let (status, event) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"), viewer.token()).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    seen.push(event);
    let (status, context) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/context/{event_id}?limit=2"), viewer.token()).await;
    assert_eq!(status, StatusCode::OK, "{context}");
    seen.push(context["event"].clone());
    assert_eq!(seen.len(), 4, "every endpoint serves the event: {seen:?}");
    let ids: Vec<Option<String>> =
        seen.iter().map(|event| event["unsigned"]["transaction_id"].as_str().map(str::to_owned)).collect();
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]), "the endpoints agree: {seen:?}");
    ids[0].clone()
}

#[tokio::test]
async fn the_sending_device_alone_gets_its_transaction_id_back() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let alices_laptop = server.login("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let sent = server.send_text(&alice, &room, "local-echo-1", "hello").await;

    assert_eq!(transaction_id_seen_by(&server, &alice, &room, &sent).await.as_deref(), Some("local-echo-1"));
    assert_eq!(transaction_id_seen_by(&server, &alices_laptop, &room, &sent).await, None, "another device of alice");
    assert_eq!(transaction_id_seen_by(&server, &bob, &room, &sent).await, None, "another user");
    // Events sent without a transaction (state through PUT /state) carry none.
    let (status, body) = server
        .put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic"), alice.token(), json!({"topic": "t"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let topic = body["event_id"].as_str().unwrap();
    assert_eq!(transaction_id_seen_by(&server, &alice, &room, topic).await, None);
}

/// Finding the transaction id of an event served to its device does not depend on how much the
/// device sent before: the lookup goes by the served events' ids. (It used to walk every
/// transaction the device ever sent, for each sync that served it one of its own events.)
/// Counted in blocks read by the statement (`pg_stat_statements`), which do not depend on the
/// machine's load.
#[tokio::test]
async fn a_devices_long_history_of_sends_costs_its_syncs_nothing() {
    let server = TestServer::start().await;
    statements::enable(&server).await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    // 20,000 earlier sends of this device, written directly (sending them would take minutes),
    // and not analysed since, like a table that has just grown.
    sqlx::query(
        "INSERT INTO event_transactions (user_id, device_id, room_id, event_type, txn_id, event_id)
         SELECT $1, $2, $3, 'm.room.message', 'old-' || n, '$old-' || n FROM generate_series(1, 20000) AS n",
    )
    .bind(&alice.user_id)
    .bind(&alice.device_id)
    .bind(&room)
    .execute(&server.state.pool)
    .await
    .unwrap();
    let sent = server.send_text(&alice, &room, "after-many", "hello").await;
    statements::reset(&server).await;
    assert_eq!(transaction_id_seen_by(&server, &alice, &room, &sent).await.as_deref(), Some("after-many"));
    let (blocks, calls) = blocks_and_calls(&server, "%FROM event_transactions WHERE event_id = ANY%").await;
    assert!(calls > 0, "the lookup ran");
    // A probe reads a handful of index and heap blocks (about 10 a lookup); walking the
    // device's 20,000 earlier sends read about 4,600 a lookup, with the table's statistics as
    // fresh as they are after a burst of sends (not analysed since).
    assert!(blocks <= 25 * calls, "{calls} lookups read {blocks} blocks");
    // An initial sync finds the transaction ids with each room's newest events, in the
    // statement that reads them: a probe per event too (a dozen events here, a few index probes
    // each), where walking the device's sends read thousands of blocks.
    let (blocks, calls) = blocks_and_calls(&server, "%FROM event_transactions WHERE event_id = i.event_id%").await;
    assert!(calls > 0, "the initial sync read its rooms' pages with their transaction ids");
    assert!(blocks <= 400 * calls, "{calls} page reads read {blocks} blocks");
}

/// The blocks read and the calls made since the last reset by the statements whose text
/// (whitespace collapsed) is `LIKE pattern`.
async fn blocks_and_calls(server: &TestServer, pattern: &str) -> (i64, i64) {
    sqlx::query_as(
        r"SELECT COALESCE(sum(shared_blks_hit + shared_blks_read), 0)::bigint, COALESCE(sum(calls), 0)::bigint
         FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND regexp_replace(query, '\s+', ' ', 'g') LIKE $1",
    )
    .bind(pattern)
    .fetch_one(&server.state.pool)
    .await
    .unwrap()
}
