//! The inbound PDU pipeline, driven through its domain functions with PDUs a second server
//! ("remote.test", with a real ed25519 key made here) built and signed: what it accepts
//! reaches local clients like a local event, and what it refuses leaves nothing accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::remote_pdus::{build_remote_pdu, room_version};
use common::*;
use hearth::signing_key::SigningKey;
use hearth::testing::federation::inbound::{
    Accepted, CheckedPdu, accept_with_known_parents, check_pdu_with_keys, store_outliers,
};
use hearth::testing::rooms::build::EventTemplate;
use hearth::testing::rooms::pdu::Pdu;
use reqwest::StatusCode;
use ruma::canonical_json::CanonicalJsonValue;
use ruma::serde::Base64;
use ruma::signatures::PublicKeyMap;
use ruma::{EventId, OwnedServerName, RoomId, RoomVersionId, ServerName};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const PW: &str = "inbound-test-pw";
const BOB: &str = "@bob:remote.test";

/// The second server: its name and signing key.
struct Remote {
    name: OwnedServerName,
    key: SigningKey,
}

impl Remote {
    fn new() -> Remote {
        Remote { name: ServerName::parse("remote.test").unwrap(), key: SigningKey::generate().unwrap() }
    }

    /// The keys a receiving Hearth knows: its own and the remote's.
    fn keys(&self, server: &TestServer) -> PublicKeyMap {
        let entry =
            |key: &SigningKey| BTreeMap::from([(key.key_id(), Base64::parse(key.public_key_base64()).unwrap())]);
        BTreeMap::from([
            (self.name.to_string(), entry(&self.key)),
            (server.state.server_name.to_string(), entry(&server.state.signing_key)),
        ])
    }

    /// `sender`'s event, built and signed as this server (see `build_remote_pdu`).
    async fn build(
        &self,
        server: &TestServer,
        room: &RoomId,
        sender: &str,
        template: EventTemplate,
        parent: Option<&str>,
    ) -> Pdu {
        build_remote_pdu(server, (&self.name, &self.key), room, sender, template, parent).await
    }

    /// Checks and accepts `json` as received from this server.
    async fn send_json(&self, server: &TestServer, version: &RoomVersionId, json: &str) -> hearth::Result<Accepted> {
        let raw = RawValue::from_string(json.to_owned()).unwrap();
        let checked = check_pdu_with_keys(version, &raw, &self.keys(server))?;
        self.accept(server, &checked).await
    }

    async fn accept(&self, server: &TestServer, checked: &CheckedPdu) -> hearth::Result<Accepted> {
        let accepted = accept_with_known_parents(server.state.rooms(), &self.name, checked).await?;
        Ok(accepted.expect("every parent is stored"))
    }

    async fn send(&self, server: &TestServer, room: &RoomId, pdu: &Pdu) -> hearth::Result<Accepted> {
        self.send_json(server, &room_version(server, room).await, &pdu.canonical_json()).await
    }
}

fn member(membership: &str) -> EventTemplate {
    EventTemplate::state("m.room.member", BOB, json!({ "membership": membership }))
}

fn text(body: &str) -> EventTemplate {
    EventTemplate::message("m.room.message", json!({ "msgtype": "m.text", "body": body }))
}

/// Alice's public room (of `version`), in which bob may set state; alice's user.
async fn public_room(server: &TestServer, version: &str) -> (TestUser, ruma::OwnedRoomId) {
    let alice = server.register("alice", PW).await;
    // Since version 12 the creator's power is implicit and may not be listed.
    let users = match version {
        "12" => json!({ BOB: 50 }),
        _ => json!({ alice.user_id.clone(): 100, BOB: 50 }),
    };
    let room = server
        .create_room(
            &alice,
            json!({
                "preset": "public_chat",
                "room_version": version,
                "power_level_content_override": { "users": users },
            }),
        )
        .await;
    (alice, RoomId::parse(room).unwrap())
}

async fn stored(server: &TestServer, event_id: &EventId) -> i64 {
    server
        .count(&format!(
            "SELECT count(*) FROM events e JOIN event_ids i USING (event_nid) WHERE i.event_id = '{event_id}'"
        ))
        .await
}

/// The room's forward extremities (what its next event builds on).
async fn tips(server: &TestServer, room: &RoomId) -> Vec<String> {
    let tips = hearth::testing::db::events::forward_extremities(&server.state.pool, room.as_str()).await.unwrap();
    tips.into_iter().map(|tip| tip.event_id).collect()
}

