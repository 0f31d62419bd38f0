#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
//! Joining with a partial state, the joining side ("faster joins", issue #18 item 4): a user of
//! B joins A's room of 200 members; A leaves the member events out of its `send_join` answer,
//! so the join answers while B's state is still partial (held so by taking the resync's lock
//! on B's database, which proves the answer came before the state). Meanwhile B's user sends
//! and reads, and a member B does not know yet is heard; then B fetches the full state and its
//! membership equals A's. A restart of B mid-resync resumes and completes it. A `/sync` that
//! does not lazy-load members leaves the partial room out (its member list is incomplete) and
//! shows it whole once the state is; a lazy-loading one shows it throughout.

use crate::common;

use common::TestServer;
use common::federation::{FedServer, FederatedPair, TestCa};
use futures_util::StreamExt;
use hearth::testing::federation::partial_state::RESYNC_LOCK_CLASS;
use hearth::testing::rooms::build::EventTemplate;
use hearth::testing::users::Session;
use reqwest::StatusCode;
use ruma::{OwnedUserId, RoomId};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PW: &str = "partial-state-pw";

/// `count` members of `room` on `server`, made and joined without the client API (each
/// registration would cost a password hash), several at once (their joins share commits).
async fn add_members(server: &TestServer, room: &str, count: usize) -> Vec<OwnedUserId> {
    let joins = (0..count).map(|n| add_member(server, room, n));
    futures_util::stream::iter(joins).buffered(16).collect().await
}

async fn add_member(server: &TestServer, room: &str, n: usize) -> OwnedUserId {
    let room_id = RoomId::parse(room).unwrap();
    {
        let user_id = OwnedUserId::try_from(format!("@member{n}:{}", server.state.server_name)).unwrap();
        let account = hearth::testing::db::users::NewAccount {
            user_id: user_id.as_str(),
            password_hash: None,
            is_admin: false,
            is_guest: false,
            profile: Default::default(),
            now_ms: 0,
        };
        assert!(hearth::testing::db::users::insert(&server.state.pool, account).await.unwrap());
        hearth::testing::rooms::membership::join(server.state.rooms(), &room_id, &session(&user_id), None)
            .await
            .unwrap();
        user_id
    }
}

fn session(user_id: &OwnedUserId) -> Session {
    Session {
        user_id: user_id.clone(),
        device_id: "PARTIAL".into(),
        is_admin: false,
        is_guest: false,
        shadow_banned: false,
        message_limit: None,
    }
}

/// A message of a member made by [`add_members`], sent on their own server.
async fn member_says(server: &TestServer, room: &str, member: &OwnedUserId, body: &str) -> String {
    let template = EventTemplate::message("m.room.message", json!({"msgtype": "m.text", "body": body}));
    let room_id = RoomId::parse(room).unwrap();
    let (rooms, sender) = (server.state.rooms(), session(member));
    let sent =
        hearth::testing::rooms::send::send_message(rooms, &server.state.rate_limits, &sender, &room_id, template, None);
    sent.await.unwrap().to_string()
}

