//! Membership across servers, served (issue #16 item 6): a user of another server asks Hearth
//! for a membership template (`make_join`/`make_leave`/`make_knock`), signs it with its
//! server's key and sends it back (`send_*`). Here the other server is a signing key the test
//! holds and the requests are the domain calls the federation handlers make, so each outcome
//! is checked as Hearth's own users observe it (members, sync) and as the joining server would
//! (the state and auth chain it is answered with).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;

use common::{TestServer, TestUser};
use hearth::signing_key::SigningKey;
use hearth::testing::federation::membership::{RemoteMembership, make_membership, send_join, send_membership};
use hearth::testing::rooms::build::sign_new_event;
use reqwest::StatusCode;
use ruma::canonical_json::CanonicalJsonObject;
use ruma::serde::Base64;
use ruma::signatures::PublicKeyMap;
use ruma::{EventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomVersionId, ServerName};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const REMOTE: &str = "remote.test";

/// The other server: its name and signing key.
struct Remote {
    name: OwnedServerName,
    key: SigningKey,
}

impl Remote {
    fn new() -> Remote {
        Remote { name: ServerName::parse(REMOTE).unwrap(), key: SigningKey::generate().unwrap() }
    }

    fn user(&self, localpart: &str) -> OwnedUserId {
        OwnedUserId::try_from(format!("@{localpart}:{REMOTE}")).unwrap()
    }

    /// The keys Hearth verifies with: this server's, and Hearth's own (restricted joins).
    fn keys(&self, server: &TestServer) -> PublicKeyMap {
        let mut keys = PublicKeyMap::new();
        for (name, key) in
            [(REMOTE.to_owned(), &self.key), (server.state.server_name.to_string(), &server.state.signing_key)]
        {
            let public = Base64::parse(key.public_key_base64()).unwrap();
            keys.insert(name, BTreeMap::from([(key.key_id(), public)]));
        }
        keys
    }

    /// Asks for a template and signs it, as a joining server does.
    async fn signed(
        &self,
        server: &TestServer,
        room: &str,
        user: &OwnedUserId,
        membership: RemoteMembership,
    ) -> hearth::Result<(OwnedRoomId, String, String)> {
        let room_id = OwnedRoomId::try_from(room).unwrap();
        let ver = [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];
        let supported = (membership != RemoteMembership::Leave).then_some(&ver[..]);
        let template = make_membership(server.state.rooms(), &self.name, &room_id, user, membership, supported).await?;
        let object: CanonicalJsonObject = serde_json::from_str(template.event.get()).unwrap();
        let rules = template.room_version.rules().unwrap();
        let pdu = sign_new_event(object, &rules, &self.name, &self.key).unwrap();
        Ok((room_id, pdu.event_id.to_string(), pdu.canonical_json()))
    }

    /// The whole round: template, signature, send.
    async fn change(
        &self,
        server: &TestServer,
        room: &str,
        user: &OwnedUserId,
        membership: RemoteMembership,
    ) -> hearth::Result<hearth::testing::federation::membership::JoinedRoomState> {
        let (room_id, event_id, json) = self.signed(server, room, user, membership).await?;
        let raw = serde_json::value::RawValue::from_string(json).unwrap();
        let event_id = EventId::parse(event_id).unwrap();
        send_membership(server.state.rooms(), &self.keys(server), &self.name, (&room_id, &event_id), &raw, membership)
            .await
    }
}

/// A join asking for a partial state (`omit_members`, "faster joins").
async fn join_omitting_members(
    remote: &Remote,
    server: &TestServer,
    room: &str,
    user: &OwnedUserId,
) -> hearth::testing::federation::membership::JoinedRoomState {
    let (room_id, event_id, json) = remote.signed(server, room, user, RemoteMembership::Join).await.unwrap();
    let raw = serde_json::value::RawValue::from_string(json).unwrap();
    let event_id = EventId::parse(event_id).unwrap();
    send_join(server.state.rooms(), &remote.keys(server), &remote.name, (&room_id, &event_id), &raw, true)
        .await
        .unwrap()
}