async fn rejected(server: &TestServer, event_id: &EventId) -> i64 {
    server
        .count(&format!(
            "SELECT count(*) FROM events e JOIN event_ids i USING (event_nid)
             WHERE i.event_id = '{event_id}' AND e.rejection IS NOT NULL AND e.stream_position IS NULL"
        ))
        .await
}

/// The timeline events of `room` in alice's sync since `since`, and the next token.
async fn synced(server: &TestServer, alice: &TestUser, room: &RoomId, since: Option<&str>) -> (Vec<Value>, String) {
    let path = match since {
        Some(since) => format!("/_matrix/client/v3/sync?timeout=0&since={since}"),
        None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
    };
    let (status, body) = server.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = body["rooms"]["join"][room.as_str()]["timeline"]["events"].as_array().cloned().unwrap_or_default();
    (events, body["next_batch"].as_str().unwrap().to_owned())
}

fn count_id(events: &[Value], event_id: &EventId) -> usize {
    events.iter().filter(|event| event["event_id"] == event_id.as_str()).count()
}

#[tokio::test]
async fn a_remote_join_and_message_reach_local_sync_exactly_once_in_every_supported_version() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let alice = server.register("alice", PW).await;
    for version in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"] {
        let room = server.create_room(&alice, json!({ "preset": "public_chat", "room_version": version })).await;
        let room = RoomId::parse(room).unwrap();
        let (_, since) = synced(&server, &alice, &room, None).await;

        let join = remote.build(&server, &room, BOB, member("join"), None).await;
        let accepted = remote.send(&server, &room, &join).await.expect("the join is accepted");
        assert!(matches!(accepted, Accepted::Timeline { .. }), "v{version}: {accepted:?}");
        let message = remote.build(&server, &room, BOB, text("hello from afar"), None).await;
        let accepted = remote.send(&server, &room, &message).await.expect("the message is accepted");
        assert!(matches!(accepted, Accepted::Timeline { .. }), "v{version}");

        let (events, next) = synced(&server, &alice, &room, Some(&since)).await;
        assert_eq!(count_id(&events, &join.event_id), 1, "v{version}: {events:?}");
        assert_eq!(count_id(&events, &message.event_id), 1, "v{version}: {events:?}");
        assert_eq!(events.last().unwrap()["content"]["body"], "hello from afar");

        // Sent again (a retried transaction), it is known and nobody sees it twice.
        let again = remote.send(&server, &room, &message).await.expect("a retransmission is fine");
        assert_eq!(again, Accepted::AlreadyKnown(message.event_id.clone()));
        let (events, _) = synced(&server, &alice, &room, Some(&next)).await;
        assert_eq!(count_id(&events, &message.event_id), 0, "v{version}: delivered twice");

        // The room's next local event builds on the remote one.
        let reply = server.send_text(&alice, room.as_str(), &format!("reply{version}"), "welcome").await;
        let (status, event) =
            // Room version 3 ids use the standard base64 alphabet, `/` included.
            server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", encode(&reply)), alice.token()).await;
        assert_eq!(status, StatusCode::OK, "{event}");
        let (status, members) =
            server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), alice.token()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(members["joined"].get(BOB).is_some(), "v{version}: {members}");
    }
}