/// Takes the resync lock of `room` on `server`'s database, on a connection of its own: while
/// it is held, the room stays partial there.
async fn hold_resync(server: &TestServer, room: &str) -> PgConnection {
    let mut holder = PgConnection::connect_with(&server.state.pool.connect_options()).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
        .bind(RESYNC_LOCK_CLASS)
        .bind(room)
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

/// Waits until `pool`'s server has no partial room left (generous: CI machines are busy).
async fn resynced(pool: &sqlx::PgPool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while partial_rooms(pool).await > 0 {
        assert!(Instant::now() < deadline, "the resync did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn partial_rooms(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM partial_state_rooms").fetch_one(pool).await.unwrap()
}

/// Members joined to `room` as `server` knows them today (no waiting, unlike the client API).
async fn joined_here(pool: &sqlx::PgPool, room: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM room_memberships WHERE room_id = $1 AND membership = 'join'")
        .bind(room)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn joined_members(server: &TestServer, token: Option<&str>, room: &str) -> BTreeSet<String> {
    let (status, body) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["joined"].as_object().unwrap().keys().cloned().collect()
}

/// Waits until `token`'s user can read `event_id` in `room` on `server`.
async fn readable(server: &TestServer, token: Option<&str>, room: &str, event_id: &str) -> Value {
    let path = format!("/_matrix/client/v3/rooms/{room}/event/{}", common::encode(event_id));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server.get(&path, token).await;
        if status == StatusCode::OK {
            return body;
        }
        assert!(Instant::now() < deadline, "{event_id} is not readable on {}: {status} {body}", server.base_url);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bob's `/sync` (`timeout=0`), lazy-loading members or not.
async fn sync(server: &TestServer, token: Option<&str>, since: Option<&str>, lazy: bool) -> Value {
    let mut path = "/_matrix/client/v3/sync?timeout=0".to_owned();
    if let Some(since) = since {
        path.push_str(&format!("&since={}", common::encode(since)));
    }
    if lazy {
        let filter = json!({"room": {"state": {"lazy_load_members": true}}}).to_string();
        path.push_str(&format!("&filter={}", common::encode(&filter)));
    }
    let (status, body) = server.get(&path, token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The members a sync's entry for `room` names in its state and timeline.
fn members_in(body: &Value, room: &str) -> BTreeSet<String> {
    let entry = &body["rooms"]["join"][room];
    let events = ["state", "timeline"]
        .into_iter()
        .flat_map(|part| entry[part]["events"].as_array().cloned().unwrap_or_default());
    events
        .filter(|event| event["type"] == "m.room.member" && event["content"]["membership"] == "join")
        .filter_map(|event| event["state_key"].as_str().map(str::to_owned))
        .collect()
}

async fn join_through(b: &TestServer, token: Option<&str>, room: &str, a: &FedServer) {
    let path = format!("/_matrix/client/v3/join/{}?via={}", common::encode(room), common::encode(a.name().as_str()));
    let (status, body) = b.post(&path, token, json!({})).await;
    assert_eq!(status, StatusCode::OK, "joining through A: {body}");
}

#[tokio::test]
async fn a_partial_join_answers_at_once_then_completes_the_membership() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a.server, &pair.b.server);
    let alice = a.register("alice", PW).await;
    let bob = b.register("bob", PW).await;
    // A named room: the partial state carries no member of A at all (no heroes are needed).
    let room = a.create_room(&alice, json!({"preset": "public_chat", "name": "Town square"})).await;
    let members = add_members(a, &room, 200).await;

    let holder = hold_resync(b, &room).await;
    let before_join = sync(b, bob.token(), None, false).await;
    join_through(b, bob.token(), &room, &pair.a).await;
    // The join answered with the state still partial: B knows bob and hardly anyone else of
    // the room's 202 members.
    assert_eq!(partial_rooms(&b.state.pool).await, 1);
    let known = joined_here(&b.state.pool, &room).await;
    assert!(known < 10, "B knew {known} members at the join's answer");
    // A sync that promises the whole member list leaves the room out for now, initial or
    // incremental; a lazy-loading one shows it (it needs only the senders' members).
    assert!(sync(b, bob.token(), None, false).await["rooms"]["join"][&room].is_null());
    let eager = sync(b, bob.token(), before_join["next_batch"].as_str(), false).await;
    assert!(eager["rooms"]["join"][&room].is_null(), "a partial room in a non-lazy sync: {eager}");
    let lazy = sync(b, bob.token(), None, true).await;
    assert!(members_in(&lazy, &room).contains(&bob.user_id), "the lazy sync shows bob's join: {lazy}");
    // Not served to other servers while partial: they must ask a server with the full state.
    let join_id: String =
        sqlx::query_scalar("SELECT join_event_id FROM partial_state_rooms").fetch_one(&b.state.pool).await.unwrap();
    let refused = hearth::testing::federation::inbound::serve::state_ids(
        &b.state.pool,
        pair.a.name(),
        &RoomId::parse(&room).unwrap(),
        &join_id,
    )
    .await;
    assert_eq!(refused.err().map(|error| error.errcode()), Some("M_NOT_FOUND".to_owned()));

    // Bob talks and reads at once: his message reaches A (named by send_join's
    // servers_in_room: B knows no member of A's server), A's answer reaches him, and so does a
    // member B has not heard of yet (their join comes with the full state).
    let hello = b.send_message(&bob, &room, "p1", json!({"msgtype": "m.text", "body": "hello"})).await;
    assert_eq!(readable(a, alice.token(), &room, &hello).await["content"]["body"], "hello");
    let welcome = a.send_message(&alice, &room, "p2", json!({"msgtype": "m.text", "body": "welcome"})).await;
    assert_eq!(readable(b, bob.token(), &room, &welcome).await["sender"], alice.user_id.as_str());
    let stranger = member_says(a, &room, &members[150], "hi from a stranger").await;
    assert_eq!(readable(b, bob.token(), &room, &stranger).await["sender"], members[150].as_str());
    assert_eq!(partial_rooms(&b.state.pool).await, 1, "the state is still held partial");
    let still_out = sync(b, bob.token(), eager["next_batch"].as_str(), false).await;
    assert!(still_out["rooms"]["join"][&room].is_null(), "a partial room with news in a non-lazy sync: {still_out}");

    // The resync goes ahead: the member list (which waits for it) is A's.
    drop(holder);
    resynced(&b.state.pool).await;
    let on_a = joined_members(a, alice.token(), &room).await;
    assert_eq!(on_a.len(), 202);
    assert_eq!(joined_members(b, bob.token(), &room).await, on_a);
    assert_eq!(joined_here(&b.state.pool, &room).await, 202);
    // The next non-lazy sync shows the room whole, as newly joined: every member, and the
    // messages bob saw meanwhile through other means.
    let whole = sync(b, bob.token(), still_out["next_batch"].as_str(), false).await;
    assert_eq!(members_in(&whole, &room), on_a, "the room's first entry names every member");
    let bodies: Vec<&str> = whole["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["content"]["body"].as_str())
        .collect();
    assert!(bodies.contains(&"hi from a stranger"), "the timeline of the first entry: {bodies:?}");
    // Once shown, the room goes on as any other.
    let after = sync(b, bob.token(), whole["next_batch"].as_str(), false).await;
    assert!(after["rooms"]["join"][&room].is_null(), "nothing new, yet the room again: {after}");
    // Everything bob saw stays, and the room goes on: another member is heard on the full state.
    let later = member_says(a, &room, &members[42], "after the resync").await;
    assert_eq!(readable(b, bob.token(), &room, &later).await["content"]["body"], "after the resync");
    readable(b, bob.token(), &room, &stranger).await;
    let (status, body) =
        a.get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", common::encode(&hello)), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_restart_mid_resync_resumes_and_completes_it() {
    let ca = Arc::new(TestCa::new());
    let (a, b) = tokio::join!(FedServer::start(ca.clone()), FedServer::start(ca.clone()));
    let alice = a.server.register("alice", PW).await;
    let bob = b.server.register("bob", PW).await;
    let room = a.server.create_room(&alice, json!({"preset": "public_chat", "name": "Restarts"})).await;
    add_members(&a.server, &room, 20).await;

    let holder = hold_resync(&b.server, &room).await;
    join_through(&b.server, bob.token(), &room, &a).await;
    assert_eq!(partial_rooms(&b.server.state.pool).await, 1);
    // B stops with the resync not done (its lock held elsewhere); the room is still partial
    // in its database when it starts again.
    let stopped = b.stop().await;
    drop(holder);
    let database = stopped.open_database().await;
    assert_eq!(partial_rooms(&database).await, 1);
    assert!(joined_here(&database, &room).await < 5);
    database.close().await;

    let b = stopped.start().await;
    let bob = b.server.login("bob", PW).await;
    resynced(&b.server.state.pool).await;
    let on_a = joined_members(&a.server, alice.token(), &room).await;
    assert_eq!(on_a.len(), 22);
    assert_eq!(joined_members(&b.server, bob.token(), &room).await, on_a);
}
