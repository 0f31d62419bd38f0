//! What one message costs the database: the statements a `PUT /send` runs, counted by
//! PostgreSQL's `pg_stat_statements` (the test cluster preloads it). A count of statements does
//! not depend on the machine's load, so it can guard the send path's cost in CI
//! (docs/PERFORMANCE.md lists them).

use crate::common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_costs_few_statements() {
    let server = TestServer::start().await;
    common::statements::enable(&server.state.pool).await;
    let alice = server.register("alice", "password-alice").await;
    let bob = server.register("bob", "password-bob").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    // Warm: the first sends fill the caches a running server has filled long since.
    for n in 0..3 {
        server.send_text(&alice, &room, &format!("warm-{n}"), "warming up").await;
    }
    // What the first sends left running after their answer (push, wake-ups) settles first.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    common::statements::reset(&server.state.pool).await;
    let event_id = server.send_text(&alice, &room, "measured", "one message").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let statements = common::statements::statements(&server.state.pool).await;
    let total: i64 = statements.iter().map(|(calls, _)| calls).sum();
    let listing = common::statements::listing(&statements);
    println!("one PUT /send: {total} statements\n{}", listing.join("\n"));
    assert!(event_id.starts_with('$'));
    assert!(total > 0, "the send reached the database");
    assert!(total <= 17, "one message cost {total} statements:\n{}", listing.join("\n"));
    // Both members are local: the room's tip says so, and nothing is offered to the queue.
    assert!(
        !statements.iter().any(|(_, query)| query.contains("INSERT INTO federation_queue")),
        "a room without remote servers asked the federation queue:\n{}",
        listing.join("\n")
    );
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
        let held = hearth::db::rooms::begin_locked(&pool, room_id).await.unwrap();
        assert!(!try_lock(pool.clone()).await, "{room_id}: another transaction took the lock a send holds");
        held.rollback().await.unwrap();
        assert!(try_lock(pool.clone()).await, "{room_id}: the lock outlived its transaction");
    }
}
