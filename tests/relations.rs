//! Redactions, relations, threads, bundled aggregations, `/context` and
//! `timestamp_to_event`, as clients observe them over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "relations-test-password";

/// A public room of the given version with alice (creator) and bob joined.
async fn room_with_bob(server: &TestServer, alice: &TestUser, bob: &TestUser, version: &str) -> String {
    let room = server.create_room(alice, json!({"preset": "public_chat", "room_version": version})).await;
    server.join(bob, &room).await;
    room
}

async fn send_raw(
    server: &TestServer,
    user: &TestUser,
    room: &str,
    kind: &str,
    txn: &str,
    content: Value,
) -> (StatusCode, Value) {
    server.put(&format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{txn}"), user.token(), content).await
}

async fn send(server: &TestServer, user: &TestUser, room: &str, kind: &str, txn: &str, content: Value) -> String {
    let (status, body) = send_raw(server, user, room, kind, txn, content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

async fn text(server: &TestServer, user: &TestUser, room: &str, txn: &str, body: &str) -> String {
    send(server, user, room, "m.room.message", txn, json!({"msgtype": "m.text", "body": body})).await
}

async fn edit(server: &TestServer, user: &TestUser, room: &str, txn: &str, original: &str, body: &str) -> String {
    let content = json!({
        "msgtype": "m.text",
        "body": format!("* {body}"),
        "m.new_content": {"msgtype": "m.text", "body": body},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    });
    send(server, user, room, "m.room.message", txn, content).await
}

async fn thread_reply(server: &TestServer, user: &TestUser, room: &str, txn: &str, root: &str, body: &str) -> String {
    let content = json!({
        "msgtype": "m.text",
        "body": body,
        "m.relates_to": {"rel_type": "m.thread", "event_id": root},
    });
    send(server, user, room, "m.room.message", txn, content).await
}

async fn react_raw(
    server: &TestServer,
    user: &TestUser,
    room: &str,
    txn: &str,
    target: &str,
    key: &str,
) -> (StatusCode, Value) {
    let content = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}});
    send_raw(server, user, room, "m.reaction", txn, content).await
}

async fn redact_raw(
    server: &TestServer,
    user: &TestUser,
    room: &str,
    event: &str,
    txn: &str,
    reason: Option<&str>,
) -> (StatusCode, Value) {
    let body = match reason {
        Some(reason) => json!({"reason": reason}),
        None => json!({}),
    };
    // Event ids of room versions 3 and earlier may hold `/` and `+`: encoded, as clients do.
    server.put(&format!("/_matrix/client/v3/rooms/{room}/redact/{}/{txn}", encode(event)), user.token(), body).await
}

async fn redact(server: &TestServer, user: &TestUser, room: &str, event: &str, txn: &str) -> String {
    let (status, body) = redact_raw(server, user, room, event, txn, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().expect("event_id").to_owned()
}

async fn get_event(server: &TestServer, user: &TestUser, room: &str, event: &str) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", encode(event)), user.token()).await
}

