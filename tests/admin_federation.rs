//! The operator's view of federation (issue #18 item 5) in Synapse's admin API shapes, from a
//! real failure: A's destination B goes down while A has something to send it.

use crate::common;

use common::federation::FederatedPair;
use common::{TestServer, TestUser, assert_error, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const PW: &str = "admin-federation-pw";

async fn destination(server: &TestServer, admin: &TestUser, name: &str) -> Value {
    let path = format!("/_synapse/admin/v1/federation/destinations/{}", encode(name));
    let (status, body) = server.get(&path, admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn a_failing_destination_shows_its_failures_and_backoff_until_reset_and_only_to_admins() {
    let pair = FederatedPair::start().await;
    let (alice, _bob, room) = pair.alice_and_bob_in_a_room(PW).await;
    let FederatedPair { a, b, .. } = pair;
    let b_name = b.name().to_string();
    let root = a.server.register_admin("root", PW).await;
    let stopped = b.stop().await;
    a.server.send_text(&alice, &room, "unheard", "B is down").await;

    // The sender retries after 1 s, then 2 s, then 4 s: waiting for the third failure leaves
    // a long quiet moment for the reset below.
    let mut status = Value::Null;
    for _ in 0..300 {
        status = destination(&a.server, &root, &b_name).await;
        if status["failures"].as_i64().unwrap_or(0) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(status["failures"].as_i64().unwrap_or(0) >= 3, "{status}");
    assert!(status["failure_ts"].as_i64().is_some_and(|ts| ts > 0), "{status}");
    assert!(status["retry_interval"].as_i64().is_some_and(|ms| ms >= 4000), "{status}");
    assert!(
        status["retry_last_ts"].as_i64().is_some_and(|ts| ts >= status["failure_ts"].as_i64().unwrap()),
        "{status}"
    );
    assert!(status["queue_depth"].as_i64().is_some_and(|depth| depth >= 1), "the message waits: {status}");
    assert!(status["last_error"].as_str().is_some_and(|error| !error.is_empty()), "{status}");
    let (_, listing) = a.server.get("/_synapse/admin/v1/federation/destinations", root.token()).await;
    let listed: Vec<&Value> =
        listing["destinations"].as_array().unwrap().iter().filter(|d| d["destination"] == b_name).collect();
    assert_eq!(listed.len(), 1, "{listing}");
    assert_eq!(listed[0]["failure_ts"], status["failure_ts"]);

    // The rooms A shares with B, with the newest of A's events B is not still waiting for.
    let rooms_path = format!("/_synapse/admin/v1/federation/destinations/{}/rooms", encode(&b_name));
    let (code, rooms) = a.server.get(&rooms_path, root.token()).await;
    assert_eq!(code, StatusCode::OK, "{rooms}");
    assert_eq!(rooms["total"], 1, "{rooms}");
    assert_eq!(rooms["rooms"][0]["room_id"], room.as_str());
    let delivered = rooms["rooms"][0]["stream_ordering"].as_i64().expect("a stream ordering");
    let unheard = a
        .server
        .count(&format!(
            "SELECT stream_position FROM events WHERE room_id = '{room}' AND json::jsonb -> 'content' ->> 'body' = 'B is down'"
        ))
        .await;
    assert!(delivered < unheard, "the queued message is not counted as sent ({delivered} < {unheard})");

    // Nobody but an admin sees or resets any of it.
    let reset_path = format!("/_synapse/admin/v1/federation/destinations/{}/reset_connection", encode(&b_name));
    let detail_path = format!("/_synapse/admin/v1/federation/destinations/{}", encode(&b_name));
    for path in ["/_synapse/admin/v1/federation/destinations", &detail_path, &rooms_path] {
        assert_error(&a.server.get(path, alice.token()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    assert_error(&a.server.post(&reset_path, alice.token(), json!({})).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(
        destination(&a.server, &root, &b_name).await["failures"],
        status["failures"],
        "a refusal changes nothing"
    );

    // The reset forgets the backoff, and the sender, which was waiting it out, tries again at
    // once: B being still down, a fresh failure is recorded long before the attempt the old
    // backoff had planned.
    let planned = status["retry_last_ts"].as_i64().unwrap() + status["retry_interval"].as_i64().unwrap();
    let (code, body) = a.server.post(&reset_path, root.token(), json!({})).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let mut retried = Value::Null;
    for _ in 0..200 {
        retried = destination(&a.server, &root, &b_name).await;
        if retried["failure_ts"].is_i64() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(retried["failures"], 1, "counting starts again: {retried}");
    assert!(retried["failure_ts"].as_i64().is_some_and(|ts| ts < planned), "tried before {planned}: {retried}");
    assert_eq!(retried["queue_depth"], status["queue_depth"], "the queue itself is kept: {retried}");

    // Once B is back, a reset delivers what waited.
    let b = stopped.start().await;
    a.server.post(&reset_path, root.token(), json!({})).await;
    for _ in 0..300 {
        let now = destination(&a.server, &root, &b_name).await;
        if now["queue_depth"] == 0 && now["last_success_ts"].is_i64() {
            assert_eq!((now["failures"].clone(), now["failure_ts"].clone()), (json!(0), Value::Null), "{now}");
            drop(b);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("B never got the message: {}", destination(&a.server, &root, &b_name).await);
}
