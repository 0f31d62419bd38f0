//! What one message costs the database: the statements a `PUT /send` runs, counted by
//! PostgreSQL's `pg_stat_statements` (the test cluster preloads it). A count of statements does
//! not depend on the machine's load, so it can guard the send path's cost in CI
//! (docs/PERFORMANCE.md lists them).

use crate::common;
use common::*;
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
    statements.iter().any(|(_, query)| query.contains(fragment))
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
    assert!(total <= 14, "one message cost {total} statements:\n{listing}");
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
    assert!(total <= 11, "one message cost {total} statements:\n{listing}");
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
