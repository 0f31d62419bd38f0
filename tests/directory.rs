//! Room aliases, the public room directory and the user directory, as clients use them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "directory-test-password";
const ALIASES: &str = "SELECT count(*) FROM room_aliases";
const ROOMS: &str = "SELECT count(*) FROM rooms";
const EVENTS: &str = "SELECT count(*) FROM events";

/// Percent-encodes a path segment (aliases start with `#`, which would end the path).
fn enc(segment: &str) -> String {
    let mut out = String::new();
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:!@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn alias_path(alias: &str) -> String {
    format!("/_matrix/client/v3/directory/room/{}", enc(alias))
}

fn visibility_path(room: &str) -> String {
    format!("/_matrix/client/v3/directory/list/room/{}", enc(room))
}

async fn join(server: &TestServer, user: &TestUser, room_or_alias: &str) -> (StatusCode, Value) {
    server.post(&format!("/_matrix/client/v3/join/{}", enc(room_or_alias)), user.token(), json!({})).await
}

async fn joined(server: &TestServer, user: &TestUser, room: &str) {
    let (status, body) = join(server, user, room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn put_alias(server: &TestServer, user: &TestUser, alias: &str, room: &str) -> (StatusCode, Value) {
    server.put(&alias_path(alias), user.token(), json!({"room_id": room})).await
}

async fn aliased(server: &TestServer, user: &TestUser, alias: &str, room: &str) {
    let (status, body) = put_alias(server, user, alias, room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn set_state(
    server: &TestServer,
    user: &TestUser,
    room: &str,
    kind: &str,
    content: Value,
) -> (StatusCode, Value) {
    server.put(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"), user.token(), content).await
}

async fn state(server: &TestServer, user: &TestUser, room: &str, kind: &str) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"), user.token()).await
}

async fn local_aliases(server: &TestServer, user: &TestUser, room: &str) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v3/rooms/{room}/aliases"), user.token()).await
}

fn room_ids(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .map(|room| room["room_id"].as_str().expect("room_id").to_owned())
        .collect()
}

fn user_ids(found: &Value) -> Vec<String> {
    found["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|user| user["user_id"].as_str().expect("user_id").to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// PUT / GET / DELETE /directory/room/{roomAlias}, GET /rooms/{roomId}/aliases

#[tokio::test]
async fn aliases_are_created_resolved_listed_and_deleted() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let other = server.create_room(&alice, json!({})).await;

    let (status, body) = put_alias(&server, &alice, "#tea:hearth.test", &room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));

    // Anyone may resolve an alias, without logging in.
    let (status, body) = server.get(&alias_path("#tea:hearth.test"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"room_id": room, "servers": ["hearth.test"]}));

    // A taken alias stays with its room.
    assert_error(&put_alias(&server, &alice, "#tea:hearth.test", &other).await, StatusCode::CONFLICT, "M_UNKNOWN");
    assert_error(&put_alias(&server, &alice, "#tea:hearth.test", &room).await, StatusCode::CONFLICT, "M_UNKNOWN");
    assert_eq!(server.count(ALIASES).await, 1);
    assert_eq!(server.get(&alias_path("#tea:hearth.test"), None).await.1["room_id"], room);

    aliased(&server, &alice, "#cups:hearth.test", &room).await;
    let (status, body) = local_aliases(&server, &alice, &room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"aliases": ["#tea:hearth.test", "#cups:hearth.test"]}));

    let (status, body) = server.delete(&alias_path("#tea:hearth.test"), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));
    assert_error(&server.get(&alias_path("#tea:hearth.test"), None).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(
        &server.delete(&alias_path("#tea:hearth.test"), alice.token(), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_eq!(local_aliases(&server, &alice, &room).await.1, json!({"aliases": ["#cups:hearth.test"]}));

    // A deleted alias is free for another room.
    aliased(&server, &alice, "#tea:hearth.test", &other).await;
    assert_eq!(server.get(&alias_path("#tea:hearth.test"), None).await.1["room_id"], other);
}

#[tokio::test]
async fn invalid_foreign_or_unauthorised_aliases_are_refused_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let eve = server.register("eve", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;

    for alias in ["#tea:elsewhere.example", "#tea time:hearth.test", "tea:hearth.test", "#:hearth.test", "#tea"] {
        let response = put_alias(&server, &alice, alias, &room).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    // Synapse's answer for a room that does not exist.
    let response = put_alias(&server, &alice, "#tea:hearth.test", "!nowhere:hearth.test").await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    let response = server.put(&alias_path("#tea:hearth.test"), alice.token(), json!({})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    // Only members name a room.
    assert_error(&put_alias(&server, &eve, "#tea:hearth.test", &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let response = server.put(&alias_path("#tea:hearth.test"), None, json!({"room_id": room})).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    assert_eq!(server.count(ALIASES).await, 0);

    assert_error(&server.get(&alias_path("#nope:hearth.test"), None).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // An alias whose server cannot be reached is a bad gateway (502, as Synapse answers).
    let unreachable = server.get(&alias_path("#tea:elsewhere.example"), None).await;
    assert_error(&unreachable, StatusCode::BAD_GATEWAY, "M_UNKNOWN");
    assert_error(&server.get(&alias_path("nope"), None).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
}

#[tokio::test]
async fn aliases_are_deleted_by_their_creator_or_the_rooms_moderators_only() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let mallory = server.register("mallory", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    joined(&server, &bob, &room).await;
    joined(&server, &carol, &room).await;

    // Any member may add an alias; another member without power may not remove it.
    aliased(&server, &bob, "#bobs:hearth.test", &room).await;
    let carols = server.delete(&alias_path("#bobs:hearth.test"), carol.token(), None).await;
    assert_error(&carols, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(server.get(&alias_path("#bobs:hearth.test"), None).await.0, StatusCode::OK);
    let (status, body) = server.delete(&alias_path("#bobs:hearth.test"), bob.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    aliased(&server, &alice, "#alices:hearth.test", &room).await;
    for user in [&bob, &mallory] {
        let response = server.delete(&alias_path("#alices:hearth.test"), user.token(), None).await;
        assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    assert_eq!(server.count(ALIASES).await, 1);

    // The room's creator (room v12: above every power level) removes a member's alias.
    aliased(&server, &bob, "#bobs:hearth.test", &room).await;
    let (status, body) = server.delete(&alias_path("#bobs:hearth.test"), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // In older versions it is the power levels that count: a moderator at 50 may.
    let v10 = server
        .create_room(
            &alice,
            json!({
                "room_version": "10",
                "preset": "public_chat",
                "power_level_content_override": {"users": {alice.user_id.clone(): 100, carol.user_id.clone(): 50}},
            }),
        )
        .await;
    joined(&server, &bob, &v10).await;
    joined(&server, &carol, &v10).await;
    aliased(&server, &alice, "#old:hearth.test", &v10).await;
    let bobs = server.delete(&alias_path("#old:hearth.test"), bob.token(), None).await;
    assert_error(&bobs, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (status, body) = server.delete(&alias_path("#old:hearth.test"), carol.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.count(ALIASES).await, 1);
}

#[tokio::test]
async fn deleting_an_alias_takes_it_out_of_the_canonical_alias() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({"room_alias_name": "tea"})).await;
    aliased(&server, &alice, "#cups:hearth.test", &room).await;
    let content = json!({"alias": "#tea:hearth.test", "alt_aliases": ["#cups:hearth.test"]});
    let (status, body) = set_state(&server, &alice, &room, "m.room.canonical_alias", content).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, _) = server.delete(&alias_path("#cups:hearth.test"), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state(&server, &alice, &room, "m.room.canonical_alias").await.1, json!({"alias": "#tea:hearth.test"}));
    let (status, _) = server.delete(&alias_path("#tea:hearth.test"), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state(&server, &alice, &room, "m.room.canonical_alias").await.1, json!({}));
}

#[tokio::test]
async fn an_alias_is_deleted_even_when_its_creator_cannot_update_the_canonical_alias() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    joined(&server, &bob, &room).await;
    aliased(&server, &bob, "#bobs:hearth.test", &room).await;
    let (status, body) =
        set_state(&server, &alice, &room, "m.room.canonical_alias", json!({"alias": "#bobs:hearth.test"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = server.delete(&alias_path("#bobs:hearth.test"), bob.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(&server.get(&alias_path("#bobs:hearth.test"), None).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // Bob has no power over m.room.canonical_alias, so it still names the alias...
    let (_, current) = state(&server, &alice, &room, "m.room.canonical_alias").await;
    assert_eq!(current, json!({"alias": "#bobs:hearth.test"}));
    // ...and aliases already in the event are not checked again when it is re-sent.
    let content = json!({"alias": "#bobs:hearth.test", "alt_aliases": []});
    let (status, body) = set_state(&server, &alice, &room, "m.room.canonical_alias", content.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(state(&server, &alice, &room, "m.room.canonical_alias").await.1, content);
}

#[tokio::test]
async fn local_aliases_are_listed_for_members_and_world_readable_rooms_only() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let eve = server.register("eve", PW).await;
    let room = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    aliased(&server, &alice, "#secret:hearth.test", &room).await;

    assert_error(&local_aliases(&server, &eve, &room).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_error(&local_aliases(&server, &eve, "!nowhere:hearth.test").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    let (status, body) =
        set_state(&server, &alice, &room, "m.room.history_visibility", json!({"history_visibility": "world_readable"}))
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = local_aliases(&server, &eve, &room).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"aliases": ["#secret:hearth.test"]}));
}

// ---------------------------------------------------------------------------------------
// createRoom's room_alias_name, m.room.canonical_alias, joining by alias

#[tokio::test]
async fn create_room_with_an_alias_name_names_the_room_and_sets_its_canonical_alias() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({"room_alias_name": "tea", "name": "Tea"})).await;

    let (status, body) = server.get(&alias_path("#tea:hearth.test"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], room);
    assert_eq!(state(&server, &alice, &room, "m.room.canonical_alias").await.1, json!({"alias": "#tea:hearth.test"}));

    // The spec's order: power levels, then the canonical alias, then the preset's rules.
    let (status, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=100"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let types: Vec<&str> = page["chunk"].as_array().expect("chunk").iter().filter_map(|e| e["type"].as_str()).collect();
    let at = |kind: &str| types.iter().position(|t| *t == kind).unwrap_or_else(|| panic!("{kind} in {types:?}"));
    assert_eq!(at("m.room.canonical_alias"), at("m.room.power_levels") + 1, "{types:?}");
    assert!(at("m.room.canonical_alias") < at("m.room.join_rules"), "{types:?}");

    // Refusals happen before anything is created.
    let (rooms, events) = (server.count(ROOMS).await, server.count(EVENTS).await);
    let taken = server.post("/_matrix/client/v3/createRoom", alice.token(), json!({"room_alias_name": "tea"})).await;
    assert_error(&taken, StatusCode::BAD_REQUEST, "M_ROOM_IN_USE");
    for name in ["#tea:hearth.test", "tea time", ""] {
        let bad = server.post("/_matrix/client/v3/createRoom", alice.token(), json!({"room_alias_name": name})).await;
        assert_error(&bad, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    let elsewhere = json!({
        "room_alias_name": "cups",
        "initial_state": [{"type": "m.room.canonical_alias", "content": {"alias": "#tea:hearth.test"}}],
    });
    let bad = server.post("/_matrix/client/v3/createRoom", alice.token(), elsewhere).await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "M_BAD_ALIAS");
    assert_eq!((server.count(ROOMS).await, server.count(EVENTS).await), (rooms, events));
    assert_eq!(server.count(ALIASES).await, 1);

    // initial_state may name the room's own alias, which then replaces the default event.
    let own = json!({
        "room_alias_name": "cups",
        "initial_state": [{
            "type": "m.room.canonical_alias",
            "content": {"alias": "#cups:hearth.test", "alt_aliases": ["#cups:hearth.test"]},
        }],
    });
    let cups = server.create_room(&alice, own).await;
    let (_, content) = state(&server, &alice, &cups, "m.room.canonical_alias").await;
    assert_eq!(content, json!({"alias": "#cups:hearth.test", "alt_aliases": ["#cups:hearth.test"]}));
}

#[tokio::test]
async fn a_canonical_alias_may_only_list_aliases_of_its_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let other = server.create_room(&alice, json!({})).await;
    aliased(&server, &alice, "#here:hearth.test", &room).await;
    aliased(&server, &alice, "#there:hearth.test", &other).await;
    let events = server.count(EVENTS).await;

    for content in [
        json!({"alias": "#nowhere:hearth.test"}),
        json!({"alias": "#there:hearth.test"}),
        json!({"alias": "#here:hearth.test", "alt_aliases": ["#there:hearth.test"]}),
        json!({"alias": "#here:elsewhere.example"}),
    ] {
        let response = set_state(&server, &alice, &room, "m.room.canonical_alias", content).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_ALIAS");
    }
    for content in [json!({"alias": "not an alias"}), json!({"alt_aliases": "#here:hearth.test"}), json!({"alias": 7})]
    {
        let response = set_state(&server, &alice, &room, "m.room.canonical_alias", content).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    assert_eq!(server.count(EVENTS).await, events);
    assert_error(&state(&server, &alice, &room, "m.room.canonical_alias").await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let content = json!({"alias": "#here:hearth.test", "alt_aliases": ["#here:hearth.test"]});
    let (status, body) = set_state(&server, &alice, &room, "m.room.canonical_alias", content.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(state(&server, &alice, &room, "m.room.canonical_alias").await.1, content);
}

#[tokio::test]
async fn users_join_rooms_by_alias() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat", "room_alias_name": "lobby"})).await;

    let (status, body) = join(&server, &bob, "#lobby:hearth.test").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"room_id": room}));
    let (_, rooms) = server.get("/_matrix/client/v3/joined_rooms", bob.token()).await;
    assert_eq!(rooms["joined_rooms"], json!([room]));

    assert_error(&join(&server, &bob, "#nowhere:hearth.test").await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // The alias's server cannot be reached: a bad gateway, not the client's mistake.
    assert_error(&join(&server, &bob, "#lobby:elsewhere.example").await, StatusCode::BAD_GATEWAY, "M_UNKNOWN");
}

// ---------------------------------------------------------------------------------------
// GET / PUT /directory/list/room/{roomId}

#[tokio::test]
async fn room_directory_visibility_is_changed_by_moderators_only() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let eve = server.register("eve", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    joined(&server, &bob, &room).await;

    let (status, body) = server.get(&visibility_path(&room), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"visibility": "private"}));

    for user in [&bob, &eve] {
        let response = server.put(&visibility_path(&room), user.token(), json!({"visibility": "public"})).await;
        assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    assert_eq!(server.get(&visibility_path(&room), None).await.1, json!({"visibility": "private"}));

    let (status, body) = server.put(&visibility_path(&room), alice.token(), json!({"visibility": "public"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({}));
    assert_eq!(server.get(&visibility_path(&room), None).await.1, json!({"visibility": "public"}));
    let bad = server.put(&visibility_path(&room), alice.token(), json!({"visibility": "secret"})).await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    assert_eq!(server.get(&visibility_path(&room), None).await.1, json!({"visibility": "public"}));
    let (status, _) = server.put(&visibility_path(&room), alice.token(), json!({"visibility": "private"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.get(&visibility_path(&room), None).await.1, json!({"visibility": "private"}));

    let unknown = "!nowhere:hearth.test";
    assert_error(&server.get(&visibility_path(unknown), None).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response = server.put(&visibility_path(unknown), alice.token(), json!({"visibility": "public"})).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // createRoom's `visibility: public` publishes the room.
    let listed = server.create_room(&alice, json!({"visibility": "public"})).await;
    assert_eq!(server.get(&visibility_path(&listed), None).await.1, json!({"visibility": "public"}));
}

// ---------------------------------------------------------------------------------------
// GET / POST /publicRooms

#[tokio::test]
async fn public_rooms_lists_published_joinable_rooms_with_their_current_state() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let public = |extra: Value| {
        let mut body = json!({"visibility": "public", "preset": "public_chat"});
        for (key, value) in extra.as_object().expect("object") {
            body[key] = value.clone();
        }
        body
    };
    let big = server.create_room(&alice, public(json!({"name": "Big Room", "room_alias_name": "big"}))).await;
    joined(&server, &bob, &big).await;
    joined(&server, &carol, &big).await;
    let small = server.create_room(&alice, public(json!({"name": "Small", "topic": "Tiny talk"}))).await;
    for (kind, content) in [
        ("m.room.avatar", json!({"url": "mxc://hearth.test/small"})),
        ("m.room.history_visibility", json!({"history_visibility": "world_readable"})),
        ("m.room.guest_access", json!({"guest_access": "can_join"})),
    ] {
        let (status, body) = set_state(&server, &alice, &small, kind, content).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let space =
        server.create_room(&alice, public(json!({"name": "Space", "creation_content": {"type": "m.space"}}))).await;
    // Published but invite-only, and public but not published: neither is listed.
    let invite_only = server.create_room(&alice, json!({"visibility": "public", "preset": "private_chat"})).await;
    let unlisted = server.create_room(&alice, json!({"preset": "public_chat"})).await;

    let (status, page) = server.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids = room_ids(&page);
    assert_eq!(ids.len(), 3, "{page}");
    assert_eq!(ids[0], big, "most members first: {page}");
    let mut rest = vec![small.clone(), space.clone()];
    rest.sort();
    rest.reverse();
    assert_eq!(ids[1..], rest, "then by room id, as Synapse orders them");
    assert_eq!(page["total_room_count_estimate"], 3);
    assert!(page.get("next_batch").is_none() && page.get("prev_batch").is_none(), "{page}");
    assert!(!ids.contains(&invite_only) && !ids.contains(&unlisted));

    let entry = |id: &str| page["chunk"].as_array().expect("chunk").iter().find(|r| r["room_id"] == id).cloned();
    let big_entry = entry(&big).expect("big room");
    assert_eq!(big_entry["num_joined_members"], 3);
    assert_eq!(big_entry["name"], "Big Room");
    assert_eq!(big_entry["canonical_alias"], "#big:hearth.test");
    assert_eq!(big_entry["world_readable"], false);
    assert_eq!(big_entry["guest_can_join"], false);
    // `join_rule` may be left out when it is "public".
    assert!(big_entry.get("join_rule").is_none_or(|rule| rule == "public"), "{big_entry}");
    assert!(big_entry.get("room_type").is_none() && big_entry.get("topic").is_none(), "{big_entry}");
    let small_entry = entry(&small).expect("small room");
    assert_eq!(small_entry["topic"], "Tiny talk");
    assert_eq!(small_entry["avatar_url"], "mxc://hearth.test/small");
    assert_eq!(small_entry["world_readable"], true);
    assert_eq!(small_entry["guest_can_join"], true);
    assert_eq!(small_entry["num_joined_members"], 1);
    assert_eq!(entry(&space).expect("space")["room_type"], "m.space");

    // Publishing later lists the room; filtering by room type.
    let (status, _) = server.put(&visibility_path(&unlisted), alice.token(), json!({"visibility": "public"})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, page) = server.get("/_matrix/client/v3/publicRooms", None).await;
    assert!(room_ids(&page).contains(&unlisted), "{page}");
    let filtered = |types: Value| {
        server.post("/_matrix/client/v3/publicRooms", alice.token(), json!({"filter": {"room_types": types}}))
    };
    let (status, page) = filtered(json!(["m.space"])).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(room_ids(&page), vec![space.clone()]);
    assert_eq!(page["total_room_count_estimate"], 1);
    let (_, page) = filtered(json!([null])).await;
    assert_eq!(room_ids(&page).len(), 3, "{page}");
    assert!(!room_ids(&page).contains(&space));

    // Bridged networks: none has published anything here.
    let (status, page) =
        server.post("/_matrix/client/v3/publicRooms", alice.token(), json!({"third_party_instance_id": "irc"})).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["chunk"], json!([]));
}

#[tokio::test]
async fn public_rooms_are_searched_and_paginated_both_ways() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let mut rooms = Vec::new();
    for body in [
        json!({"name": "Green Tea"}),
        json!({"name": "Coffee", "topic": "Better than TEA"}),
        json!({"name": "Juice", "room_alias_name": "teatime"}),
        json!({"name": "Water"}),
        json!({"name": "Milk 100%"}),
    ] {
        let mut body = body;
        body["visibility"] = json!("public");
        body["preset"] = json!("public_chat");
        rooms.push(server.create_room(&alice, body).await);
    }
    joined(&server, &bob, &rooms[1]).await;
    let search = |term: &str, limit: Option<u64>| {
        let mut body = json!({"filter": {"generic_search_term": term}});
        if let Some(limit) = limit {
            body["limit"] = json!(limit);
        }
        server.post("/_matrix/client/v3/publicRooms", alice.token(), body)
    };

    // Name, topic and canonical alias are searched, case-insensitively.
    let (status, page) = search("tEa", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids = room_ids(&page);
    assert_eq!(ids.len(), 3, "{page}");
    assert_eq!(ids[0], rooms[1], "most members first");
    let mut expected = vec![rooms[0].clone(), rooms[2].clone()];
    expected.sort();
    expected.reverse();
    assert_eq!(ids[1..], expected);
    assert_eq!(page["total_room_count_estimate"], 3);
    // The term is matched literally, wildcards included.
    assert_eq!(room_ids(&search("100%", None).await.1), vec![rooms[4].clone()]);
    assert_eq!(room_ids(&search("_", None).await.1), Vec::<String>::new());

    // Forwards through everything, two at a time: each room exactly once, in order.
    let page = |since: Option<String>| {
        let mut body = json!({"limit": 2});
        if let Some(since) = since {
            body["since"] = json!(since);
        }
        server.post("/_matrix/client/v3/publicRooms", alice.token(), body)
    };
    let (status, first) = page(None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(first.get("prev_batch").is_none(), "{first}");
    assert_eq!(first["total_room_count_estimate"], 5);
    let (_, second) = page(first["next_batch"].as_str().map(str::to_owned)).await;
    let (_, third) = page(second["next_batch"].as_str().map(str::to_owned)).await;
    assert!(third.get("next_batch").is_none(), "{third}");
    let all: Vec<String> = [&first, &second, &third].into_iter().flat_map(room_ids).collect();
    assert_eq!(room_ids(&first).len(), 2);
    assert_eq!(room_ids(&second).len(), 2);
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(all[0], rooms[1]);
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{all:?}");

    // And backwards from the last page to the first.
    let (_, back) = page(third["prev_batch"].as_str().map(str::to_owned)).await;
    assert_eq!(room_ids(&back), room_ids(&second), "{back}");
    assert!(back.get("next_batch").is_some(), "{back}");
    let (_, front) = page(back["prev_batch"].as_str().map(str::to_owned)).await;
    assert_eq!(room_ids(&front), room_ids(&first), "{front}");
    assert!(front.get("prev_batch").is_none(), "{front}");

    // GET paginates the same way.
    let (status, got) = server.get("/_matrix/client/v3/publicRooms?limit=2", None).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(room_ids(&got), room_ids(&first));
    let next = got["next_batch"].as_str().expect("next_batch");
    let (_, got) = server.get(&format!("/_matrix/client/v3/publicRooms?limit=2&since={next}"), None).await;
    assert_eq!(room_ids(&got), room_ids(&second));

    for bad in [
        server.get("/_matrix/client/v3/publicRooms?since=garbage", None).await,
        server.post("/_matrix/client/v3/publicRooms", alice.token(), json!({"since": "Zm9v"})).await,
    ] {
        assert_error(&bad, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    // Other servers' directories come over federation: one that cannot be reached is a bad
    // gateway (502); naming this server is fine.
    let remote = server.get("/_matrix/client/v3/publicRooms?server=elsewhere.example", None).await;
    assert_error(&remote, StatusCode::BAD_GATEWAY, "M_UNKNOWN");
    let remote = server.post("/_matrix/client/v3/publicRooms?server=elsewhere.example", alice.token(), json!({})).await;
    assert_error(&remote, StatusCode::BAD_GATEWAY, "M_UNKNOWN");
    let (status, own) = server.get("/_matrix/client/v3/publicRooms?server=hearth.test", None).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(room_ids(&own).len(), 5);
    // POST needs an access token.
    let anonymous = server.post("/_matrix/client/v3/publicRooms", None, json!({})).await;
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
}

// ---------------------------------------------------------------------------------------
// POST /user_directory/search

#[tokio::test]
async fn the_user_directory_finds_people_who_share_a_room_or_are_in_public_rooms() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let dave = server.register("dave", PW).await;
    let erin = server.register("erin", PW).await;
    let frank = server.register("frank", PW).await;
    let search = |user: &TestUser, term: &str, limit: Option<u64>| {
        let mut body = json!({"search_term": term});
        if let Some(limit) = limit {
            body["limit"] = json!(limit);
        }
        let token = user.access_token.clone();
        let server = &server;
        async move { server.post("/_matrix/client/v3/user_directory/search", Some(&token), body).await }
    };

    // alice and bob share a private room; carol and erin sit in a public one; frank is
    // alone in a private room; dave is in no room at all.
    let private = server.create_room(&alice, json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    joined(&server, &bob, &private).await;
    let lounge = server.create_room(&carol, json!({"preset": "public_chat"})).await;
    joined(&server, &erin, &lounge).await;
    server.create_room(&frank, json!({"preset": "private_chat"})).await;
    let profile = |field: &str| format!("/_matrix/client/v3/profile/{}/{field}", enc(&bob.user_id));
    let (status, _) = server.put(&profile("displayname"), bob.token(), json!({"displayname": "Bobby Tables"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        server.put(&profile("avatar_url"), bob.token(), json!({"avatar_url": "mxc://hearth.test/bob"})).await;
    assert_eq!(status, StatusCode::OK);

    let (status, found) = search(&alice, "bob", None).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(
        found,
        json!({
            "limited": false,
            "results": [{"user_id": bob.user_id, "display_name": "Bobby Tables", "avatar_url": "mxc://hearth.test/bob"}],
        })
    );
    // Display names and user ids, case-insensitively.
    assert_eq!(user_ids(&search(&alice, "TABLES", None).await.1), vec![bob.user_id.clone()]);
    assert_eq!(user_ids(&search(&alice, "@BOB:hearth", None).await.1), vec![bob.user_id.clone()]);
    assert_eq!(user_ids(&search(&alice, "carol", None).await.1), vec![carol.user_id.clone()]);
    assert_eq!(user_ids(&search(&alice, "erin", None).await.1), vec![erin.user_id.clone()]);
    for hidden in ["dave", "frank", "%", ""] {
        let (status, found) = search(&alice, hidden, None).await;
        assert_eq!(status, StatusCode::OK, "{found}");
        assert_eq!(found, json!({"limited": false, "results": []}), "{hidden}");
    }
    // As in Synapse, searchers find themselves only through a public room.
    assert_eq!(user_ids(&search(&alice, "alice", None).await.1), Vec::<String>::new());
    assert_eq!(user_ids(&search(&carol, "carol", None).await.1), vec![carol.user_id.clone()]);
    let _ = &dave;

    let (_, found) = search(&alice, "hearth.test", Some(2)).await;
    assert_eq!(found["limited"], true, "{found}");
    assert_eq!(user_ids(&found).len(), 2);
    let (_, found) = search(&alice, "hearth.test", None).await;
    assert_eq!(found["limited"], false, "{found}");
    assert_eq!(user_ids(&found), vec![bob.user_id.clone(), carol.user_id.clone(), erin.user_id.clone()]);

    // Deactivated users disappear; so do people one no longer shares a room with.
    let deactivate = "/_matrix/client/v3/account/deactivate";
    let (status, body) = server.post(deactivate, erin.token(), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let session = body["session"].as_str().expect("session").to_owned();
    let (status, body) = server.post(deactivate, erin.token(), json!({"auth": erin.password_auth(&session)})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(user_ids(&search(&alice, "erin", None).await.1), Vec::<String>::new());
    let (status, _) = server.post(&format!("/_matrix/client/v3/rooms/{private}/leave"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user_ids(&search(&alice, "bob", None).await.1), Vec::<String>::new());

    let anonymous = server.post("/_matrix/client/v3/user_directory/search", None, json!({"search_term": "bob"})).await;
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
}
