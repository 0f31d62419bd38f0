//! The inbound room DAG between two Hearth servers over real federation (TLS on loopback): a
//! gap that `get_missing_events` cannot fill is bridged with the state another server says was
//! before the missing parents (`/state_ids`, `/event`), and what local clients see afterwards
//! is what the other server sees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::federation::{FedServer, FederatedPair};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const PW: &str = "dag-test-pw";

/// Waits (up to 30 s) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

/// The room's state on `server` as `user` sees it: `(type, state_key) -> event_id`, sorted.
async fn state_ids(server: &FedServer, user: &TestUser, room: &str) -> Vec<(String, String, String)> {
    let (status, body) = server.server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut ids: Vec<(String, String, String)> = body
        .as_array()
        .expect("a state array")
        .iter()
        .map(|event| {
            let field = |name: &str| event[name].as_str().unwrap_or_default().to_owned();
            (field("type"), field("state_key"), field("event_id"))
        })
        .collect();
    ids.sort();
    ids
}

async fn topic(server: &FedServer, user: &TestUser, room: &str) -> Value {
    let (status, body) =
        server.server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["topic"].clone()
}

async fn set_topic(server: &FedServer, user: &TestUser, room: &str, topic: &str) -> String {
    let (status, body) = server
        .server
        .put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"), user.token(), json!({ "topic": topic }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

/// Every timeline event id of `room` in `user`'s syncs from `since` until `until` holds of what
/// came (or 30 s pass); the last token.
async fn sync_until(
    server: &FedServer,
    user: &TestUser,
    room: &str,
    since: &str,
    until: impl Fn(&[String]) -> bool,
) -> (Vec<String>, String) {
    let mut seen = Vec::new();
    let mut since = since.to_owned();
    for _ in 0..60 {
        let (status, body) =
            server.server.get(&format!("/_matrix/client/v3/sync?timeout=500&since={since}"), user.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let events = body["rooms"]["join"][room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
        seen.extend(events.iter().filter_map(|event| event["event_id"].as_str().map(str::to_owned)));
        since = body["next_batch"].as_str().expect("next_batch").to_owned();
        if until(&seen) {
            break;
        }
    }
    (seen, since)
}

async fn next_batch(server: &FedServer, user: &TestUser) -> String {
    let (status, body) = server.server.get("/_matrix/client/v3/sync?timeout=0", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

/// A public room of alice on A that bob of B has joined through A.
async fn shared_room(pair: &FederatedPair) -> (TestUser, TestUser, String) {
    let (a, b) = (&pair.a, &pair.b);
    let alice = a.server.register("alice", PW).await;
    let bob = b.server.register("bob", PW).await;
    let room = a.server.create_room(&alice, json!({"preset": "public_chat", "topic": "first"})).await;
    let (status, body) = b
        .server
        .post(&format!("/_matrix/client/v3/join/{room}?server_name={}", a.name()), bob.token(), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "bob joins through A: {body}");
    // B stops in some tests: the join's partial state is completed first (it is not what
    // they test, and a non-lazy sync leaves a partial room out).
    b.full_state().await;
    (alice, bob, room)
}

/// Makes `a` forget what it still had to send to `b` and the backoff it keeps for it, and
/// restarts it (its sender sleeps out a backoff it holds in memory): the events `a` made while
/// `b` was down never reach `b` through `/send`, and what it sends next goes at once.
async fn forget_queue(a: FedServer, b: &str) -> FedServer {
    let pool = &a.state().pool;
    sqlx::query("DELETE FROM federation_queue WHERE destination = $1").bind(b).execute(pool).await.unwrap();
    sqlx::query("UPDATE federation_destinations SET backoff_ms = 0, retry_at_ts = NULL WHERE destination = $1")
        .bind(b)
        .execute(pool)
        .await
        .unwrap();
    a.restart().await
}

#[tokio::test]
async fn a_gap_get_missing_events_cannot_fill_is_bridged_by_the_state_before_it() {
    let mut pair = FederatedPair::start().await;
    let (alice, bob, room) = shared_room(&pair).await;
    let since = next_batch(&pair.b, &bob).await;

    // B is down while alice writes more than one get_missing_events (10) reaches, with a topic
    // change among it; A then forgets to send any of it.
    let b_name = pair.b.name().to_string();
    let stopped = pair.b.stop().await;
    for i in 0..6 {
        pair.a.server.send_text(&alice, &room, &format!("gap-{i}"), &format!("missed {i}")).await;
    }
    let new_topic = set_topic(&pair.a, &alice, &room, "changed while B was down").await;
    for i in 6..14 {
        pair.a.server.send_text(&alice, &room, &format!("gap-{i}"), &format!("missed {i}")).await;
    }
    pair.a = forget_queue(pair.a, &b_name).await;
    pair.b = stopped.start().await;

    // The next message does reach B; its parents are 14 events beyond what B holds.
    let after = pair.a.server.send_text(&alice, &room, "after", "after the gap").await;
    let (seen, _) = sync_until(&pair.b, &bob, &room, &since, |seen| seen.contains(&after)).await;
    assert_eq!(seen.iter().filter(|id| **id == after).count(), 1, "bob sees the message once: {seen:?}");

    // B fetched the state before the gap's last event: the topic set in the gap is B's topic
    // too, held as an outlier (never served as a timeline event).
    assert_eq!(topic(&pair.b, &bob, &room).await, json!("changed while B was down"));
    assert!(!seen.contains(&new_topic), "the gap's topic event is not in bob's timeline");
    let outlier = pair
        .b
        .server
        .count(&format!(
            "SELECT count(*) FROM events e JOIN event_ids i USING (event_nid)
             WHERE i.event_id = '{new_topic}' AND e.outlier AND e.stream_position IS NULL"
        ))
        .await;
    assert_eq!(outlier, 1, "the gap's topic event is stored on B as an outlier");
    assert_eq!(state_ids(&pair.a, &alice, &room).await, state_ids(&pair.b, &bob, &room).await);

    // And B's next message goes on from the bridged DAG: A accepts it.
    let reply = pair.b.server.send_text(&bob, &room, "reply", "bob after the gap").await;
    eventually("A has bob's reply", || async {
        pair.a
            .server
            .count(&format!(
                "SELECT count(*) FROM events e JOIN event_ids i USING (event_nid)
                 WHERE i.event_id = '{reply}' AND NOT e.outlier AND e.stream_position IS NOT NULL"
            ))
            .await
            == 1
    })
    .await;
}

/// The room's forward extremities on `server`: what its next event there builds on.
async fn tips(server: &FedServer, room: &str) -> Vec<String> {
    let tips = hearth::testing::db::events::forward_extremities(&server.state().pool, room).await.unwrap();
    tips.into_iter().map(|tip| tip.event_id).collect()
}

/// How many events with this id `server` holds in a room's timeline.
async fn in_timeline(server: &FedServer, event_id: &str) -> i64 {
    server
        .server
        .count(&format!(
            "SELECT count(*) FROM events e JOIN event_ids i USING (event_nid)
             WHERE i.event_id = '{event_id}' AND NOT e.outlier AND e.rejection IS NULL AND e.stream_position IS NOT NULL"
        ))
        .await
}

/// The parents `server` stored for an event.
async fn prev_events(server: &FedServer, event_id: &str) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT p.event_id FROM event_edges g JOIN event_ids i ON i.event_nid = g.event_nid
         JOIN event_ids p ON p.event_nid = g.prev_event_nid WHERE i.event_id = $1",
    )
    .bind(event_id)
    .fetch_all(&server.state().pool)
    .await
    .unwrap();
    rows.into_iter().map(|(id,)| id).collect()
}

#[tokio::test]
async fn rejoining_a_remote_room_after_leaving_does_not_fork_it() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let (alice, bob, room) = shared_room(&pair).await;
    let before_leave = a.server.send_text(&alice, &room, "before", "before bob leaves").await;
    eventually("B has alice's message", || async { in_timeline(b, &before_leave).await == 1 }).await;
    b.server.leave(&bob, &room).await;
    eventually("A sees bob leave", || async {
        a.server.count(&format!("SELECT count(*) FROM room_memberships WHERE room_id = '{room}' AND user_id = '{}' AND membership = 'leave'", bob.user_id)).await == 1
    })
    .await;
    // The room moves on without B.
    for i in 0..3 {
        a.server.send_text(&alice, &room, &format!("away-{i}"), &format!("while bob is away {i}")).await;
    }

    let (status, body) = b
        .server
        .post(&format!("/_matrix/client/v3/join/{room}?server_name={}", a.name()), bob.token(), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "bob joins again: {body}");
    // B builds on its join alone, not on what it held before leaving.
    let b_tips = tips(b, &room).await;
    assert_eq!(b_tips.len(), 1, "one tip on B after the rejoin: {b_tips:?}");
    let (status, join) =
        b.server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", b_tips[0]), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{join}");
    assert_eq!((join["type"].as_str(), join["sender"].as_str()), (Some("m.room.member"), Some(bob.user_id.as_str())));

    let reply = b.server.send_text(&bob, &room, "back", "bob is back").await;
    eventually("A accepts bob's message", || async { in_timeline(a, &reply).await == 1 }).await;
    assert_eq!(prev_events(a, &reply).await, vec![b_tips[0].clone()], "bob's message cites only his join");
    assert_eq!(state_ids(a, &alice, &room).await, state_ids(b, &bob, &room).await);
}

/// Sets the retry time A keeps for `b` to `retry_at_ts` and restarts A, whose sender then
/// waits until then before sending `b` anything.
async fn hold_delivery(a: FedServer, b: &str, retry_at_ts: i64) -> FedServer {
    // Written while A is down: a running sender records its own backoff after each failed
    // attempt, which would overwrite a hold written beside it.
    let stopped = a.stop().await;
    let pool = stopped.open_database().await;
    sqlx::query(
        "INSERT INTO federation_destinations (destination, backoff_ms, retry_at_ts, failures) VALUES ($1, 3600000, $2, 1)
         ON CONFLICT (destination) DO UPDATE SET backoff_ms = 3600000, retry_at_ts = $2, failures = 1",
    )
    .bind(b)
    .bind(retry_at_ts)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    stopped.start().await
}

async fn power_levels(server: &FedServer, user: &TestUser, room: &str) -> Value {
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/");
    let (status, body) = server.server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn set_power_levels(server: &FedServer, user: &TestUser, room: &str, content: Value) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/");
    let (status, body) = server.server.put(&path, user.token(), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

#[tokio::test]
async fn a_fork_made_while_b_was_down_resolves_to_the_same_state_on_both() {
    let mut pair = FederatedPair::start().await;
    let (alice, bob, room) = shared_room(&pair).await;
    // Bob may change the room's state too.
    let mut levels = power_levels(&pair.a, &alice, &room).await;
    levels["users"][&bob.user_id] = json!(100);
    let promoted = set_power_levels(&pair.a, &alice, &room, levels.clone()).await;
    eventually("B has bob's promotion", || async { in_timeline(&pair.b, &promoted).await == 1 }).await;

    // While B is down, alice changes the topic and the power levels; A keeps them for B.
    let b_name = pair.b.name().to_string();
    let stopped = pair.b.stop().await;
    let a_topic = set_topic(&pair.a, &alice, &room, "A's topic").await;
    let mut a_levels = levels.clone();
    a_levels["users_default"] = json!(1);
    let a_power = set_power_levels(&pair.a, &alice, &room, a_levels).await;
    let far = hearth::testing::time::now_ms() + 3_600_000;
    pair.a = hold_delivery(pair.a, &b_name, far).await;
    pair.b = stopped.start().await;

    // Back up, but not yet told, B changes the same state: the room forks.
    let b_topic = set_topic(&pair.b, &bob, &room, "B's topic").await;
    let mut b_levels = levels.clone();
    b_levels["events_default"] = json!(1);
    let b_power = set_power_levels(&pair.b, &bob, &room, b_levels).await;
    for id in [&b_topic, &b_power] {
        eventually("A has B's change", || async { in_timeline(&pair.a, id).await == 1 }).await;
    }
    assert_eq!(in_timeline(&pair.b, &a_topic).await, 0, "B has not heard of A's changes yet");
    assert!(!prev_events(&pair.a, &b_topic).await.contains(&a_topic), "B's topic does not build on A's");

    // A sends what it kept; both sides now hold both branches and resolve them alike.
    pair.a = hold_delivery(pair.a, &b_name, 0).await;
    for id in [&a_topic, &a_power] {
        eventually("B has A's change", || async { in_timeline(&pair.b, id).await == 1 }).await;
    }
    let on_a = state_ids(&pair.a, &alice, &room).await;
    assert_eq!(on_a, state_ids(&pair.b, &bob, &room).await, "/state differs between A and B");
    assert_eq!(topic(&pair.a, &alice, &room).await, topic(&pair.b, &bob, &room).await);
    let power = power_levels(&pair.b, &bob, &room).await;
    assert_eq!(power, power_levels(&pair.a, &alice, &room).await);
}