/// The state keys of the member events among `events`.
fn members_in(events: &[Box<serde_json::value::RawValue>]) -> Vec<String> {
    let mut members: Vec<String> = events
        .iter()
        .map(|event| serde_json::from_str::<Value>(event.get()).unwrap())
        .filter(|event| event["type"] == "m.room.member")
        .map(|event| event["state_key"].as_str().unwrap().to_owned())
        .collect();
    members.sort();
    members
}

async fn joined_members(server: &TestServer, user: &TestUser, room: &str) -> Vec<String> {
    let (status, body) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["joined"].as_object().unwrap().keys().cloned().collect()
}

fn types_of(events: &[Box<serde_json::value::RawValue>]) -> Vec<String> {
    events
        .iter()
        .map(|event| serde_json::from_str::<Value>(event.get()).unwrap()["type"].as_str().unwrap().to_owned())
        .collect()
}

#[track_caller]
fn assert_refused<T>(outcome: hearth::Result<T>, errcode: &str) {
    match outcome {
        Ok(_) => panic!("expected {errcode}, the change was allowed"),
        Err(error) => assert_eq!(error.errcode(), errcode, "{error}"),
    }
}

#[tokio::test]
async fn a_remote_user_joins_a_public_room_sees_its_state_and_leaves() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let alice = server.register("alice", "alice's password").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat", "name": "Tea"})).await;
    let bob = remote.user("bob");

    let answer = remote.change(&server, &room, &bob, RemoteMembership::Join).await.unwrap();
    // The joining server builds its copy of the room from this answer.
    let state_types = types_of(&answer.state);
    for wanted in ["m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.name"] {
        assert!(state_types.iter().any(|kind| kind == wanted), "{wanted} missing from the state: {state_types:?}");
    }
    assert!(
        types_of(&answer.auth_chain).iter().any(|kind| kind == "m.room.create"),
        "the auth chain reaches the create event"
    );
    assert_eq!(answer.servers_in_room, vec!["hearth.test".to_owned(), REMOTE.to_owned()]);
    assert!(answer.event.is_none(), "only restricted joins are countersigned");

    let members = joined_members(&server, &alice, &room).await;
    assert!(members.contains(&bob.to_string()), "{members:?}");
    let (status, sync) = server.get("/_matrix/client/v3/sync", alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap();
    assert!(
        timeline.iter().any(|event| event["state_key"] == bob.as_str() && event["content"]["membership"] == "join"),
        "alice's sync shows bob's join: {timeline:?}"
    );

    remote.change(&server, &room, &bob, RemoteMembership::Leave).await.unwrap();
    assert!(!joined_members(&server, &alice, &room).await.contains(&bob.to_string()));
}

#[tokio::test]
async fn templates_are_refused_where_the_join_could_not_be() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let alice = server.register("alice", "alice's password").await;
    let private = server.create_room(&alice, json!({"preset": "private_chat"})).await;
    let bob = remote.user("bob");
    let room_id = OwnedRoomId::try_from(private.as_str()).unwrap();

    // An invite-only room: the auth rules refuse the join before anything is signed.
    assert_refused(remote.signed(&server, &private, &bob, RemoteMembership::Join).await, "M_FORBIDDEN");
    // A server asking on behalf of another server's user.
    let carol = OwnedUserId::try_from("@carol:elsewhere.test").unwrap();
    assert_refused(
        make_membership(server.state.rooms(), &remote.name, &room_id, &carol, RemoteMembership::Join, None).await,
        "M_FORBIDDEN",
    );
    // A server that supports none of the room's version.
    let ver = [RoomVersionId::V6];
    assert_refused(
        make_membership(server.state.rooms(), &remote.name, &room_id, &bob, RemoteMembership::Join, Some(&ver)).await,
        "M_INCOMPATIBLE_ROOM_VERSION",
    );
    // A room Hearth does not know.
    let unknown = OwnedRoomId::try_from("!nowhere:hearth.test").unwrap();
    assert_refused(
        make_membership(server.state.rooms(), &remote.name, &unknown, &bob, RemoteMembership::Join, None).await,
        "M_NOT_FOUND",
    );
    assert_eq!(joined_members(&server, &alice, &private).await, vec![alice.user_id.clone()]);
}

