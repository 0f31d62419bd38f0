//! The admin API's rooms (`/_synapse/admin/v1/rooms…`, `DELETE /v2/rooms/{roomId}` and its
//! status), driven over HTTP against Synapse's documented answers; a shut-down room is gone
//! for its members and, blocked, cannot be joined again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

fn room_path(room_id: &str, rest: &str) -> String {
    format!("/_synapse/admin/v1/rooms/{}{rest}", encode(room_id))
}

async fn joined_rooms(server: &TestServer, user: &TestUser) -> Vec<String> {
    let (status, body) = server.get("/_matrix/client/v3/joined_rooms", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value(body["joined_rooms"].clone()).unwrap()
}

/// Polls a deletion task until it is no longer scheduled or active.
async fn finished_deletion(server: &TestServer, root: &TestUser, delete_id: &str) -> Value {
    for _ in 0..200 {
        let (status, body) =
            server.get(&format!("/_synapse/admin/v2/rooms/delete_status/{delete_id}"), root.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] != "scheduled" && body["status"] != "active" {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the deletion {delete_id} did not finish in 10 s");
}

#[tokio::test]
async fn rooms_are_listed_searched_ordered_and_described() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let alpha = server
        .create_room(&alice, json!({"name": "Alpha Lounge", "preset": "public_chat", "room_alias_name": "alpha", "topic": "all things alpha"}))
        .await;
    let beta = server.create_room(&alice, json!({"name": "Beta"})).await;
    let unnamed = server.create_room(&bob, json!({"preset": "public_chat"})).await;
    server.join(&bob, &alpha).await;

    let (status, body) = server.get("/_synapse/admin/v1/rooms", root.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total_rooms"], 3);
    assert_eq!(body["offset"], 0);
    assert!(body.get("next_batch").is_none(), "{body}");
    let ids: Vec<&str> = body["rooms"].as_array().unwrap().iter().map(|r| r["room_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [alpha.as_str(), beta.as_str(), unnamed.as_str()], "by name, unnamed last");
    let first = &body["rooms"][0];
    assert_eq!(first["name"], "Alpha Lounge");
    assert_eq!(first["canonical_alias"], "#alpha:hearth.test");
    assert_eq!(first["joined_members"], 2);
    assert_eq!(first["joined_local_members"], 2);
    assert_eq!(first["creator"], alice.user_id.as_str());
    assert_eq!(first["join_rules"], "public");
    assert_eq!(first["federatable"], true);
    assert!(first["state_events"].as_i64().unwrap() >= 6, "{first}");
    assert_eq!(first["version"], "12");

    let (_, body) = server.get("/_synapse/admin/v1/rooms?order_by=size&limit=1", root.token()).await;
    assert_eq!(body["rooms"][0]["room_id"], alpha.as_str(), "largest first");
    assert_eq!(body["next_batch"], 1);
    let (_, body) = server.get("/_synapse/admin/v1/rooms?order_by=name&dir=b&from=1&limit=1", root.token()).await;
    assert_eq!(body["rooms"][0]["room_id"], beta.as_str());
    assert_eq!(body["prev_batch"], 0);
    let (_, body) = server.get("/_synapse/admin/v1/rooms?search_term=lounge", root.token()).await;
    assert_eq!(body["total_rooms"], 1);
    assert_eq!(body["rooms"][0]["room_id"], alpha.as_str());
    let response = server.get("/_synapse/admin/v1/rooms?order_by=mood", root.token()).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");

    let (_, details) = server.get(&room_path(&alpha, ""), root.token()).await;
    assert_eq!(details["topic"], "all things alpha");
    assert_eq!(details["public"], false, "not published in the directory");
    let (_, members) = server.get(&room_path(&alpha, "/members"), root.token()).await;
    assert_eq!(members["total"], 2);
    let mut listed: Vec<&str> = members["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    listed.sort_unstable();
    assert_eq!(listed, [alice.user_id.as_str(), bob.user_id.as_str()]);
    let (_, state) = server.get(&room_path(&alpha, "/state"), root.token()).await;
    let types: Vec<&str> = state["state"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"m.room.create") && types.contains(&"m.room.topic"), "{types:?}");
    let (_, extremities) = server.get(&room_path(&alpha, "/forward_extremities"), root.token()).await;
    assert_eq!(extremities["count"], 1, "{extremities}");
    assert!(extremities["results"][0]["event_id"].as_str().unwrap().starts_with('$'));

    for path in ["", "/members", "/state", "/forward_extremities"] {
        let response = server.get(&room_path("!nosuchroom:hearth.test", path), root.token()).await;
        assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    }
    let response = server.get(&room_path("not-a-room", ""), root.token()).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let response = server.get(&room_path(&alpha, ""), alice.token()).await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_blocked_room_cannot_be_joined_or_invited_to() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;

    assert_eq!(server.get(&room_path(&room, "/block"), root.token()).await.1, json!({"block": false}));
    let (status, body) = server.put(&room_path(&room, "/block"), root.token(), json!({"block": true})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"block": true})));
    let (_, body) = server.get(&room_path(&room, "/block"), root.token()).await;
    assert_eq!(body, json!({"block": true, "user_id": root.user_id}));

    let join = server.post(&format!("/_matrix/client/v3/join/{}", encode(&room)), bob.token(), json!({})).await;
    assert_error(&join, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let invite = server
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", encode(&room)),
            alice.token(),
            json!({"user_id": bob.user_id}),
        )
        .await;
    assert_error(&invite, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert!(joined_rooms(&server, &bob).await.is_empty());

    server.put(&room_path(&room, "/block"), root.token(), json!({"block": false})).await;
    server.join(&bob, &room).await;
    assert_eq!(joined_rooms(&server, &bob).await, std::slice::from_ref(&room));

    // A room this server does not know can be blocked ahead of time.
    let unknown = "!elsewhere:remote.example";
    let (status, _) = server.put(&room_path(unknown, "/block"), root.token(), json!({"block": true})).await;
    assert_eq!(status, StatusCode::OK);
    let response = server.put(&room_path(&room, "/block"), root.token(), json!({"block": "yes"})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
}

#[tokio::test]
async fn a_deleted_room_is_gone_for_its_members_who_land_in_the_replacement() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat", "room_alias_name": "doomed"})).await;
    server.join(&bob, &room).await;
    server.send_text(&bob, &room, "t1", "something awful").await;
    let (status, _) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", encode(&room)),
            alice.token(),
            json!({"user_id": carol.user_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = server
        .delete(
            &format!("/_synapse/admin/v2/rooms/{}", encode(&room)),
            root.token(),
            Some(json!({"new_room_user_id": "@moderator:hearth.test", "message": "Closed for breaking the rules.", "block": true, "purge": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let delete_id = body["delete_id"].as_str().unwrap().to_owned();
    let done = finished_deletion(&server, &root, &delete_id).await;
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(done["room_id"], room.as_str());
    let outcome = &done["shutdown_room"];
    let mut kicked: Vec<&str> =
        outcome["kicked_users"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
    kicked.sort_unstable();
    assert_eq!(kicked, [alice.user_id.as_str(), bob.user_id.as_str(), carol.user_id.as_str()]);
    assert_eq!(outcome["failed_to_kick_users"], json!([]));
    assert_eq!(outcome["local_aliases"], json!(["#doomed:hearth.test"]));
    let new_room = outcome["new_room_id"].as_str().unwrap().to_owned();

    // The members are out of the old room and in the new one, where the explanation waits.
    for user in [&alice, &bob, &carol] {
        assert_eq!(joined_rooms(&server, user).await, std::slice::from_ref(&new_room), "{}", user.user_id);
    }
    let (_, messages) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b", encode(&new_room)), bob.token()).await;
    let bodies: Vec<&str> =
        messages["chunk"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert!(bodies.contains(&"Closed for breaking the rules."), "{messages}");
    // Muted there.
    let response = server
        .put(
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t2", encode(&new_room)),
            bob.token(),
            json!({"msgtype": "m.text", "body": "hi"}),
        )
        .await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // The alias points at the new room.
    let (_, alias) = server.get("/_matrix/client/v3/directory/room/%23doomed%3Ahearth.test", bob.token()).await;
    assert_eq!(alias["room_id"], new_room.as_str());
    // The old room is forgotten (absent from sync) and blocked.
    let (_, sync) = server.get("/_matrix/client/v3/sync", bob.token()).await;
    assert!(sync["rooms"]["leave"].get(room.as_str()).is_none(), "{sync}");
    assert!(sync["rooms"]["join"].get(room.as_str()).is_none(), "{sync}");
    let join = server.post(&format!("/_matrix/client/v3/join/{}", encode(&room)), bob.token(), json!({})).await;
    assert_error(&join, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (_, members) = server.get(&room_path(&room, "/members"), root.token()).await;
    assert_eq!(members["total"], 0);

    let (_, statuses) =
        server.get(&format!("/_synapse/admin/v2/rooms/{}/delete_status", encode(&room)), root.token()).await;
    assert_eq!(statuses["results"][0]["delete_id"], delete_id.as_str());
    assert_eq!(statuses["results"][0]["status"], "complete");
}

#[tokio::test]
async fn deleting_without_a_replacement_and_the_errors_of_deletion() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let room = server.create_room(&alice, json!({"room_alias_name": "plain"})).await;

    let path = format!("/_synapse/admin/v2/rooms/{}", encode(&room));
    let (status, body) = server.delete(&path, root.token(), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let done = finished_deletion(&server, &root, body["delete_id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(done["shutdown_room"]["new_room_id"], Value::Null);
    assert_eq!(done["shutdown_room"]["kicked_users"], json!([alice.user_id]));
    assert!(joined_rooms(&server, &alice).await.is_empty());
    let alias = server.get("/_matrix/client/v3/directory/room/%23plain%3Ahearth.test", alice.token()).await;
    assert_error(&alias, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // Not blocked: Alice may come back.
    let (_, block) = server.get(&room_path(&room, "/block"), root.token()).await;
    assert_eq!(block, json!({"block": false}));

    let unknown =
        server.delete("/_synapse/admin/v2/rooms/%21nosuch%3Ahearth.test", root.token(), Some(json!({}))).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let remote_owner =
        server.delete(&path, root.token(), Some(json!({"new_room_user_id": "@mod:elsewhere.example"}))).await;
    assert_error(&remote_owner, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let response = server.get("/_synapse/admin/v2/rooms/delete_status/nosuchtask", root.token()).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response = server.get("/_synapse/admin/v2/rooms/%21nosuch%3Ahearth.test/delete_status", root.token()).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

/// Rows of `room` left in the tables that carry a room id, and rows anywhere that point at an
/// event no longer stored.
async fn rows_of_room(server: &TestServer, room: &str) -> Vec<(String, i64)> {
    let mut rows = Vec::new();
    for table in [
        "rooms",
        "events",
        "current_state",
        "room_memberships",
        "state_snapshots",
        "forward_extremities",
        "receipts",
        "event_push_actions",
        "event_relations",
        "redactions",
        "event_transactions",
        "account_data",
        "room_servers",
        "typing",
    ] {
        let count = server.count(&format!("SELECT count(*) FROM {table} WHERE room_id = '{room}'")).await;
        rows.push((table.to_owned(), count));
    }
    for (table, column) in [
        ("event_ids", "event_nid"),
        ("event_edges", "event_nid"),
        ("event_auth_edges", "event_nid"),
        ("state_snapshot_entries", "event_nid"),
    ] {
        let orphans = server
            .count(&format!(
                "SELECT count(*) FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_nid = t.{column})"
            ))
            .await;
        rows.push((format!("{table} without their event"), orphans));
    }
    rows
}

#[tokio::test]
async fn a_purged_room_leaves_no_rows_and_stays_blocked() {
    use futures_util::StreamExt;
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    // Something in every table a room touches: messages (with push actions for Bob), a reply
    // thread relation, a redaction, a receipt, typing, room account data.
    let messages = futures_util::stream::iter(0..1000)
        .map(|n| {
            let (server, alice, room) = (&server, &alice, &room);
            async move { server.send_text(alice, room, &format!("m{n}"), &format!("message {n}")).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<String>>()
        .await;
    let room_path_client = format!("/_matrix/client/v3/rooms/{}", encode(&room));
    server
        .send_message(
            &bob,
            &room,
            "reply",
            json!({"msgtype": "m.text", "body": "re", "m.relates_to": {"rel_type": "m.thread", "event_id": messages[0]}}),
        )
        .await;
    let (status, _) =
        server.put(&format!("{room_path_client}/redact/{}/r1", encode(&messages[1])), alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    server.read_up_to(&bob, &room, &messages[2]).await;
    let (status, _) = server
        .put(
            &format!("{room_path_client}/typing/{}", encode(&bob.user_id)),
            bob.token(),
            json!({"typing": true, "timeout": 30000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/user/{}/rooms/{}/tags/u.work", encode(&bob.user_id), encode(&room)),
            bob.token(),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, before) = server.get("/_matrix/client/v3/sync", bob.token()).await;
    let since = before["next_batch"].as_str().unwrap().to_owned();
    let before_rows = rows_of_room(&server, &room).await;
    assert!(before_rows.iter().filter(|(table, _)| !table.contains("without")).all(|(_, n)| *n > 0), "{before_rows:?}");

    let started = std::time::Instant::now();
    let (status, body) = server
        .delete(&format!("/_synapse/admin/v2/rooms/{}", encode(&room)), root.token(), Some(json!({"block": true})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let done = finished_deletion(&server, &root, body["delete_id"].as_str().unwrap()).await;
    eprintln!("shutting down and purging a room of {} events took {:?}", messages.len() + 10, started.elapsed());
    assert_eq!(done["status"], "complete", "{done}");
    let rows = rows_of_room(&server, &room).await;
    assert!(rows.iter().all(|(_, n)| *n == 0), "rows left after the purge: {rows:?}");

    // For Bob the room is gone: not joined, not in his sync, whether initial or incremental.
    assert!(joined_rooms(&server, &bob).await.is_empty());
    for path in ["/_matrix/client/v3/sync".to_owned(), format!("/_matrix/client/v3/sync?since={since}&timeout=0")] {
        let (status, sync) = server.get(&path, bob.token()).await;
        assert_eq!(status, StatusCode::OK, "{sync}");
        assert!(sync["rooms"]["join"].get(room.as_str()).is_none(), "{sync}");
    }
    let response = server.get(&format!("{room_path_client}/messages?dir=b"), bob.token()).await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let response = server.get(&room_path(&room, ""), root.token()).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // Blocked, the room cannot come back, and the task stays visible.
    let join = server.post(&format!("/_matrix/client/v3/join/{}", encode(&room)), bob.token(), json!({})).await;
    assert_error(&join, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (_, block) = server.get(&room_path(&room, "/block"), root.token()).await;
    assert_eq!(block, json!({"block": true, "user_id": root.user_id}));
    let (status, statuses) =
        server.get(&format!("/_synapse/admin/v2/rooms/{}/delete_status", encode(&room)), root.token()).await;
    assert_eq!((status, &statuses["results"][0]["status"]), (StatusCode::OK, &json!("complete")));
}

#[tokio::test]
async fn make_room_admin_grants_the_top_level_through_a_local_member() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    // A private room of room version 10 (creators hold a number there): Bob is invited.
    let room = server.create_room(&alice, json!({"preset": "private_chat", "room_version": "10"})).await;
    let path = room_path(&room, "/make_room_admin");
    let (status, body) = server.post(&path, root.token(), json!({"user_id": bob.user_id})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let levels_path = format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels", encode(&room));
    let (_, levels) = server.get(&levels_path, alice.token()).await;
    assert_eq!(levels["users"][&bob.user_id], 100, "{levels}");
    server.join(&bob, &room).await;
    // Now an admin of the room, Bob may change its name.
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name", encode(&room)),
            bob.token(),
            json!({"name": "Bob's"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // By default the admin asking is made admin (and invited).
    let (status, _) = server.post(&path, root.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, levels) = server.get(&levels_path, alice.token()).await;
    assert_eq!(levels["users"][&root.user_id], 100, "{levels}");
    server.join(&root, &room).await;

    // Without a local member able to change power levels, nothing can be done.
    let lonely = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.post(&format!("/_matrix/client/v3/rooms/{}/leave", encode(&lonely)), alice.token(), json!({})).await;
    let response = server.post(&room_path(&lonely, "/make_room_admin"), root.token(), json!({})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    let response = server.post(&room_path("!nosuch:hearth.test", "/make_room_admin"), root.token(), json!({})).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response = server.post(&path, root.token(), json!({"user_id": "@someone:elsewhere.example"})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let response = server.post(&path, alice.token(), json!({})).await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}