#[tokio::test]
async fn forged_signatures_bad_versions_and_oversized_pdus_are_refused_with_nothing_stored() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let (_, room) = public_room(&server, "12").await;
    let join = remote.build(&server, &room, BOB, member("join"), None).await;
    let version = room_version(&server, &room).await;

    // Signed by a key that is not remote.test's.
    let impostor = Remote { name: remote.name.clone(), key: SigningKey::generate().unwrap() };
    let forged = impostor.build(&server, &room, BOB, member("join"), None).await;
    let error = remote.send(&server, &room, &forged).await.expect_err("a forged signature");
    assert_eq!(error.errcode(), "M_FORBIDDEN", "{error}");
    assert_eq!(stored(&server, &forged.event_id).await, 0);

    // No signature of the sender's server at all.
    let mut unsigned = ruma::CanonicalJsonObject::clone(join.object().expect("a PDU's tree"));
    unsigned.remove("signatures");
    let text_of = |object| CanonicalJsonValue::Object(object).to_string();
    let error = remote.send_json(&server, &version, &text_of(unsigned)).await.expect_err("unsigned");
    assert!(["M_FORBIDDEN", "M_BAD_JSON"].contains(&error.errcode().as_str()), "{error}");

    // Unknown and unsupported room versions.
    for bad in ["0", "13", "999"] {
        let error = remote
            .send_json(&server, &RoomVersionId::try_from(bad).unwrap(), &join.canonical_json())
            .await
            .expect_err("an unsupported version");
        assert_eq!(error.errcode(), "M_UNSUPPORTED_ROOM_VERSION", "v{bad}: {error}");
    }
    // A PDU of another version than the room's.
    let error = remote.send_json(&server, &RoomVersionId::V11, &join.canonical_json()).await.expect_err("v11");
    assert!(["M_BAD_JSON", "M_FORBIDDEN"].contains(&error.errcode().as_str()), "{error}");

    // Over 65536 bytes, signatures included.
    let big = remote.build(&server, &room, BOB, text("x"), None).await;
    let mut object = ruma::CanonicalJsonObject::clone(big.object().expect("a PDU's tree"));
    object.insert("padding".into(), CanonicalJsonValue::String("p".repeat(70_000)));
    let error = remote.send_json(&server, &version, &text_of(object)).await.expect_err("too large");
    assert_eq!(error.errcode(), "M_TOO_LARGE", "{error}");

    // Not JSON, or not a PDU.
    for garbage in ["[]", "{}", r#"{"type": "m.room.message"}"#] {
        let error = remote.send_json(&server, &version, garbage).await.expect_err("garbage");
        assert_eq!(error.errcode(), "M_BAD_JSON", "{garbage}: {error}");
    }
    assert_eq!(stored(&server, &join.event_id).await, 0, "nothing was accepted");
}

#[tokio::test]
async fn a_wrong_content_hash_keeps_the_redacted_copy() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let (alice, room) = public_room(&server, "11").await;
    remote.send(&server, &room, &remote.build(&server, &room, BOB, member("join"), None).await).await.unwrap();
    let message = remote.build(&server, &room, BOB, text("the original"), None).await;
    // Content changed after signing: the signature (over the redacted form) still verifies.
    let mut object = ruma::CanonicalJsonObject::clone(message.object().expect("a PDU's tree"));
    object.insert(
        "content".into(),
        CanonicalJsonValue::try_from(json!({"msgtype": "m.text", "body": "tampered"})).unwrap(),
    );
    let json = CanonicalJsonValue::Object(object).to_string();
    let raw = RawValue::from_string(json).unwrap();
    let checked = check_pdu_with_keys(&RoomVersionId::V11, &raw, &remote.keys(&server)).unwrap();
    assert!(checked.redacted);
    assert_eq!(checked.pdu.event_id, message.event_id, "the id is the reference hash of the redacted form");
    assert!(matches!(remote.accept(&server, &checked).await.unwrap(), Accepted::Timeline { .. }));

    let (status, event) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", message.event_id), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["content"], json!({}), "neither the original nor the tampered body is served");
}