async fn event_ok(server: &TestServer, user: &TestUser, room: &str, event: &str) -> Value {
    let (status, body) = get_event(server, user, room, event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn history(server: &TestServer, user: &TestUser, room: &str) -> Vec<Value> {
    let (status, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["chunk"].as_array().expect("chunk").clone()
}

fn find<'a>(events: &'a [Value], event_id: &str) -> &'a Value {
    events.iter().find(|event| event["event_id"] == event_id).unwrap_or_else(|| panic!("{event_id} not in {events:?}"))
}

fn ids(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("array")
        .iter()
        .map(|event| event["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

async fn relations(server: &TestServer, user: &TestUser, room: &str, path: &str) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v1/rooms/{room}/relations/{path}"), user.token()).await
}

async fn relations_ok(server: &TestServer, user: &TestUser, room: &str, path: &str) -> Value {
    let (status, body) = relations(server, user, room, path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

async fn count_type(server: &TestServer, kind: &str) -> i64 {
    server.count(&format!("SELECT COUNT(*) FROM events WHERE event_type = '{kind}'")).await
}

// ---------------------------------------------------------------------------------------------
// Redactions

#[tokio::test]
async fn a_redacted_message_is_served_redacted_everywhere_but_kept_for_admins() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = room_with_bob(&server, &alice, &bob, "12").await;
    let message = text(&server, &bob, &room, "m1", "a regrettable sentence").await;

    let (status, body) = redact_raw(&server, &bob, &room, &message, "r1", Some("oops")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let redaction = body["event_id"].as_str().expect("event_id").to_owned();

    // /event: empty content, the redaction under unsigned.redacted_because.
    let event = event_ok(&server, &alice, &room, &message).await;
    assert_eq!(event["content"], json!({}));
    assert_eq!(event["type"], "m.room.message");
    assert_eq!(event["sender"], bob.user_id);
    let because = &event["unsigned"]["redacted_because"];
    assert_eq!(because["event_id"], redaction);
    assert_eq!(because["type"], "m.room.redaction");
    assert_eq!(because["sender"], bob.user_id);
    assert_eq!(because["content"]["reason"], "oops");
    assert_eq!(because["redacts"], message);
    // Room version 11 and later carry `redacts` in the content.
    assert_eq!(because["content"]["redacts"], message);

    // /messages: the same redacted form, and the redaction itself in the timeline.
    let timeline = history(&server, &alice, &room).await;
    let served = find(&timeline, &message);
    assert_eq!(served["content"], json!({}));
    assert_eq!(served["unsigned"]["redacted_because"]["event_id"], redaction);
    assert_eq!(find(&timeline, &redaction)["redacts"], message);

    // The original stays stored, unchanged, for admins.
    let stored = server.count("SELECT COUNT(*) FROM events WHERE json LIKE '%a regrettable sentence%'").await;
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn redacting_is_idempotent_per_transaction() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let message = text(&server, &alice, &room, "m1", "twice?").await;
    let first = redact(&server, &alice, &room, &message, "same").await;
    let second = redact(&server, &alice, &room, &message, "same").await;
    assert_eq!(first, second);
    assert_eq!(count_type(&server, "m.room.redaction").await, 1);
    // A new transaction id is a new redaction.
    let third = redact(&server, &alice, &room, &message, "other").await;
    assert_ne!(first, third);
    assert_eq!(count_type(&server, "m.room.redaction").await, 2);
    // The first redaction is the one clients are shown.
    let event = event_ok(&server, &alice, &room, &message).await;
    assert_eq!(event["unsigned"]["redacted_because"]["event_id"], first);
}

#[tokio::test]
async fn only_moderators_redact_other_peoples_events() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = room_with_bob(&server, &alice, &bob, "12").await;
    let alices = text(&server, &alice, &room, "a1", "alice speaks").await;
    let bobs = text(&server, &bob, &room, "b1", "bob speaks").await;

    // Bob (power 0, redact needs 50) cannot redact alice's message…
    let refused = redact_raw(&server, &bob, &room, &alices, "r1", None).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // …nor sneak a redaction in through /send.
    let sneaky = send_raw(&server, &bob, &room, "m.room.redaction", "r2", json!({"redacts": alices})).await;
    assert_error(&sneaky, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(count_type(&server, "m.room.redaction").await, 0);
    assert_eq!(event_ok(&server, &bob, &room, &alices).await["content"]["body"], "alice speaks");

    // Alice, the creator, can redact bob's.
    redact(&server, &alice, &room, &bobs, "r1").await;
    assert_eq!(event_ok(&server, &bob, &room, &bobs).await["content"], json!({}));

    // Once bob is given the redact level he can redact alice's.
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"),
            alice.token(),
            json!({"users": {bob.user_id.clone(): 50}, "redact": 50}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    redact(&server, &bob, &room, &alices, "r3").await;
    assert_eq!(event_ok(&server, &alice, &room, &alices).await["content"], json!({}));
}

#[tokio::test]
async fn outsiders_cannot_redact() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let eve = server.register("eve", PW).await;
    let room = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    let message = text(&server, &alice, &room, "m1", "private").await;
    let refused = redact_raw(&server, &eve, &room, &message, "r1", None).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(count_type(&server, "m.room.redaction").await, 0);
}

#[tokio::test]
async fn redacting_an_unknown_event_or_one_of_another_room_is_not_found() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let other_room = server.create_room(&alice, json!({})).await;
    let elsewhere = text(&server, &alice, &other_room, "m1", "elsewhere").await;

    let unknown = redact_raw(&server, &alice, &room, "$doesnotexist", "r1", None).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let cross_room = redact_raw(&server, &alice, &room, &elsewhere, "r2", None).await;
    assert_error(&cross_room, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let unknown_room = redact_raw(&server, &alice, "!nowhere:hearth.test", &elsewhere, "r3", None).await;
    assert_error(&unknown_room, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    assert_eq!(count_type(&server, "m.room.redaction").await, 0);
    assert_eq!(event_ok(&server, &alice, &other_room, &elsewhere).await["content"]["body"], "elsewhere");
}

#[tokio::test]
async fn a_redacted_state_event_stays_current_with_what_redaction_keeps() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({"topic": "a rude topic"})).await;
    let (_, state) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), alice.token()).await;
    let topic = state
        .as_array()
        .expect("state")
        .iter()
        .find(|event| event["type"] == "m.room.topic")
        .expect("topic")["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned();
    let redaction = redact(&server, &alice, &room, &topic, "r1").await;

    // The topic is gone from its content, but the event is still the current topic.
    let (status, content) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{content}");
    assert_eq!(content, json!({}));
    let (status, state) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    let served = find(state.as_array().expect("state"), &topic);
    assert_eq!(served["content"], json!({}));
    assert_eq!(served["unsigned"]["redacted_because"]["event_id"], redaction);

    // A sync serves it redacted too, from the room's state or its timeline, whichever holds
    // it, with or without a timeline long enough to reach it.
    for limit in [1, 50] {
        let filter = format!("{{\"room\":{{\"timeline\":{{\"limit\":{limit}}}}}}}");
        let (status, synced) =
            server.get(&format!("/_matrix/client/v3/sync?filter={}", encode(&filter)), alice.token()).await;
        assert_eq!(status, StatusCode::OK, "{synced}");
        let joined = &synced["rooms"]["join"][&room];
        let mut events: Vec<Value> = joined["state"]["events"].as_array().cloned().unwrap_or_default();
        events.extend(joined["timeline"]["events"].as_array().cloned().unwrap_or_default());
        let served = find(&events, &topic);
        assert_eq!(served["content"], json!({}), "limit {limit}: {joined}");
        assert_eq!(served["unsigned"]["redacted_because"]["event_id"], redaction, "limit {limit}: {joined}");
    }

    // A redacted membership keeps the membership: alice is still joined and can still talk,
    // but her profile is gone from the member event.
    let member = state
        .as_array()
        .expect("state")
        .iter()
        .find(|event| event["type"] == "m.room.member")
        .expect("member")["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned();
    redact(&server, &alice, &room, &member, "r2").await;
    let (_, content) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", alice.user_id), alice.token())
        .await;
    assert_eq!(content, json!({"membership": "join"}));
    text(&server, &alice, &room, "m1", "still here").await;
}

#[tokio::test]
async fn redaction_works_in_every_supported_room_version() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    for version in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"] {
        let room = room_with_bob(&server, &alice, &bob, version).await;
        let message = text(&server, &bob, &room, &format!("m{version}"), "hello").await;
        let redaction = redact(&server, &alice, &room, &message, &format!("r{version}")).await;
        let event = event_ok(&server, &bob, &room, &message).await;
        assert_eq!(event["content"], json!({}), "v{version}");
        let because = &event["unsigned"]["redacted_because"];
        assert_eq!(because["event_id"], redaction, "v{version}");
        // Every version names the target at the top level for clients.
        assert_eq!(because["redacts"], message, "v{version}");
    }
}

// ---------------------------------------------------------------------------------------------
// Relations and bundled aggregations

#[tokio::test]
async fn the_latest_valid_edit_is_bundled_and_redactions_unbundle_it() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = room_with_bob(&server, &alice, &bob, "12").await;
    let original = text(&server, &alice, &room, "m1", "helo").await;
    let first = edit(&server, &alice, &room, "e1", &original, "hello").await;
    let second = edit(&server, &alice, &room, "e2", &original, "hello!").await;
    // Bob cannot edit alice's message: his "edit" is not bundled.
    edit(&server, &bob, &room, "e3", &original, "bob was here").await;

    let event = event_ok(&server, &bob, &room, &original).await;
    // The content stays the original's; the newest edit comes bundled, in full.
    assert_eq!(event["content"]["body"], "helo");
    let replace = &event["unsigned"]["m.relations"]["m.replace"];
    assert_eq!(replace["event_id"], second, "{event}");
    assert_eq!(replace["content"]["m.new_content"]["body"], "hello!");
    assert_eq!(replace["sender"], alice.user_id);
    // Edits are not bundled as references or threads.
    assert!(event["unsigned"]["m.relations"].get("m.thread").is_none());

    // /messages bundles the same way.
    let timeline = history(&server, &bob, &room).await;
    assert_eq!(find(&timeline, &original)["unsigned"]["m.relations"]["m.replace"]["event_id"], second);

    // Redacting the newest edit reverts to the one before.
    redact(&server, &alice, &room, &second, "r1").await;
    let event = event_ok(&server, &bob, &room, &original).await;
    assert_eq!(event["unsigned"]["m.relations"]["m.replace"]["event_id"], first);

    // Redacting the original: no edit is bundled any more.
    redact(&server, &alice, &room, &original, "r2").await;
    let event = event_ok(&server, &bob, &room, &original).await;
    assert_eq!(event["content"], json!({}));
    assert!(event["unsigned"].get("m.relations").is_none(), "{event}");
}

#[tokio::test]
async fn threads_are_bundled_with_count_latest_event_and_participation() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    let room = room_with_bob(&server, &alice, &bob, "12").await;
    server.join(&carol, &room).await;
    let root = text(&server, &alice, &room, "root", "shall we?").await;
    thread_reply(&server, &bob, &room, "t1", &root, "yes").await;
    let latest = thread_reply(&server, &alice, &room, "t2", &root, "great").await;
    let latest_edit = edit(&server, &alice, &room, "t2e", &latest, "great!").await;

    let for_bob = event_ok(&server, &bob, &room, &root).await;
    let thread = &for_bob["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(thread["count"], 2, "{for_bob}");
    assert_eq!(thread["latest_event"]["event_id"], latest);
    assert_eq!(thread["latest_event"]["content"]["body"], "great");
    assert_eq!(thread["current_user_participated"], true);
    // The latest event carries its own aggregations.
    assert_eq!(thread["latest_event"]["unsigned"]["m.relations"]["m.replace"]["event_id"], latest_edit);

    // Carol took no part; alice sent the root.
    let for_carol = event_ok(&server, &carol, &room, &root).await;
    assert_eq!(for_carol["unsigned"]["m.relations"]["m.thread"]["current_user_participated"], false);
    assert_eq!(for_carol["unsigned"]["m.relations"]["m.thread"]["count"], 2);
    let for_alice = event_ok(&server, &alice, &room, &root).await;
    assert_eq!(for_alice["unsigned"]["m.relations"]["m.thread"]["current_user_participated"], true);

    // A redacted reply leaves the thread.
    redact(&server, &alice, &room, &latest, "r1").await;
    let after = event_ok(&server, &carol, &room, &root).await;
    assert_eq!(after["unsigned"]["m.relations"]["m.thread"]["count"], 1);
    assert_ne!(after["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"], latest);
}

#[tokio::test]
async fn references_are_bundled_and_annotations_are_not() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = room_with_bob(&server, &alice, &bob, "12").await;
    let target = text(&server, &alice, &room, "m1", "vote now").await;
    let one = send(
        &server,
        &bob,
        &room,
        "m.room.message",
        "ref1",
        json!({"msgtype": "m.text", "body": "ref", "m.relates_to": {"rel_type": "m.reference", "event_id": target}}),
    )
    .await;
    let two = send(
        &server,
        &alice,
        &room,
        "org.example.vote",
        "ref2",
        json!({"m.relates_to": {"rel_type": "m.reference", "event_id": target}}),
    )
    .await;
    let (status, body) = react_raw(&server, &bob, &room, "react1", &target, "👍").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let event = event_ok(&server, &alice, &room, &target).await;
    let relations = &event["unsigned"]["m.relations"];
    assert_eq!(relations["m.reference"], json!({"chunk": [{"event_id": one}, {"event_id": two}]}), "{event}");
    assert!(relations.get("m.annotation").is_none(), "{event}");
}

