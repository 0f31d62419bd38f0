//! What one message costs the database: the statements a `PUT /send` runs, counted by
//! PostgreSQL's `pg_stat_statements` (the test cluster preloads it). A count of statements does
//! not depend on the machine's load, so it can guard the send path's cost in CI
//! (docs/PERFORMANCE.md lists them).

use crate::common;
use common::node::*;
use common::*;
use hearth::signing_key::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// The statements one `PUT /send` by `sender` into `room` runs, with everything it sets off in
/// the next 300 ms: (total, listing, the statements).
async fn one_send(server: &TestServer, sender: &TestUser, room: &str) -> (i64, String, Vec<(i64, String)>) {
    // Warm: the first sends fill the caches a running server has filled long since.
    for n in 0..3 {
        server.send_text(sender, room, &format!("warm-{n}"), "warming up").await;
    }
    // What the first sends left running after their answer (push, wake-ups) settles first.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    statements::reset(server).await;
    let event_id = server.send_text(sender, room, "measured", "one message").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(event_id.starts_with('$'));
    let statements = statements::statements(server).await;
    let (total, listing) = statements::listing(&statements);
    println!("one PUT /send: {total} statements\n{listing}");
    assert!(total > 0, "the send reached the database");
    (total, listing, statements)
}

fn ran(statements: &[(i64, String)], fragment: &str) -> bool {
    statements::calls(statements, fragment) > 0
}

/// What the federation sender asks when woken, and what push delivery asks.
const FEDERATION_LOOK: &str = "SELECT destination FROM federation_queue WHERE stream_position >";
const PUSH_LOOK: &str = "JOIN pushers p ON p.user_id = a.user_id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_costs_few_statements() {
    let server = TestServer::start().await;
    statements::enable(&server).await;
    let alice = server.register("alice", "password-alice").await;
    let bob = server.register("bob", "password-bob").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let (total, listing, statements) = one_send(&server, &alice, &room).await;
    assert!(total <= 15, "one message cost {total} statements:\n{listing}");
    // The sender's token is known from the warm-up: the send asks nobody who sent it.
    assert!(!ran(&statements, "FROM access_tokens t"), "the sender's token was looked up again:\n{listing}");
    // Both members are local: the room's tip says so, nothing is offered to the queue, and
    // the federation sender is not woken to look for work.
    assert!(
        !ran(&statements, "INSERT INTO federation_queue"),
        "a room without remote servers asked the federation queue:\n{listing}"
    );
    assert!(!ran(&statements, FEDERATION_LOOK), "the federation sender looked for work nobody gave it:\n{listing}");
    // Bob is notified of the message: push delivery looks whether he has a pusher.
    assert!(ran(&statements, PUSH_LOOK), "push delivery was not woken for bob's notification:\n{listing}");
}

/// A message nobody else hears, in a room no other server is in, gives no outbox work: no
/// worker wakes up to look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_nobody_hears_wakes_no_outbox() {
    let server = TestServer::start().await;
    statements::enable(&server).await;
    let alice = server.register("alice", "password-alice").await;
    let room = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    let (total, listing, statements) = one_send(&server, &alice, &room).await;
    assert!(!ran(&statements, FEDERATION_LOOK), "the federation sender looked for work nobody gave it:\n{listing}");
    assert!(!ran(&statements, PUSH_LOOK), "push delivery looked for work nobody gave it:\n{listing}");
    // The room's tip and its local members are carried from the last send, and checked by
    // the statement that stores the event: neither is read again, and push evaluation, which
    // knows nobody else here could hear, reads nothing.
    assert!(!ran(&statements, TIP_READ), "the room's tip was read again:\n{listing}");
    assert!(!ran(&statements, PUSH_CONTEXT), "push evaluation read the room for a sender alone in it:\n{listing}");
    assert!(total <= 10, "one message cost {total} statements:\n{listing}");
}

/// What reading the room's tip, and push evaluation's read of the room, look like.
const TIP_READ: &str = "FROM (VALUES (1)) AS one (n)";
const PUSH_CONTEXT: &str = "WITH room AS MATERIALIZED";

/// A client's send through the `api` of one process or the other.
async fn send_through(api: &impl Api, user: &TestUser, room: &str, txn: &str) -> (StatusCode, serde_json::Value) {
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", encode(room));
    api.call(Method::PUT, &path, user.token(), Some(text(txn))).await
}