#[tokio::test]
async fn forged_and_misdirected_joins_are_refused_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let alice = server.register("alice", "alice's password").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let bob = remote.user("bob");
    let events_before = server.count("SELECT count(*) FROM events").await;

    // Signed by a key that is not the remote server's.
    let forger = Remote { name: remote.name.clone(), key: SigningKey::generate().unwrap() };
    let (room_id, event_id, json) = forger.signed(&server, &room, &bob, RemoteMembership::Join).await.unwrap();
    let raw = serde_json::value::RawValue::from_string(json.clone()).unwrap();
    let event_id = EventId::parse(event_id).unwrap();
    let rooms = server.state.rooms();
    let join = RemoteMembership::Join;
    let keys = remote.keys(&server);
    assert_refused(send_membership(rooms, &keys, &remote.name, (&room_id, &event_id), &raw, join).await, "M_FORBIDDEN");

    // A validly signed join, but sent by another server, under another id, or as a leave.
    let (room_id, event_id, json) = remote.signed(&server, &room, &bob, RemoteMembership::Join).await.unwrap();
    let raw = serde_json::value::RawValue::from_string(json).unwrap();
    let event_id = EventId::parse(event_id).unwrap();
    let other = ServerName::parse("elsewhere.test").unwrap();
    assert_refused(send_membership(rooms, &keys, &other, (&room_id, &event_id), &raw, join).await, "M_FORBIDDEN");
    let wrong_id = EventId::parse("$notthisone").unwrap();
    assert_refused(send_membership(rooms, &keys, &remote.name, (&room_id, &wrong_id), &raw, join).await, "M_BAD_JSON");
    let leave = RemoteMembership::Leave;
    assert_refused(send_membership(rooms, &keys, &remote.name, (&room_id, &event_id), &raw, leave).await, "M_BAD_JSON");

    assert_eq!(server.count("SELECT count(*) FROM events").await, events_before, "nothing was stored");
    assert!(!joined_members(&server, &alice, &room).await.contains(&bob.to_string()));
}

#[tokio::test]
async fn remote_members_can_be_kicked_and_banned_and_a_ban_keeps_them_out() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let alice = server.register("alice", "alice's password").await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let bob = remote.user("bob");
    remote.change(&server, &room, &bob, RemoteMembership::Join).await.unwrap();

    let kick = json!({"user_id": bob, "reason": "too loud"});
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/kick"), alice.token(), kick).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!joined_members(&server, &alice, &room).await.contains(&bob.to_string()));

    // A kick is no ban: bob may come back.
    remote.change(&server, &room, &bob, RemoteMembership::Join).await.unwrap();
    assert!(joined_members(&server, &alice, &room).await.contains(&bob.to_string()));

    let ban = json!({"user_id": bob});
    let (status, body) = server.post(&format!("/_matrix/client/v3/rooms/{room}/ban"), alice.token(), ban).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!joined_members(&server, &alice, &room).await.contains(&bob.to_string()));
    assert_refused(remote.signed(&server, &room, &bob, RemoteMembership::Join).await, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_restricted_room_admits_a_remote_member_of_the_allowed_room_with_our_countersignature() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let alice = server.register("alice", "alice's password").await;
    let space = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let restricted = server
        .create_room(
            &alice,
            json!({"preset": "private_chat", "initial_state": [{
                "type": "m.room.join_rules", "state_key": "",
                "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}
            }]}),
        )
        .await;
    let bob = remote.user("bob");

    // Not in the allowed room yet: no local member can vouch for bob.
    assert_refused(remote.signed(&server, &restricted, &bob, RemoteMembership::Join).await, "M_FORBIDDEN");

    remote.change(&server, &space, &bob, RemoteMembership::Join).await.unwrap();
    let answer = remote.change(&server, &restricted, &bob, RemoteMembership::Join).await.unwrap();
    let event: Value = serde_json::from_str(answer.event.expect("the countersigned join").get()).unwrap();
    assert_eq!(event["content"]["join_authorised_via_users_server"], alice.user_id);
    assert!(event["signatures"]["hearth.test"].is_object(), "Hearth signed the join: {event}");
    assert!(event["signatures"][REMOTE].is_object(), "the joining server's signature stays: {event}");
    assert!(joined_members(&server, &alice, &restricted).await.contains(&bob.to_string()));
}

