//! A forked room DAG is healed by state resolution. Local creation never forks a room (it
//! is serialised), so the test forks one the way federation would: two events built on the
//! same parent, stored side by side.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use hearth::testing::rooms::build::{EventTemplate, Placement, build_and_sign};
use hearth::testing::rooms::send::{AuthState, persist};
use reqwest::StatusCode;
use ruma::{EventId, RoomId, RoomVersionId, UserId};
use serde_json::json;
use sha1::Digest;

const PW: &str = "fork-test-pw";

/// Stores a state event whose only parent is the room's current extremity, without
/// advancing anything else: run twice, it forks the DAG.
async fn branch(server: &TestServer, room: &RoomId, sender: &UserId, version: &RoomVersionId, topic: &str) -> String {
    let pool = &server.state.pool;
    let rules = hearth::testing::rooms::rules_for(version).expect("rules");
    let extremities = hearth::testing::db::events::forward_extremities(pool, room.as_str()).await.expect("extremities");
    let parent = extremities.last().expect("an extremity").clone();
    let template = EventTemplate::state("m.room.topic", "", json!({"topic": topic}));
    // Stored as federation will store it: inside a transaction that holds the room's lock.
    let mut conn = pool.begin().await.expect("transaction");
    let held = server.state.room_locks.lock_in(&mut conn, room).await.expect("room lock");
    let auth = AuthState::load(&mut conn, parent.state_after, &template, sender, &rules).await.expect("auth state");
    let prev = vec![EventId::parse(&parent.event_id).expect("event id")];
    let placement = Placement {
        room_id: Some(room),
        prev_events: &prev,
        auth_events: &auth.auth_event_ids,
        depth: parent.depth as u64 + 1,
    };
    let pdu =
        build_and_sign(&template, sender, &placement, &rules, &server.state.server_name, &server.state.signing_key)
            .expect("build");
    auth.authorize(&pdu, &rules).expect("authorised");
    let mut reservation = server.state.streams.reserve();
    persist(&mut conn, &held, &mut reservation, &pdu, parent.state_after, &[parent.event_nid], None)
        .await
        .expect("persist");
    conn.commit().await.expect("commit");
    drop(held);
    reservation.committed().await.expect("committed");
    pdu.event_id.to_string()
}

#[tokio::test]
async fn the_next_event_after_a_fork_merges_the_branches_by_state_resolution() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let alice_id = UserId::parse(&alice.user_id).expect("user id");
    for version in ["1", "2", "10", "11", "12"] {
        let (status, body) = server
            .post("/_matrix/client/v3/createRoom", alice.token(), json!({"room_version": version, "topic": "start"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let room = RoomId::parse(body["room_id"].as_str().expect("room id")).expect("room id");
        let version_id = RoomVersionId::try_from(version).expect("version");

        // Both branches start from the same parent. The later one wins the tie on the
        // same sender and power level (state resolution orders by timestamp, then id).
        let extremities_before =
            hearth::testing::db::events::forward_extremities(&server.state.pool, room.as_str()).await.expect("x");
        assert_eq!(extremities_before.len(), 1);
        let pool = &server.state.pool;
        let left_id = branch(&server, &room, &alice_id, &version_id, "left").await;
        // Make the second branch build on the same parent as the first: put it back.
        sqlx::query("DELETE FROM forward_extremities WHERE room_id = $1")
            .bind(room.as_str())
            .execute(pool)
            .await
            .expect("reset");
        sqlx::query("INSERT INTO forward_extremities (room_id, event_nid) VALUES ($1, $2)")
            .bind(room.as_str())
            .bind(extremities_before[0].event_nid)
            .execute(pool)
            .await
            .expect("reset");
        let left: i64 = sqlx::query_scalar(
            "SELECT e.event_nid FROM events e WHERE e.room_id = $1 ORDER BY e.stream_position DESC LIMIT 1",
        )
        .bind(room.as_str())
        .fetch_one(pool)
        .await
        .expect("left");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let right_id = branch(&server, &room, &alice_id, &version_id, "right").await;
        sqlx::query("INSERT INTO forward_extremities (room_id, event_nid) VALUES ($1, $2)")
            .bind(room.as_str())
            .bind(left)
            .execute(pool)
            .await
            .expect("fork");
        let forked = hearth::testing::db::events::forward_extremities(pool, room.as_str()).await.expect("x");
        assert_eq!(forked.len(), 2, "v{version}: the DAG has two tips");

        // A new message references both tips, and the resolved state is what users read.
        let (status, sent) = server
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/merge{version}"),
                alice.token(),
                json!({"msgtype": "m.text", "body": "merged"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "v{version}: {sent}");
        let merged: String = sqlx::query_scalar(
            "SELECT e.json FROM events e JOIN event_ids i ON i.event_nid = e.event_nid WHERE i.event_id = $1",
        )
        .bind(sent["event_id"].as_str().expect("event id"))
        .fetch_one(pool)
        .await
        .expect("merged event");
        let merged: serde_json::Value = serde_json::from_str(&merged).expect("json");
        assert_eq!(merged["prev_events"].as_array().map(Vec::len), Some(2), "v{version}: {merged}");
        let extremities = hearth::testing::db::events::forward_extremities(pool, room.as_str()).await.expect("x");
        assert_eq!(extremities.len(), 1, "v{version}: one tip again");

        let (status, topic) =
            server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"), alice.token()).await;
        assert_eq!(status, StatusCode::OK, "{topic}");
        // Room version 1's resolution breaks a tie of equal depth by the lowest SHA-1 of the
        // event id; later versions by timestamp, so the later branch wins.
        let expected = if version == "1" {
            let sha1 = |id: &str| hex::encode(sha1::Sha1::digest(id.as_bytes()));
            if sha1(&left_id) < sha1(&right_id) { "left" } else { "right" }
        } else {
            "right"
        };
        assert_eq!(topic["topic"], expected, "v{version}: left {left_id}, right {right_id}");
    }
}
