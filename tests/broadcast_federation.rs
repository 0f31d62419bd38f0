//! Broadcasts to users of other servers (issue #21): a creator may add to a list anyone who
//! shares a room with them, whatever their server. A recipient with a DM already gets the
//! message there (sent on by the federation sender like any message); one without gets an
//! invitation through their server and the message once they join; one whose server refuses
//! the invitation (they ignore the creator) is skipped without the creator learning why; and
//! nobody who shares no room can be added at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::federation::FederatedPair;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PW: &str = "remote-broadcast-password";
const LISTS: &str = "/_hearth/client/v1/broadcast/lists";

/// Polls `probe` until it returns something, for at most 30 s.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bodies of `sender`'s messages in `room`, as `user` pages back through them on `server`
/// (fetching from the other server what it lacks).
async fn bodies_from(server: &TestServer, user: &TestUser, room: &str, sender: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100", encode(room));
    let (status, page) = server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut bodies: Vec<String> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "m.room.message" && event["sender"] == sender)
        .map(|event| event["content"]["body"].as_str().unwrap().to_owned())
        .collect();
    bodies.reverse();
    bodies
}

/// The rooms `user` is invited to, as their `/sync` shows them.
async fn invites(server: &TestServer, user: &TestUser) -> Vec<(String, Value)> {
    let (status, sync) = server.get("/_matrix/client/v3/sync?timeout=0", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    sync["rooms"]["invite"]
        .as_object()
        .map(|rooms| rooms.iter().map(|(room, entry)| (room.clone(), entry.clone())).collect())
        .unwrap_or_default()
}

async fn broadcast(server: &TestServer, creator: &TestUser, list: &str, txn: &str, text: &str) -> Value {
    let path = format!("{LISTS}/{list}/send/{txn}");
    let (status, started) = server.put(&path, creator.token(), json!({"msgtype": "m.text", "body": text})).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let progress = format!("/_hearth/client/v1/broadcast/broadcasts/{}", started["broadcast_id"].as_str().unwrap());
    eventually("the broadcast's end", || async {
        let (status, body) = server.get(&progress, creator.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body["state"] == "done").then_some(body)
    })
    .await
}

async fn joined_rooms(server: &TestServer, user: &TestUser) -> usize {
    let (status, body) = server.get("/_matrix/client/v3/joined_rooms", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["joined_rooms"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_users_of_another_server_who_share_a_room_with_the_creator() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a.server, &pair.b.server);
    // Cleo (a creator on A) and bob (on B) share a public room of A's.
    let (cleo, bob, public_room) = pair.alice_and_bob_in_a_room(PW).await;
    let user_id = ruma::UserId::parse(&cleo.user_id).unwrap();
    hearth::testing::creators::flag::set_creator(&a.state.pool, &user_id, true).await.unwrap();
    let via_a = encode(pair.a.name().as_str());

    // Carol (on B) has a DM with cleo already, made from B.
    let carol = b.register("carol", PW).await;
    let dm = b
        .create_room(&carol, json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [cleo.user_id]}))
        .await;
    let via_b = encode(pair.b.name().as_str());
    eventually("cleo's invitation from B", || async {
        invites(a, &cleo).await.iter().any(|(room, _)| *room == dm).then_some(())
    })
    .await;
    let (status, body) =
        a.post(&format!("/_matrix/client/v3/join/{}?via={via_b}", encode(&dm)), cleo.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "cleo joins carol's DM: {body}");

    // Dave (on B) shares the public room but ignores cleo; erin (on B) shares nothing.
    let dave = b.register("dave", PW).await;
    let (status, body) =
        b.post(&format!("/_matrix/client/v3/join/{}?via={via_a}", encode(&public_room)), dave.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ignore = json!({"ignored_users": {cleo.user_id.clone(): {}}});
    let path = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", encode(&dave.user_id));
    assert_eq!(b.put(&path, dave.token(), ignore).await.0, StatusCode::OK);
    let erin = b.register("erin", PW).await;
    // A learns of dave's join through B's transaction.
    eventually("dave's join on A", || async {
        let path = format!("/_matrix/client/v3/rooms/{}/joined_members", encode(&public_room));
        let (_, members) = a.get(&path, cleo.token()).await;
        members["joined"].get(&dave.user_id).map(|_| ())
    })
    .await;

    let (status, created) = a.post(LISTS, cleo.token(), json!({"name": "everywhere"})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let list = created["list_id"].as_str().unwrap().to_owned();
    let members = format!("{LISTS}/{list}/members");
    let with_erin = json!({"user_ids": [bob.user_id, erin.user_id]});
    let refused = a.post(&members, cleo.token(), with_erin).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert!(refused.1["error"].as_str().unwrap().contains(&erin.user_id), "{}", refused.1);
    let everyone = json!({"user_ids": [bob.user_id, carol.user_id, dave.user_id]});
    assert_eq!(a.post(&members, cleo.token(), everyone).await, (StatusCode::OK, json!({"added": 3})));

    let done = broadcast(a, &cleo, &list, "first", "hello from A").await;
    assert_eq!((done["total"].clone(), done["sent"].clone()), (json!(3), json!(2)), "{done}");
    assert_eq!((done["skipped"].clone(), done["failed"].clone()), (json!(1), json!(0)), "{done}");

    // Carol reads it in her DM on B.
    eventually("the message in carol's DM on B", || async {
        let bodies = bodies_from(b, &carol, &dm, &cleo.user_id).await;
        (!bodies.is_empty()).then_some(bodies)
    })
    .await;
    assert_eq!(bodies_from(b, &carol, &dm, &cleo.user_id).await, vec!["hello from A"]);

    // Bob is invited to a new DM, marked as one; once he joins, the message is there.
    let (bob_dm, invite) = eventually("bob's invitation", || async { invites(b, &bob).await.into_iter().next() }).await;
    let own_member = own_invite_member(&invite, &bob.user_id).expect("the invitation's own member event");
    assert_eq!(own_member["content"]["is_direct"], true, "{own_member}");
    assert_eq!(own_member["sender"], cleo.user_id);
    let (status, body) = b.post(&format!("/_matrix/client/v3/join/{}", encode(&bob_dm)), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "bob joins his new DM: {body}");
    assert_eq!(bodies_from(b, &bob, &bob_dm, &cleo.user_id).await, vec!["hello from A"]);

    // Dave, who ignores cleo, got no invitation, and cleo kept no room for him.
    assert!(invites(b, &dave).await.is_empty(), "dave was invited");
    assert!(invites(b, &erin).await.is_empty(), "erin was invited");
    assert_eq!(joined_rooms(a, &cleo).await, 3, "the public room, carol's DM and bob's");

    // A second broadcast finds both DMs: nothing new is made, each gets the message once.
    let again = broadcast(a, &cleo, &list, "second", "again from A").await;
    assert_eq!(
        (again["sent"].clone(), again["skipped"].clone(), again["failed"].clone()),
        (json!(2), json!(1), json!(0))
    );
    for (user, room) in [(&bob, &bob_dm), (&carol, &dm)] {
        let bodies = eventually("the second message on B", || async {
            let bodies = bodies_from(b, user, room, &cleo.user_id).await;
            (bodies.len() >= 2).then_some(bodies)
        })
        .await;
        assert_eq!(bodies, vec!["hello from A", "again from A"], "{}", user.user_id);
    }
    assert_eq!(joined_rooms(a, &cleo).await, 3);
    assert!(invites(b, &dave).await.is_empty());
}

/// Recipients whose server is down fail, and cost the creator no rooms: the room made for an
/// invitation that could not be delivered is left again, and once the server has proved
/// unreachable its other recipients are not tried (no room is made for them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_on_a_server_that_is_down_fail_without_leaving_rooms_behind() {
    let pair = FederatedPair::start().await;
    let (cleo, bob, public_room) = pair.alice_and_bob_in_a_room(PW).await;
    let user_id = ruma::UserId::parse(&cleo.user_id).unwrap();
    hearth::testing::creators::flag::set_creator(&pair.a.server.state.pool, &user_id, true).await.unwrap();
    let join = format!("/_matrix/client/v3/join/{}?via={}", encode(&public_room), encode(pair.a.name().as_str()));
    let mut recipients = vec![bob.user_id.clone()];
    for n in 0..11 {
        let fan = pair.b.server.register(&format!("fan{n}"), PW).await;
        let (status, body) = pair.b.server.post(&join, fan.token(), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        recipients.push(fan.user_id);
    }
    // B is in the room already, so it makes their joins itself and sends them on to A.
    eventually("the fans' joins on A", || async {
        let path = format!("/_matrix/client/v3/rooms/{}/joined_members", encode(&public_room));
        let (_, members) = pair.a.server.get(&path, cleo.token()).await;
        let joined = members["joined"].as_object().map_or(0, serde_json::Map::len);
        (joined == 13).then_some(())
    })
    .await;
    let FederatedPair { a, b, ca: _ca } = pair;
    let _stopped_b = b.stop().await;
    let a = &a.server;
    // Every one of them is known on A as a member of cleo's room, so every one may be listed.
    let (status, created) = a.post(LISTS, cleo.token(), json!({"name": "over there"})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let list = created["list_id"].as_str().unwrap().to_owned();
    let added = a.post(&format!("{LISTS}/{list}/members"), cleo.token(), json!({"user_ids": recipients})).await;
    assert_eq!(added, (StatusCode::OK, json!({"added": 12})));

    let done = broadcast(a, &cleo, &list, "down", "anyone there?").await;
    let counts = [&done["total"], &done["sent"], &done["skipped"], &done["failed"]];
    assert_eq!(counts, [&json!(12), &json!(0), &json!(0), &json!(12)], "{done}");
    assert_eq!(joined_rooms(a, &cleo).await, 1, "only the public room: every room made for them was left");
    let rooms_made = a
        .count(&format!(
            "SELECT count(*) FROM events WHERE event_type = 'm.room.create' AND sender = '{}'",
            cleo.user_id
        ))
        .await;
    assert!(rooms_made - 1 < 12, "{} rooms made for 12 recipients of a server that is down", rooms_made - 1);
}