#[tokio::test]
async fn duplicate_annotations_are_refused_until_the_first_is_redacted() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = room_with_bob(&server, &alice, &bob, "12").await;
    let target = text(&server, &alice, &room, "m1", "nice").await;
    let (status, body) = react_raw(&server, &bob, &room, "x1", &target, "👍").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = body["event_id"].as_str().expect("event_id").to_owned();

    let duplicate = react_raw(&server, &bob, &room, "x2", &target, "👍").await;
    assert_error(&duplicate, StatusCode::BAD_REQUEST, "M_DUPLICATE_ANNOTATION");
    assert_eq!(count_type(&server, "m.reaction").await, 1);
    // Another key, or another user, is fine.
    assert_eq!(react_raw(&server, &bob, &room, "x3", &target, "🎉").await.0, StatusCode::OK);
    assert_eq!(react_raw(&server, &alice, &room, "x4", &target, "👍").await.0, StatusCode::OK);

    redact(&server, &bob, &room, &first, "r1").await;
    assert_eq!(react_raw(&server, &bob, &room, "x5", &target, "👍").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_thread_cannot_start_from_an_event_with_a_relation() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let root = text(&server, &alice, &room, "m1", "root").await;
    let reply = thread_reply(&server, &alice, &room, "t1", &root, "reply").await;
    let content =
        json!({"msgtype": "m.text", "body": "nested", "m.relates_to": {"rel_type": "m.thread", "event_id": reply}});
    let refused = send_raw(&server, &alice, &room, "m.room.message", "t2", content).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    // Relations stay within a room.
    let other = server.create_room(&alice, json!({})).await;
    let content =
        json!({"msgtype": "m.text", "body": "far", "m.relates_to": {"rel_type": "m.thread", "event_id": root}});
    let refused = send_raw(&server, &alice, &other, "m.room.message", "t3", content).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    assert_eq!(count_type(&server, "m.room.message").await, 2);
}