/// A send starts from the room's tip as its process's last commit left it, which the
/// statement storing the event checks. Through two processes taking turns, each finds that
/// the other moved the tip, reads it and builds on it: the room stays one line, each message
/// the child of the one before. A retransmission is recognised on either process, and still
/// answered with its event after the sender left the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_taking_turns_keep_the_room_one_line() {
    let (database, pool) = fresh_database().await;
    // One server in two processes: one signing key (it lives in the data directory).
    let data_dir = tempfile::tempdir().expect("temp dir");
    let key_file = data_dir.path().join("signing.key");
    let key = || SigningKey::load_or_generate(&key_file).expect("signing key");
    let first = start_node(&database, key()).await;
    let second = start_node(&database, key()).await;
    let alice = register_through(&first, "alice", "pw").await;
    let (status, created) =
        first.call(Method::POST, "/_matrix/client/v3/createRoom", alice.token(), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let room = created["room_id"].as_str().expect("room id").to_owned();

    let mut sent = Vec::new();
    for n in 0..6 {
        let txn = format!("m{n}");
        let (status, body) = match n % 2 {
            0 => send_through(&first, &alice, &room, &txn).await,
            _ => send_through(&second, &alice, &room, &txn).await,
        };
        assert_eq!(status, StatusCode::OK, "{body}");
        sent.push(body["event_id"].as_str().expect("event id").to_owned());
    }
    let (_, again) = send_through(&second, &alice, &room, "m0").await;
    assert_eq!(again["event_id"], sent[0], "a retransmission through the other process");
    let (_, again) = send_through(&first, &alice, &room, "m5").await;
    assert_eq!(again["event_id"], sent[5], "a retransmission of the other process's send");

    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.event_id, p.event_id FROM event_edges e
         JOIN event_ids c ON c.event_nid = e.event_nid JOIN event_ids p ON p.event_nid = e.prev_event_nid
         WHERE c.event_id = ANY($1)",
    )
    .bind(&sent)
    .fetch_all(&pool)
    .await
    .unwrap();
    for pair in sent.windows(2) {
        let parents: Vec<&str> = edges.iter().filter(|(child, _)| *child == pair[1]).map(|(_, p)| p.as_str()).collect();
        assert_eq!(parents, [pair[0].as_str()], "each message is the child of the one before: {edges:?}");
    }
    let tips = hearth::testing::db::events::forward_extremities(&pool, &room).await.unwrap();
    let tip_ids: Vec<&str> = tips.iter().map(|tip| tip.event_id.as_str()).collect();
    assert_eq!(tip_ids, [sent[5].as_str()], "the room's one tip is its last message");

    let leave = format!("/_matrix/client/v3/rooms/{}/leave", encode(&room));
    let (status, left) = first.call(Method::POST, &leave, alice.token(), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{left}");
    let (status, again) = send_through(&first, &alice, &room, "m2").await;
    assert_eq!((status, &again["event_id"]), (StatusCode::OK, &json!(sent[2])), "retransmitted after leaving: {again}");
    let (status, refused) = send_through(&first, &alice, &room, "after-leaving").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    first.stop().await;
    second.stop().await;
}

/// A room's tip moves on every send. Kept as a row deleted and inserted again, it left a dead
/// row per send behind, and every send scanned them all until autovacuum came (a minute
/// later): the table grew by a page about every hundred sends. Moved in place (a HOT update),
/// the row stays on its page however many messages are sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rooms_tip_does_not_pile_up_dead_rows() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "password-alice").await;
    let room = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    let mut last = String::new();
    for n in 0..300 {
        last = server.send_text(&alice, &room, &format!("tip-{n}"), "moving the tip").await;
    }
    let pool = &server.state.pool;
    let tips = hearth::testing::db::events::forward_extremities(pool, &room).await.unwrap();
    let tip_ids: Vec<&str> = tips.iter().map(|tip| tip.event_id.as_str()).collect();
    assert_eq!(tip_ids, [last.as_str()], "the room's one tip is its last message");
    let pages: i64 =
        sqlx::query_scalar("SELECT pg_relation_size('forward_extremities') / current_setting('block_size')::bigint")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(pages, 1, "300 sends left the room's tip spread over {pages} pages");
}

/// The lock a send takes with its `BEGIN` (one round trip, the room id as a literal) is the
/// same lock as the one every other writer takes with the room id bound as a parameter, even
/// for a room id with characters a literal must escape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_taken_with_begin_is_the_rooms_lock() {
    let (_database, pool) = common::fresh_database().await;
    for room_id in ["!plain:hearth.test", r"!it's\a\'room:hearth.test"] {
        let try_lock = |pool: sqlx::PgPool| async move {
            let mut other = pool.begin().await.unwrap();
            let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(room_id)
                .fetch_one(&mut *other)
                .await
                .unwrap();
            other.rollback().await.unwrap();
            taken
        };
        let held = hearth::testing::db::rooms::begin_locked(&pool, room_id).await.unwrap();
        assert!(!try_lock(pool.clone()).await, "{room_id}: another transaction took the lock a send holds");
        held.rollback().await.unwrap();
        assert!(try_lock(pool.clone()).await, "{room_id}: the lock outlived its transaction");
    }
}
