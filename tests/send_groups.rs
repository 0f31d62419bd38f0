//! Sends to different rooms at the same moment share a transaction (a commit group): what a
//! user sees is unchanged — every send answered with its own event or its own refusal, each
//! room one chain with every message once — and what it costs the database is less.

use crate::common;
use common::node::*;
use common::*;
use hearth::signing_key::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ROOMS: usize = 10;
const ROUNDS: usize = 10;

/// `PUT /send` of one text message through `api`.
async fn send_text(api: &impl Api, user: &TestUser, room: &str, txn: &str) -> (StatusCode, Value) {
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", encode(room));
    api.call(Method::PUT, &path, user.token(), Some(text(txn))).await
}

/// One message into each room, all at once (each its own request), through `api`.
async fn one_in_each_room(api: &(impl Api + Sync), user: &TestUser, rooms: &[String], round: usize) -> Vec<String> {
    let sends = rooms.iter().enumerate().map(|(n, room)| {
        let txn = format!("r{round}-{n}");
        async move { send_text(api, user, room, &txn).await }
    });
    let answers = futures_util::future::join_all(sends).await;
    answers
        .into_iter()
        .map(|(status, body)| {
            assert_eq!(status, StatusCode::OK, "{body}");
            body["event_id"].as_str().expect("event id").to_owned()
        })
        .collect()
}

/// The room's message bodies as a member paging back through it sees them, oldest first.
async fn messages_seen(api: &impl Api, user: &TestUser, room: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000", encode(room));
    let (status, page) = api.call(Method::GET, &path, user.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut bodies = message_bodies(&page);
    bodies.reverse();
    bodies
}

/// Each of the room's events names the one before it (in stream order) as its only parent,
/// and the last is the room's one forward extremity.
async fn assert_one_chain(pool: &sqlx::PgPool, room: &str) {
    let events: Vec<(String, Value)> = sqlx::query_as(
        "SELECT i.event_id, e.json::jsonb FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
         WHERE e.room_id = $1 ORDER BY e.stream_position",
    )
    .bind(room)
    .fetch_all(pool)
    .await
    .expect("events");
    for pair in events.windows(2) {
        assert_eq!(pair[1].1["prev_events"], json!([pair[0].0]), "{room}: one chain");
    }
    let tips = hearth::testing::db::events::forward_extremities(pool, room).await.expect("extremities");
    let tips: Vec<&str> = tips.iter().map(|tip| tip.event_id.as_str()).collect();
    assert_eq!(tips, [events.last().expect("events").0.as_str()], "{room}: one forward extremity");
}

/// Rooms of `user` alone (nobody else hears, no other server is in them: a send costs only its
/// own transaction).
async fn rooms_of(server: &TestServer, user: &TestUser) -> Vec<String> {
    let mut rooms = Vec::new();
    for _ in 0..ROOMS {
        rooms.push(server.create_room(user, json!({"preset": "private_chat"})).await);
    }
    rooms
}

/// Ten sends into ten rooms at once, ten times: each room is its own transaction only when a
/// send finds no other ready, so there are far fewer transactions than sends. Counted by
/// `pg_stat_statements` as the statements that open a send's transaction with its rooms'
/// locks (a count, not a time: it does not depend on the machine's load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_to_ten_rooms_at_once_share_their_transactions() {
    let server = TestServer::start().await;
    statements::enable(&server).await;
    let alice = server.register("alice", "password-alice").await;
    let rooms = rooms_of(&server, &alice).await;
    statements::reset(&server).await;
    let mut sent = vec![Vec::new(); ROOMS];
    for round in 0..ROUNDS {
        for (room, event_id) in one_in_each_room(&server, &alice, &rooms, round).await.into_iter().enumerate() {
            sent[room].push(event_id);
        }
    }
    let statements = statements::statements(&server).await;
    let (_, listing) = statements::listing(&statements);
    let transactions: i64 = statements
        .iter()
        .filter(|(_, query)| query.starts_with("SELECT pg_advisory_xact_lock("))
        .map(|(calls, _)| calls)
        .sum();
    println!("{} sends in {transactions} transactions\n{listing}", ROOMS * ROUNDS);
    assert!(transactions > 0, "the sends' transactions were counted:\n{listing}");
    assert!(
        transactions * 10 <= (ROOMS * ROUNDS) as i64 * 7,
        "{} sends at ten at a time took {transactions} transactions:\n{listing}",
        ROOMS * ROUNDS
    );
    for (n, room) in rooms.iter().enumerate() {
        let expected: Vec<String> = (0..ROUNDS).map(|round| format!("r{round}-{n}")).collect();
        assert_eq!(messages_seen(&server, &alice, room).await, expected, "every message once, in order");
        assert_one_chain(&server.state.pool, room).await;
        let unique: std::collections::HashSet<&String> = sent[n].iter().collect();
        assert_eq!(unique.len(), ROUNDS, "each send its own event");
    }
}