#[tokio::test]
async fn relations_lists_children_filtered_and_paginated() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = room_with_bob(&server, &alice, &bob, "12").await;
    let root = text(&server, &alice, &room, "root", "root").await;
    let t1 = thread_reply(&server, &bob, &room, "t1", &root, "one").await;
    let r1 = react_raw(&server, &alice, &room, "r1", &root, "👍").await.1["event_id"].as_str().expect("id").to_owned();
    let t2 = thread_reply(&server, &alice, &room, "t2", &root, "two").await;
    let t3 = thread_reply(&server, &bob, &room, "t3", &root, "three").await;
    // A reaction to a thread reply: a grandchild of the root.
    let grandchild =
        react_raw(&server, &alice, &room, "r2", &t1, "🎉").await.1["event_id"].as_str().expect("id").to_owned();
    // An unrelated message is no child.
    text(&server, &alice, &room, "other", "unrelated").await;

    // All children, newest first.
    let all = relations_ok(&server, &bob, &room, &root).await;
    assert_eq!(ids(&all["chunk"]), vec![t3.clone(), t2.clone(), r1.clone(), t1.clone()]);
    assert!(all.get("next_batch").is_none(), "{all}");
    assert!(all.get("recursion_depth").is_none(), "{all}");

    // By relation type, and by relation and event type.
    let threads = relations_ok(&server, &bob, &room, &format!("{root}/m.thread")).await;
    assert_eq!(ids(&threads["chunk"]), vec![t3.clone(), t2.clone(), t1.clone()]);
    let reactions = relations_ok(&server, &bob, &room, &format!("{root}/m.annotation/m.reaction")).await;
    assert_eq!(ids(&reactions["chunk"]), vec![r1.clone()]);
    let none = relations_ok(&server, &bob, &room, &format!("{root}/m.annotation/m.room.message")).await;
    assert_eq!(ids(&none["chunk"]), Vec::<String>::new());

    // Pages of two, backwards then forwards.
    let page = relations_ok(&server, &bob, &room, &format!("{root}/m.thread?limit=2")).await;
    assert_eq!(ids(&page["chunk"]), vec![t3.clone(), t2.clone()]);
    let next = page["next_batch"].as_str().expect("next_batch");
    let page = relations_ok(&server, &bob, &room, &format!("{root}/m.thread?limit=2&from={next}")).await;
    assert_eq!(ids(&page["chunk"]), vec![t1.clone()]);
    assert_eq!(page["prev_batch"], next);
    assert!(page.get("next_batch").is_none(), "{page}");
    let forwards = relations_ok(&server, &bob, &room, &format!("{root}/m.thread?dir=f&limit=2")).await;
    assert_eq!(ids(&forwards["chunk"]), vec![t1.clone(), t2.clone()]);
    let next = forwards["next_batch"].as_str().expect("next_batch");
    let forwards = relations_ok(&server, &bob, &room, &format!("{root}/m.thread?dir=f&from={next}")).await;
    assert_eq!(ids(&forwards["chunk"]), vec![t3.clone()]);

    // Recursion reaches the reaction to a thread reply, and says how deep it went.
    let deep = relations_ok(&server, &bob, &room, &format!("{root}?recurse=true")).await;
    assert_eq!(ids(&deep["chunk"]), vec![grandchild.clone(), t3.clone(), t2.clone(), r1.clone(), t1.clone()]);
    assert_eq!(deep["recursion_depth"], 3);
    // Filters apply at every level: the grandchild is reached only through a thread reply.
    let deep_reactions = relations_ok(&server, &bob, &room, &format!("{root}/m.annotation?recurse=true")).await;
    assert_eq!(ids(&deep_reactions["chunk"]), vec![r1.clone()]);

    // Redacted children drop out.
    redact(&server, &alice, &room, &t2, "red").await;
    let after = relations_ok(&server, &bob, &room, &format!("{root}/m.thread")).await;
    assert_eq!(ids(&after["chunk"]), vec![t3.clone(), t1]);

    // Children carry their own bundled aggregations.
    let t3_edit = edit(&server, &bob, &room, "t3e", &t3, "three!").await;
    let edited = relations_ok(&server, &bob, &room, &format!("{root}/m.thread?limit=1")).await;
    assert_eq!(edited["chunk"][0]["event_id"], t3);
    assert_eq!(edited["chunk"][0]["unsigned"]["m.relations"]["m.replace"]["event_id"], t3_edit);
}