#[tokio::test]
async fn events_that_fail_auth_are_stored_as_rejected_and_never_served_or_judged_again() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let (alice, room) = public_room(&server, "10").await;
    let (_, since) = synced(&server, &alice, &room, None).await;

    // Bob has not joined: his message fails auth (the origin has no member in the room). It is
    // kept as rejected, so sending it again is refused without judging it again.
    let message = remote.build(&server, &room, BOB, text("not a member"), None).await;
    let error = remote.send(&server, &room, &message).await.expect_err("not joined");
    assert_eq!(error.errcode(), "M_FORBIDDEN", "{error}");
    assert_eq!(rejected(&server, &message.event_id).await, 1);
    let again = remote.send(&server, &room, &message).await.expect_err("rejected before");
    assert!(again.to_string().contains("rejected before"), "{again}");

    // A remote server speaking for a local user: signed by remote.test, so refused.
    let local_sender = remote.build(&server, &room, alice.user_id.as_str(), text("spoofed"), None).await;
    let error = remote.send(&server, &room, &local_sender).await.expect_err("spoofed sender");
    assert_eq!(error.errcode(), "M_FORBIDDEN", "{error}");
    assert_eq!(stored(&server, &local_sender.event_id).await, 0);

    // Joined, bob may not raise himself above his power level.
    let join = remote.build(&server, &room, BOB, member("join"), None).await;
    remote.send(&server, &room, &join).await.unwrap();
    let power = EventTemplate::state(
        "m.room.power_levels",
        "",
        json!({ "users": { BOB: 100, alice.user_id.clone(): 100 }, "users_default": 0 }),
    );
    let grab = remote.build(&server, &room, BOB, power, None).await;
    let error = remote.send(&server, &room, &grab).await.expect_err("a power grab");
    assert_eq!(error.errcode(), "M_FORBIDDEN", "{error}");
    assert_eq!(rejected(&server, &grab.event_id).await, 1);
    // The grab is no tip of the room (nothing builds on it), and bob goes on as before.
    assert_eq!(tips(&server, &room).await, vec![join.event_id.to_string()]);
    let on_top = remote.build(&server, &room, BOB, text("after the grab"), None).await;
    let accepted = remote.send(&server, &room, &on_top).await.expect("bob's next message");
    assert!(matches!(accepted, Accepted::Timeline { .. }), "{accepted:?}");

    // A room this server does not know.
    let unknown = RoomId::parse("!nowhere:remote.test").unwrap();
    let mut object = ruma::CanonicalJsonObject::clone(message.object().expect("a PDU's tree"));
    object.insert("room_id".into(), CanonicalJsonValue::String(unknown.to_string()));
    let impostor_pdu = {
        // Re-signed so only the room is wrong.
        let mut object = object;
        object.remove("signatures");
        object.remove("hashes");
        ruma::signatures::hash_and_sign_event(
            "remote.test",
            &remote.key.key_pair,
            &mut object,
            &RoomVersionId::V10.rules().unwrap().redaction,
        )
        .unwrap();
        CanonicalJsonValue::Object(object).to_string()
    };
    let error = remote.send_json(&server, &RoomVersionId::V10, &impostor_pdu).await.expect_err("unknown room");
    assert_eq!(error.errcode(), "M_NOT_FOUND", "{error}");

    let (events, _) = synced(&server, &alice, &room, Some(&since)).await;
    let bobs: Vec<&Value> = events.iter().filter(|event| event["sender"] == BOB).collect();
    assert_eq!(bobs.len(), 2, "bob's join and his message after the grab, nothing rejected: {bobs:?}");
    assert_eq!(count_id(&events, &on_top.event_id), 1);
    for refused in [&message.event_id, &grab.event_id] {
        let (status, body) =
            server.get(&format!("/_matrix/client/v3/rooms/{room}/event/{refused}"), alice.token()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "a rejected event is never served: {body}");
    }
}

#[tokio::test]
async fn an_outlier_that_arrives_through_send_joins_the_timeline_once() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let (alice, room) = public_room(&server, "11").await;
    remote.send(&server, &room, &remote.build(&server, &room, BOB, member("join"), None).await).await.unwrap();
    let (_, since) = synced(&server, &alice, &room, None).await;

    // Fetched first as an outlier (as state or an auth event would be): not in the timeline.
    let message = remote.build(&server, &room, BOB, text("first an outlier"), None).await;
    let rules = hearth::testing::rooms::rules_for(&RoomVersionId::V11).unwrap();
    let mut tx = server.state.pool.begin().await.unwrap();
    let outcome = store_outliers(&mut tx, &room, &rules, vec![message.clone()]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(outcome.accepted.len(), 1, "{outcome:?}");
    let (events, since) = synced(&server, &alice, &room, Some(&since)).await;
    assert_eq!(count_id(&events, &message.event_id), 0, "an outlier is not served: {events:?}");

    // Then it arrives through /send: judged against the state before it, it takes its place.
    let accepted = remote.send(&server, &room, &message).await.expect("the outlier is accepted");
    assert!(matches!(accepted, Accepted::Timeline { .. }), "{accepted:?}");
    let (events, next) = synced(&server, &alice, &room, Some(&since)).await;
    assert_eq!(count_id(&events, &message.event_id), 1, "{events:?}");
    let again = remote.send(&server, &room, &message).await.expect("a retransmission is fine");
    assert_eq!(again, Accepted::AlreadyKnown(message.event_id.clone()));
    let (events, _) = synced(&server, &alice, &room, Some(&next)).await;
    assert_eq!(count_id(&events, &message.event_id), 0, "delivered twice: {events:?}");
    assert_eq!(stored(&server, &message.event_id).await, 1);

    // The room goes on from it: it is the room's one tip.
    assert_eq!(tips(&server, &room).await, vec![message.event_id.to_string()]);
}