#[tokio::test]
async fn a_remote_user_knocks_and_the_room_sees_the_knock() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let alice = server.register("alice", "alice's password").await;
    let room = server
        .create_room(
            &alice,
            json!({"preset": "private_chat", "initial_state": [{
                "type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}
            }]}),
        )
        .await;
    let bob = remote.user("bob");
    remote.change(&server, &room, &bob, RemoteMembership::Knock).await.unwrap();
    let (status, body) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{bob}"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["membership"], "knock");
    // Knocking is no joining.
    assert!(!joined_members(&server, &alice, &room).await.contains(&bob.to_string()));
}

#[tokio::test]
async fn a_join_that_omits_members_gets_the_state_without_them_and_a_lean_auth_chain() {
    let server = TestServer::start().await;
    let remote = Remote::new();
    let alice = server.register("alice", "alice's password").await;
    let carol = server.register("carol", "carol's password").await;
    let named = server.create_room(&alice, json!({"preset": "public_chat", "name": "Tea"})).await;
    let nameless = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    for room in [&named, &nameless] {
        server.join(&carol, room).await;
    }

    // A named room: no member event in the state; the servers to ask for the rest are named.
    let answer = join_omitting_members(&remote, &server, &named, &remote.user("bob")).await;
    assert!(answer.members_omitted);
    assert_eq!(members_in(&answer.state), Vec::<String>::new());
    assert!(types_of(&answer.state).iter().any(|kind| kind == "m.room.name"));
    assert_eq!(answer.servers_in_room, vec![server.state.server_name.to_string(), REMOTE.to_owned()]);
    // The auth chain still holds what the state's events cite (the creator's join authorises
    // the room's first events), and nothing the state already carries.
    assert!(members_in(&answer.auth_chain).contains(&alice.user_id), "{:?}", types_of(&answer.auth_chain));
    let state_texts: Vec<&str> = answer.state.iter().map(|event| event.get()).collect();
    assert!(answer.auth_chain.iter().all(|event| !state_texts.contains(&event.get())), "no event twice");
    // Carol's join authorises nothing the joiner needs: left out everywhere.
    assert!(!members_in(&answer.auth_chain).contains(&carol.user_id));

    // A nameless room: the members a client names it by (the heroes) are kept.
    let answer = join_omitting_members(&remote, &server, &nameless, &remote.user("dave")).await;
    assert!(answer.members_omitted);
    let mut heroes = vec![alice.user_id.clone(), carol.user_id.clone()];
    heroes.sort();
    assert_eq!(members_in(&answer.state), heroes);

    // The control: a join that does not ask gets every member.
    let full = remote.change(&server, &named, &remote.user("erin"), RemoteMembership::Join).await.unwrap();
    assert!(!full.members_omitted);
    let mut everyone = vec![alice.user_id.clone(), carol.user_id.clone(), format!("@bob:{REMOTE}")];
    everyone.sort();
    assert_eq!(members_in(&full.state), everyone);
}