/// Among sends to other rooms at the same moment, one the auth rules refuse fails alone with
/// its own error, a retransmission racing its original is still one event, and every other
/// send stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_send_among_sends_to_other_rooms_fails_alone() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-alice").await;
    let mallory = server.register("mallory", "password-mallory").await;
    let rooms = rooms_of(&server, &alice).await;
    for round in 0..ROUNDS {
        let allowed = one_in_each_room(&server, &alice, &rooms, round);
        // Mallory is in none of the rooms.
        let refused = send_text(&server, &mallory, &rooms[round % ROOMS], "intruder");
        // The same transaction twice at once: a client retrying before its first answer.
        let retried = format!("retried-{round}");
        let first = send_text(&server, &alice, &rooms[(round + 1) % ROOMS], &retried);
        let again = send_text(&server, &alice, &rooms[(round + 1) % ROOMS], &retried);
        let (allowed, refused, first, again) = tokio::join!(allowed, refused, first, again);
        assert_eq!(allowed.len(), ROOMS);
        assert_error(&refused, StatusCode::FORBIDDEN, "M_FORBIDDEN");
        assert_eq!((first.0, again.0), (StatusCode::OK, StatusCode::OK), "{} {}", first.1, again.1);
        assert_eq!(first.1["event_id"], again.1["event_id"], "a retransmission gets the first attempt's event");
    }
    for (n, room) in rooms.iter().enumerate() {
        let seen = messages_seen(&server, &alice, room).await;
        assert!(!seen.iter().any(|body| body == "intruder"), "{room}: a refused send left nothing: {seen:?}");
        // The room's own messages in their rounds' order, and the retried one once (each
        // round's retried send raced the round's other message into its room).
        let expected = ROUNDS + ROUNDS / ROOMS;
        assert_eq!(seen.len(), expected, "{room}: {seen:?}");
        for round in 0..ROUNDS {
            let own = format!("r{round}-{n}");
            assert_eq!(seen.iter().filter(|body| **body == own).count(), 1, "{room}: {own} once: {seen:?}");
        }
        if let Some(round) = (0..ROUNDS).find(|round| (round + 1) % ROOMS == n) {
            let retried = format!("retried-{round}");
            assert_eq!(seen.iter().filter(|body| **body == retried).count(), 1, "{room}: {retried} once: {seen:?}");
        }
        assert_one_chain(&server.state.pool, room).await;
    }
}

/// Two processes sending into the same rooms at once, each in groups: each group's rooms are
/// locked in the database for its transaction (in one order, so two groups cannot wait for
/// each other), and a group that finds a room moved by the other process builds on what it
/// finds. Every room stays one chain with every message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sending_into_the_same_rooms_at_once_keep_each_room_one_chain() {
    let (database, pool) = fresh_database().await;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let key_file = data_dir.path().join("signing.key");
    let key = || SigningKey::load_or_generate(&key_file).expect("signing key");
    let first = start_node_with_pool(&database, key(), 20, |_| {}).await;
    let second = start_node_with_pool(&database, key(), 20, |_| {}).await;
    let alice = register_through(&first, "alice", "pw").await;
    let mut rooms = Vec::new();
    for _ in 0..ROOMS {
        let (status, created) =
            first.call(Method::POST, "/_matrix/client/v3/createRoom", alice.token(), Some(json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        rooms.push(created["room_id"].as_str().expect("room id").to_owned());
    }
    // The second process sends into the rooms in the opposite order.
    let reversed: Vec<String> = rooms.iter().rev().cloned().collect();
    for round in 0..ROUNDS {
        let (from_first, from_second) = tokio::join!(
            one_in_each_room(&first, &alice, &rooms, round),
            one_in_each_room(&second, &alice, &reversed, round + ROUNDS),
        );
        assert_eq!(from_first.len() + from_second.len(), 2 * ROOMS);
    }
    for (n, room) in rooms.iter().enumerate() {
        let seen = messages_seen(&first, &alice, room).await;
        let mut expected: Vec<String> = (0..ROUNDS).map(|round| format!("r{round}-{n}")).collect();
        expected.extend((0..ROUNDS).map(|round| format!("r{}-{}", round + ROUNDS, ROOMS - 1 - n)));
        let mut sorted = seen.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected, "{room}: every message once: {seen:?}");
        assert_one_chain(&pool, room).await;
    }
    first.stop().await;
    second.stop().await;
}