#[tokio::test]
async fn relations_respect_history_visibility() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let eve = server.register("eve", PW).await;
    let room = room_with_bob(&server, &alice, &bob, "12").await;
    let root = text(&server, &alice, &room, "root", "root").await;
    let seen = thread_reply(&server, &alice, &room, "t1", &root, "bob sees this").await;
    server.leave(&bob, &room).await;
    thread_reply(&server, &alice, &room, "t2", &root, "after bob left").await;

    // Bob left: he sees the root and what was said while he was there, nothing after.
    let page = relations_ok(&server, &bob, &room, &root).await;
    assert_eq!(ids(&page["chunk"]), vec![seen]);

    // Eve was never in the room (history is `shared`, not world-readable).
    assert_error(&relations(&server, &eve, &room, &root).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (status, threads) = server.get(&format!("/_matrix/client/v1/rooms/{room}/threads"), eve.token()).await;
    assert_error(&(status, threads), StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // An unknown parent, or one of another room, is not found.
    let other = server.create_room(&alice, json!({})).await;
    let elsewhere = text(&server, &alice, &other, "m1", "elsewhere").await;
    assert_error(&relations(&server, &alice, &room, "$unknown").await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(&relations(&server, &alice, &room, &elsewhere).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // A bad token is the client's mistake.
    assert_error(
        &relations(&server, &alice, &room, &format!("{root}?from=bogus")).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn threads_are_listed_by_latest_activity() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = room_with_bob(&server, &alice, &bob, "12").await;
    let first = text(&server, &alice, &room, "a", "first thread").await;
    let second = text(&server, &bob, &room, "b", "second thread").await;
    let third = text(&server, &alice, &room, "c", "third thread").await;
    text(&server, &alice, &room, "d", "not a thread").await;
    thread_reply(&server, &alice, &room, "t1", &second, "in second").await;
    thread_reply(&server, &alice, &room, "t2", &third, "in third").await;
    thread_reply(&server, &bob, &room, "t3", &first, "in first").await;

    let url = format!("/_matrix/client/v1/rooms/{room}/threads");
    let (status, all) = server.get(&url, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(ids(&all["chunk"]), vec![first.clone(), third.clone(), second.clone()]);
    assert!(all.get("next_batch").is_none(), "{all}");
    // Roots come with their thread bundle.
    let root = find(all["chunk"].as_array().expect("chunk"), &first);
    assert_eq!(root["unsigned"]["m.relations"]["m.thread"]["latest_event"]["content"]["body"], "in first");

    // Bob took part in `first` (replied) and `second` (sent the root).
    let (_, participated) = server.get(&format!("{url}?include=participated"), bob.token()).await;
    assert_eq!(ids(&participated["chunk"]), vec![first.clone(), second.clone()]);

    // Pages.
    let (_, page) = server.get(&format!("{url}?limit=2"), alice.token()).await;
    assert_eq!(ids(&page["chunk"]), vec![first.clone(), third.clone()]);
    let next = page["next_batch"].as_str().expect("next_batch");
    let (_, page) = server.get(&format!("{url}?limit=2&from={next}"), alice.token()).await;
    assert_eq!(ids(&page["chunk"]), vec![second.clone()]);

    // New activity moves a thread to the top.
    thread_reply(&server, &bob, &room, "t4", &second, "again").await;
    let (_, all) = server.get(&url, alice.token()).await;
    assert_eq!(ids(&all["chunk"]), vec![second, first, third]);
}

// ---------------------------------------------------------------------------------------------
// /context and timestamp_to_event

#[tokio::test]
async fn context_surrounds_an_event_with_tokens_for_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = room_with_bob(&server, &alice, &bob, "12").await;
    let mut sent = Vec::new();
    for i in 0..7 {
        sent.push(text(&server, &alice, &room, &format!("m{i}"), &format!("message {i}")).await);
    }
    let edit_of_3 = edit(&server, &alice, &room, "e3", &sent[3], "message three").await;

    let (status, context) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/context/{}?limit=4", sent[3]), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{context}");
    assert_eq!(context["event"]["event_id"], sent[3]);
    // Bundled aggregations apply here too.
    assert_eq!(context["event"]["unsigned"]["m.relations"]["m.replace"]["event_id"], edit_of_3);
    assert_eq!(ids(&context["events_before"]), vec![sent[2].clone(), sent[1].clone()]);
    assert_eq!(ids(&context["events_after"]), vec![sent[4].clone(), sent[5].clone()]);
    // State at the last event returned.
    let state = context["state"].as_array().expect("state");
    assert!(state.iter().any(|event| event["type"] == "m.room.create"), "{context}");
    assert!(state.iter().any(|event| event["type"] == "m.room.member" && event["state_key"] == bob.user_id));

    // The tokens continue in /messages exactly where the context ends.
    let start = context["start"].as_str().expect("start");
    let (status, before) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1&from={start}"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert_eq!(ids(&before["chunk"]), vec![sent[0].clone()]);
    let end = context["end"].as_str().expect("end");
    let (status, after) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=10&from={end}"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(ids(&after["chunk"]), vec![sent[6].clone(), edit_of_3]);

    // limit=0 still returns the event itself.
    let (status, alone) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/context/{}?limit=0", sent[3]), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{alone}");
    assert_eq!(alone["event"]["event_id"], sent[3]);
    assert!(alone.get("events_before").is_none() && alone.get("events_after").is_none(), "{alone}");
}

#[tokio::test]
async fn context_hides_what_the_user_may_not_see() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let eve = server.register("eve", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.history_visibility/"),
            alice.token(),
            json!({"history_visibility": "joined"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before_bob = text(&server, &alice, &room, "m1", "before bob").await;
    server.join(&bob, &room).await;
    let with_bob = text(&server, &alice, &room, "m2", "with bob").await;

    let url = |event: &str| format!("/_matrix/client/v3/rooms/{room}/context/{event}");
    assert_error(&server.get(&url(&before_bob), bob.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(&server.get(&url(&with_bob), eve.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(&server.get(&url("$unknown"), alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // Bob sees the event he was there for, but nothing from before he joined.
    let (status, context) = server.get(&url(&with_bob), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{context}");
    let before = context["events_before"].as_array().cloned().unwrap_or_default();
    assert!(before.iter().all(|event| event["event_id"] != before_bob), "{context}");
    assert!(before.iter().any(|event| event["type"] == "m.room.member" && event["state_key"] == bob.user_id));
}

#[tokio::test]
async fn timestamp_to_event_finds_the_closest_visible_event() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let eve = server.register("eve", PW).await;
    let room = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    // Apart in time from the room's creation and from each other.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let first = text(&server, &alice, &room, "m1", "first").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = text(&server, &alice, &room, "m2", "second").await;
    let first_ts = event_ok(&server, &alice, &room, &first).await["origin_server_ts"].as_i64().expect("ts");
    let second_ts = event_ok(&server, &alice, &room, &second).await["origin_server_ts"].as_i64().expect("ts");
    assert!(second_ts > first_ts);

    let url = |ts: i64, dir: &str| format!("/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts={ts}&dir={dir}");
    // Exactly at a timestamp, either direction finds it.
    let (status, found) = server.get(&url(first_ts, "f"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found, json!({"event_id": first, "origin_server_ts": first_ts}));
    let (_, found) = server.get(&url(second_ts, "b"), alice.token()).await;
    assert_eq!(found["event_id"], second);
    // Between the two: forwards finds the second, backwards the first.
    let (_, found) = server.get(&url(first_ts + 1, "f"), alice.token()).await;
    assert_eq!(found["event_id"], second);
    let (_, found) = server.get(&url(second_ts - 1, "b"), alice.token()).await;
    assert_eq!(found["event_id"], first);
    // Far in the future backwards: the latest event.
    let (_, found) = server.get(&url(second_ts + 3_600_000, "b"), alice.token()).await;
    assert_eq!(found["event_id"], second);

    // Nothing after the end, nothing before the room began.
    assert_error(
        &server.get(&url(second_ts + 3_600_000, "f"), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(&server.get(&url(1, "b"), alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // Outsiders learn nothing.
    assert_error(&server.get(&url(first_ts, "f"), eve.token()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // A malformed direction is the client's mistake.
    let (status, _) = server.get(&url(first_ts, "sideways"), alice.token()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn malformed_redactions_sent_through_send_are_refused() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    for version in ["10", "12"] {
        let room = server.create_room(&alice, json!({"room_version": version})).await;
        for (txn, content) in
            [("n1", json!({})), ("n2", json!({"redacts": 5})), ("n3", json!({"redacts": "not an id"}))]
        {
            let refused =
                send_raw(&server, &alice, &room, "m.room.redaction", &format!("{version}{txn}"), content).await;
            assert_error(&refused, StatusCode::BAD_REQUEST, "M_BAD_JSON");
        }
    }
    assert_eq!(count_type(&server, "m.room.redaction").await, 0);
}

#[tokio::test]
async fn redaction_keeps_exactly_what_each_room_version_keeps() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    for version in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"] {
        let v: u32 = version.parse().expect("version");
        let room = server.create_room(&alice,
            json!({"room_version": version, "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {
                "join_rule": "invite", "allow": [{"type": "m.room_membership", "room_id": "!other:hearth.test"}]}}]}),
        )
        .await;
        let (_, state) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state"), alice.token()).await;
        let id_of = |kind: &str| -> String {
            state.as_array().expect("state").iter().find(|e| e["type"] == kind).expect(kind)["event_id"]
                .as_str()
                .expect("event_id")
                .to_owned()
        };
        for kind in ["m.room.create", "m.room.power_levels", "m.room.join_rules"] {
            redact(&server, &alice, &room, &id_of(kind), &format!("{version}{kind}")).await;
        }
        let content = |kind: &str| {
            let server = &server;
            let alice = &alice;
            let room = &room;
            let kind = kind.to_owned();
            async move {
                let (status, content) =
                    server.get(&format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"), alice.token()).await;
                assert_eq!(status, StatusCode::OK, "v{version} {kind}: {content}");
                content
            }
        };
        // Create: v11+ keeps the whole content, earlier versions only `creator`.
        let create = content("m.room.create").await;
        if v >= 11 {
            assert_eq!(create["room_version"], version, "v{version}: {create}");
        } else {
            assert!(create.get("room_version").is_none(), "v{version}: {create}");
            assert_eq!(create["creator"], alice.user_id, "v{version}: {create}");
        }
        // Power levels: `invite` survives from v11 on; `ban` always does.
        let power = content("m.room.power_levels").await;
        assert!(power.get("ban").is_some(), "v{version}: {power}");
        assert_eq!(power.get("invite").is_some(), v >= 11, "v{version}: {power}");
        assert!(power.get("redact").is_some(), "v{version}: {power}");
        // Join rules: `allow` survives from v8 on.
        let rules = content("m.room.join_rules").await;
        assert_eq!(rules["join_rule"], "invite", "v{version}: {rules}");
        assert_eq!(rules.get("allow").is_some(), v >= 8, "v{version}: {rules}");
    }
}