#[tokio::test]
async fn a_server_the_acl_denies_is_refused() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let (alice, room) = public_room(&server, "12").await;
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.server_acl/"),
            alice.token(),
            json!({ "allow": ["*"], "deny": ["remote.test"], "allow_ip_literals": false }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let join = remote.build(&server, &room, BOB, member("join"), None).await;
    let error = remote.send(&server, &room, &join).await.expect_err("denied");
    assert_eq!(error.errcode(), "M_FORBIDDEN", "{error}");
    assert_eq!(stored(&server, &join.event_id).await, 0);
    let error =
        hearth::testing::federation::acl::check(&server.state.pool, &room, &remote.name).await.expect_err("denied");
    assert_eq!(error.errcode(), "M_FORBIDDEN");
    hearth::testing::federation::acl::check(
        &server.state.pool,
        &room,
        ServerName::parse("other.test").unwrap().as_ref(),
    )
    .await
    .expect("others are allowed");
}

#[tokio::test]
async fn an_event_the_current_state_forbids_is_soft_failed_and_not_served() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let (alice, room) = public_room(&server, "12").await;
    let join = remote.build(&server, &room, BOB, member("join"), None).await;
    remote.send(&server, &room, &join).await.unwrap();
    let before_ban = remote.build(&server, &room, BOB, text("before the ban"), None).await;
    remote.send(&server, &room, &before_ban).await.unwrap();
    let (status, body) =
        server.post(&format!("/_matrix/client/v3/rooms/{room}/ban"), alice.token(), json!({ "user_id": BOB })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, since) = synced(&server, &alice, &room, None).await;

    // Bob's server did not hear of the ban: its next message builds on what it knew.
    let late = remote.build(&server, &room, BOB, text("after the ban"), Some(before_ban.event_id.as_str())).await;
    let accepted = remote.send(&server, &room, &late).await.expect("allowed by the state before it");
    assert_eq!(accepted, Accepted::SoftFailed(late.event_id.clone()));
    assert_eq!(stored(&server, &late.event_id).await, 1, "kept, for the DAG");
    let (events, _) = synced(&server, &alice, &room, Some(&since)).await;
    assert_eq!(count_id(&events, &late.event_id), 0, "{events:?}");
    let (status, page) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let chunk = page["chunk"].as_array().unwrap();
    assert_eq!(count_id(chunk, &late.event_id), 0, "not in the history either");
    assert_eq!(count_id(chunk, &before_ban.event_id), 1, "{page}");
    let tips = hearth::testing::db::events::forward_extremities(&server.state.pool, room.as_str()).await.unwrap();
    assert!(tips.iter().all(|tip| tip.event_id != late.event_id.as_str()), "not a forward extremity");
}

#[tokio::test]
async fn a_fork_from_a_remote_server_is_resolved_by_state_resolution() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let (alice, room) = public_room(&server, "12").await;
    remote.send(&server, &room, &remote.build(&server, &room, BOB, member("join"), None).await).await.unwrap();
    let fork_point = hearth::testing::db::events::forward_extremities(&server.state.pool, room.as_str()).await.unwrap();
    let fork_point = fork_point[0].event_id.clone();

    // Bob names the room; before his event arrives, alice (later) names it too.
    let template = EventTemplate::state("m.room.name", "", json!({ "name": "bob's" }));
    let name = remote.build(&server, &room, BOB, template, Some(&fork_point)).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"),
            alice.token(),
            json!({ "name": "alice's" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(matches!(remote.send(&server, &room, &name).await.unwrap(), Accepted::Timeline { .. }));
    let tips = hearth::testing::db::events::forward_extremities(&server.state.pool, room.as_str()).await.unwrap();
    assert_eq!(tips.len(), 2, "the DAG has two tips");

    // Neither name is a power event: resolution orders them along the power-level mainline
    // (the same for both), then by timestamp, so alice's later name stands although bob's
    // arrived last.
    let (status, current) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{current}");
    assert_eq!(current["name"], "alice's");

    // The next local event merges both tips.
    let merged = server.send_text(&alice, room.as_str(), "merge", "merged").await;
    let json: String =
        sqlx::query_scalar("SELECT e.json FROM events e JOIN event_ids i USING (event_nid) WHERE i.event_id = $1")
            .bind(&merged)
            .fetch_one(&server.state.pool)
            .await
            .unwrap();
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["prev_events"].as_array().map(Vec::len), Some(2), "{json}");
}
