//! Creators and tips (issue #21) end to end: the operator's creator flag in the profile, a
//! member tipping a creator through `PUT /_hearth/client/v1/rooms/{roomId}/tip/{txnId}`
//! against a real billing webhook on loopback (`common::billing`) that approves, declines,
//! stalls, or charges and drops the connection; retries and a restart never charge twice and
//! never lose an approved tip; a standard client (matrix-sdk) sees the tip as text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::billing::{Billing, Mode};
use common::node::{Api, start_node_with};
use common::*;
use hearth::signing_key::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const PW: &str = "tip-test-password";

/// A creator (`bob`) and a member (`alice`) in bob's public room, on a server whose tips go
/// to `billing`.
async fn creator_and_member(billing: &Billing) -> (TestServer, TestUser, TestUser, String) {
    let server = TestServer::start_with(|config| billing.configure(config)).await;
    let (users, room) = server.public_room_of(&["bob", "alice"], PW, json!({})).await;
    make_creator(&server.state.pool, &users[0]).await;
    (server, users[0].clone(), users[1].clone(), room)
}

async fn make_creator(pool: &sqlx::PgPool, user: &TestUser) {
    let user_id = ruma::UserId::parse(&user.user_id).unwrap();
    hearth::testing::creators::flag::set_creator(&pool.clone().into(), &user_id, true)
        .await
        .expect("the operator makes a creator");
}

fn tip_path(room: &str, txn: &str) -> String {
    format!("/_hearth/client/v1/rooms/{}/tip/{txn}", encode(room))
}

async fn tip(api: &impl Api, from: &TestUser, room: &str, txn: &str, body: Value) -> (StatusCode, Value) {
    api.call(Method::PUT, &tip_path(room, txn), from.token(), Some(body)).await
}

fn five_to(creator: &TestUser) -> Value {
    json!({"to": creator.user_id, "amount": "5.00", "currency": "USD", "message": "great stream!"})
}

/// The tip events in the room, as `user` reads its history.
async fn tip_events(api: &impl Api, user: &TestUser, room: &str) -> Vec<Value> {
    let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100", encode(room));
    let (status, body) = api.call(Method::GET, &path, user.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let chunk = body["chunk"].as_array().cloned().unwrap_or_default();
    chunk.into_iter().filter(|event| event["content"]["msgtype"] == "io.hearth.tip").collect()
}

#[tokio::test]
async fn the_creator_flag_is_the_operators_and_shows_in_the_profile() {
    let server = TestServer::start().await;
    let bob = server.register("bob", PW).await;
    let profile = |user: &TestUser| format!("/_matrix/client/v3/profile/{}", user.user_id);
    let (_, before) = server.get(&profile(&bob), None).await;
    assert!(before.get("io.hearth.creator").is_none(), "{before}");

    make_creator(&server.state.pool, &bob).await;
    let (status, after) = server.get(&profile(&bob), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after["io.hearth.creator"], true, "{after}");

    // Members cannot give themselves the badge, nor take it off.
    let field = format!("{}/io.hearth.creator", profile(&bob));
    let refused = server.put(&field, bob.token(), json!({"io.hearth.creator": false})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let refused = server.delete(&field, bob.token(), None).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(server.get(&profile(&bob), None).await.1["io.hearth.creator"], true);

    let user_id = ruma::UserId::parse(&bob.user_id).unwrap();
    hearth::testing::creators::flag::set_creator(&server.state.pool, &user_id, false).await.unwrap();
    let (_, off) = server.get(&profile(&bob), None).await;
    assert!(off.get("io.hearth.creator").is_none(), "{off}");
}

#[tokio::test]
async fn an_approved_tip_appears_once_notifies_the_creator_and_is_listed() {
    let billing = Billing::start().await;
    let (server, bob, alice, room) = creator_and_member(&billing).await;

    let (status, sent) = tip(&server, &alice, &room, "t1", five_to(&bob)).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let event_id = sent["event_id"].as_str().expect("event_id").to_owned();
    let tip_id = sent["tip_id"].as_str().expect("tip_id").to_owned();

    // The webhook was asked once, signed, with the tip's facts and its id as idempotency key.
    let received = billing.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(received[0].signed, "the body carries a valid X-Hearth-Signature");
    let charge = &received[0].body;
    assert_eq!(charge["idempotency_key"], tip_id.as_str());
    assert_eq!(charge["tip_id"], tip_id.as_str());
    assert_eq!(charge["from"], alice.user_id.as_str());
    assert_eq!(charge["to"], bob.user_id.as_str());
    assert_eq!(charge["room_id"], room.as_str());
    assert_eq!((charge["amount"].as_str(), charge["currency"].as_str()), (Some("5.00"), Some("USD")));

    // Sending the same transaction again is the same tip: no second charge, no second event.
    let (status, again) = tip(&server, &alice, &room, "t1", five_to(&bob)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, sent);
    assert_eq!(billing.received().len(), 1, "a retransmission does not ask the webhook again");

    // Bob sees one tip in the room, as text any client shows, mentioning him.
    let events = tip_events(&server, &bob, &room).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["event_id"], event_id.as_str());
    assert_eq!(events[0]["type"], "m.room.message");
    assert_eq!(events[0]["content"]["body"], "alice tipped bob 5.00 USD: great stream!");
    assert_eq!(events[0]["content"]["io.hearth.tip"]["amount"], "5.00");
    // ...and was notified of it (the mention makes it highlight in a group room).
    let (_, notifications) = server.get("/_matrix/client/v3/notifications", bob.token()).await;
    let notified: Vec<&Value> = notifications["notifications"].as_array().unwrap().iter().collect();
    assert!(notified.iter().any(|n| n["event"]["event_id"] == event_id.as_str()), "{notifications:#}");

    // A second tip in another currency, then Bob's list: newest first, totals per currency.
    let second = json!({"to": bob.user_id, "amount": "2.5", "currency": "EUR"});
    assert_eq!(tip(&server, &alice, &room, "t2", second).await.0, StatusCode::OK);
    let third = json!({"to": bob.user_id, "amount": "1.25", "currency": "USD"});
    assert_eq!(tip(&server, &alice, &room, "t3", third).await.0, StatusCode::OK);
    assert_eq!(billing.charges(), 3);
    let (status, page) = server.get("/_hearth/client/v1/tips/received?limit=2", bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let amounts: Vec<&str> = page["chunk"].as_array().unwrap().iter().map(|t| t["amount"].as_str().unwrap()).collect();
    assert_eq!(amounts, ["1.25", "2.5"], "{page:#}");
    assert_eq!(page["totals"]["USD"], json!({"amount": "6.25", "count": 2}), "{page:#}");
    assert_eq!(page["totals"]["EUR"], json!({"amount": "2.5", "count": 1}), "{page:#}");
    let next = page["next_batch"].as_str().expect("a next page");
    let (_, rest) = server.get(&format!("/_hearth/client/v1/tips/received?limit=2&from={next}"), bob.token()).await;
    assert_eq!(rest["chunk"][0]["tip_id"], tip_id.as_str(), "{rest:#}");
    assert_eq!(rest["chunk"][0]["from"], alice.user_id.as_str());
    assert!(rest.get("next_batch").is_none(), "{rest:#}");
    // Only creators have such a list.
    let refused = server.get("/_hearth/client/v1/tips/received", alice.token()).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

#[tokio::test]
async fn tips_that_cannot_be_are_refused_before_anyone_is_charged() {
    let billing = Billing::start().await;
    let (server, bob, alice, room) = creator_and_member(&billing).await;
    let carol = server.register("carol", PW).await;
    server.join(&carol, &room).await;

    for (body, errcode) in [
        (json!({"to": carol.user_id, "amount": "5.00", "currency": "USD"}), "M_FORBIDDEN"),
        (json!({"to": bob.user_id, "amount": "five", "currency": "USD"}), "M_INVALID_PARAM"),
        (json!({"to": bob.user_id, "amount": "0.00", "currency": "USD"}), "M_INVALID_PARAM"),
        (json!({"to": bob.user_id, "amount": "5.00", "currency": "dollars"}), "M_INVALID_PARAM"),
        (json!({"to": bob.user_id, "currency": "USD"}), "M_MISSING_PARAM"),
        (json!({"to": "not a user", "amount": "5.00", "currency": "USD"}), "M_BAD_JSON"),
    ] {
        let (status, answer) = tip(&server, &alice, &room, "bad", body.clone()).await;
        assert_eq!(answer["errcode"], errcode, "{body} -> {status} {answer}");
        assert!(status.is_client_error(), "{body} -> {status}");
    }
    // A creator cannot tip themselves; nobody tips outside a room they share.
    let own = tip(&server, &bob, &room, "self", five_to(&bob)).await;
    assert_error(&own, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let elsewhere = server.create_room(&carol, json!({"preset": "public_chat"})).await;
    server.join(&alice, &elsewhere).await;
    let absent = tip(&server, &alice, &elsewhere, "away", five_to(&bob)).await;
    assert_error(&absent, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // Blocking holds for tips: a creator who ignores Alice receives none from her.
    let ignore = json!({"ignored_users": {alice.user_id.clone(): {}}});
    let path = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", bob.user_id);
    assert_eq!(server.put(&path, bob.token(), ignore).await.0, StatusCode::OK);
    let blocked = tip(&server, &alice, &room, "blocked", five_to(&bob)).await;
    assert_error(&blocked, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    assert!(billing.received().is_empty(), "nothing reached the webhook: {:?}", billing.received());
    assert!(tip_events(&server, &bob, &room).await.is_empty());
}

#[tokio::test]
async fn a_declined_tip_shows_nothing_and_gives_the_member_the_billing_link() {
    let billing = Billing::start().await;
    let (server, bob, alice, room) = creator_and_member(&billing).await;
    billing.set(Mode::Decline("https://billing.example/fix-card".to_owned()));

    let (status, declined) = tip(&server, &alice, &room, "d1", five_to(&bob)).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{declined}");
    assert_eq!(declined["errcode"], "HEARTH_TIP_DECLINED");
    assert_eq!(declined["billing_url"], "https://billing.example/fix-card");
    assert!(declined["error"].is_string());
    assert!(tip_events(&server, &bob, &room).await.is_empty(), "a declined tip leaves no event");

    // Alice also finds the link in her server-notices room, tagged as the spec says.
    let notices = notices_room(&server, &alice).await;
    let texts = notice_texts(&server, &alice, &notices).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("https://billing.example/fix-card"), "{texts:?}");
    let tags = format!("/_matrix/client/v3/user/{}/rooms/{}/tags", alice.user_id, encode(&notices));
    let (_, tags) = server.get(&tags, alice.token()).await;
    assert!(tags["tags"].get("m.server_notice").is_some(), "{tags}");

    // The decline is final for that transaction: retrying gives the same answer, unasked.
    billing.set(Mode::Approve);
    let (status, again) = tip(&server, &alice, &room, "d1", five_to(&bob)).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(again, declined);
    assert_eq!(billing.received().len(), 1);
    assert_eq!(notice_texts(&server, &alice, &notices).await.len(), 1, "one notice per declined tip");
    // A new tip (once the card is fixed) goes through.
    assert_eq!(tip(&server, &alice, &room, "d2", five_to(&bob)).await.0, StatusCode::OK);
    assert_eq!(tip_events(&server, &bob, &room).await.len(), 1);
    let (_, page) = server.get("/_hearth/client/v1/tips/received", bob.token()).await;
    assert_eq!(page["totals"]["USD"]["count"], 1, "declined tips are not counted: {page:#}");
}

/// The room the server's notices account invited `user` to, joined.
async fn notices_room(server: &TestServer, user: &TestUser) -> String {
    let (status, sync) = server.get("/_matrix/client/v3/sync", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    let invites = sync["rooms"]["invite"].as_object().cloned().unwrap_or_default();
    let from_server = |state: &Value| {
        state["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|event| event["type"] == "m.room.member" && event["sender"] == "@_server_notices:hearth.test")
    };
    let room = invites
        .iter()
        .find(|(_, invite)| from_server(&invite["invite_state"]))
        .map(|(room, _)| room.clone())
        .unwrap_or_else(|| panic!("an invite from the server notices account: {sync:#}"));
    server.join(user, &room).await;
    room
}

async fn notice_texts(server: &TestServer, user: &TestUser, room: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", encode(room));
    let (_, body) = server.get(&path, user.token()).await;
    let chunk = body["chunk"].as_array().cloned().unwrap_or_default();
    chunk
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_slow_or_crashing_webhook_fails_cleanly_and_the_retry_charges_once() {
    let billing = Billing::start().await;
    let server = TestServer::start_with(|config| {
        billing.configure(config);
        config.tips.timeout_ms = 300;
    })
    .await;
    let (users, room) = server.public_room_of(&["bob", "alice"], PW, json!({})).await;
    let (bob, alice) = (&users[0], &users[1]);
    make_creator(&server.state.pool, bob).await;

    // Too slow: a clear error, nothing in the room.
    billing.set(Mode::Stall(Duration::from_secs(2)));
    let (status, slow) = tip(&server, alice, &room, "s1", five_to(bob)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{slow}");
    assert_eq!(slow["errcode"], "HEARTH_BILLING_UNAVAILABLE");
    assert!(tip_events(&server, bob, &room).await.is_empty());

    // Charged, but the answer never came back: the member is told to retry...
    billing.set(Mode::ChargeThenDrop);
    let (status, dropped) = tip(&server, alice, &room, "s1", five_to(bob)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{dropped}");
    assert_eq!(dropped["tip_id"], slow["tip_id"], "the retry is the same tip");
    assert!(tip_events(&server, bob, &room).await.is_empty());

    // ...and the retry finds the charge made: one charge, one event.
    billing.set(Mode::Approve);
    let (status, sent) = tip(&server, alice, &room, "s1", five_to(bob)).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(sent["tip_id"], slow["tip_id"]);
    // The stalled first call may charge after Hearth gave up on it; still the same key.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(billing.charges(), 1, "one charge whatever failed");
    let keys: Vec<Value> = billing.received().iter().map(|r| r.body["idempotency_key"].clone()).collect();
    assert_eq!(keys.len(), 3, "asked three times: {keys:?}");
    assert!(keys.iter().all(|key| *key == sent["tip_id"]), "always with the same key: {keys:?}");
    let events = tip_events(&server, bob, &room).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["event_id"], sent["event_id"]);
}

/// Two Hearth lives on one database, each with the webhook configured.
async fn node_on(database: &str, key_file: &std::path::Path, billing: &Billing) -> common::node::Node {
    let key = SigningKey::load_or_generate(key_file).expect("signing key");
    start_node_with(database, key, |config| billing.configure(config)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_settles_a_tip_charged_but_never_answered_without_charging_again() {
    let billing = Billing::start().await;
    let (database, pool) = fresh_database().await;
    let data_dir = tempfile::tempdir().unwrap();
    let key_file = data_dir.path().join("signing.key");
    let first = node_on(&database, &key_file, &billing).await;
    let register = |name: &'static str| {
        let body = json!({"username": name, "password": PW, "auth": {"type": "m.login.dummy"}});
        let first = &first;
        async move {
            let (status, body) = first.call(Method::POST, "/_matrix/client/v3/register", None, Some(body)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            TestUser::from_response(&body, PW)
        }
    };
    let bob = register("bob").await;
    let alice = register("alice").await;
    make_creator(&pool, &bob).await;
    let (status, created) = first
        .call(Method::POST, "/_matrix/client/v3/createRoom", bob.token(), Some(json!({"preset": "public_chat"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let room = created["room_id"].as_str().unwrap().to_owned();
    let join = format!("/_matrix/client/v3/join/{}", encode(&room));
    assert_eq!(first.call(Method::POST, &join, alice.token(), Some(json!({}))).await.0, StatusCode::OK);

    billing.set(Mode::ChargeThenDrop);
    let (status, failed) = tip(&first, &alice, &room, "r1", five_to(&bob)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{failed}");
    first.stop().await;

    // Alice never retries; the restarted server asks again by itself, with the same key.
    billing.set(Mode::Approve);
    let second = node_on(&database, &key_file, &billing).await;
    let mut events = Vec::new();
    for _ in 0..100 {
        events = tip_events(&second, &bob, &room).await;
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(events.len(), 1, "the charged tip appears after the restart: {events:#?}");
    assert_eq!(events[0]["content"]["io.hearth.tip"]["tip_id"], failed["tip_id"]);
    assert_eq!(billing.charges(), 1);
    // Alice's late retry is answered with that event; nothing more is charged or sent.
    let (status, sent) = tip(&second, &alice, &room, "r1", five_to(&bob)).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(sent["event_id"], events[0]["event_id"]);
    assert_eq!(billing.received().len(), 2, "asked once before and once after the restart");
    assert_eq!(tip_events(&second, &bob, &room).await.len(), 1);
    second.stop().await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_client_shows_the_tip_as_text() {
    use matrix_sdk::config::SyncSettings;
    use matrix_sdk::ruma::events::{AnySyncMessageLikeEvent, AnySyncTimelineEvent, SyncMessageLikeEvent};

    let billing = Billing::start().await;
    let (server, bob, alice, room) = creator_and_member(&billing).await;
    let (status, sent) = tip(&server, &alice, &room, "sdk", five_to(&bob)).await;
    assert_eq!(status, StatusCode::OK, "{sent}");

    // Bob's client knows nothing of tips: it sees a room message with a body it can show.
    let client = matrix_sdk::Client::builder().homeserver_url(&server.base_url).build().await.unwrap();
    client.matrix_auth().login_username("bob", PW).send().await.expect("matrix-sdk logs in");
    let response = client.sync_once(SyncSettings::default()).await.expect("sync");
    let room_id = matrix_sdk::ruma::RoomId::parse(&room).unwrap();
    let timeline = &response.rooms.joined.get(&room_id).expect("the room is in the sync").timeline.events;
    let shown: Vec<(String, String)> = timeline
        .iter()
        .filter_map(|event| match event.raw().deserialize().ok()? {
            AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(
                SyncMessageLikeEvent::Original(message),
            )) => Some((message.content.msgtype().to_owned(), message.content.body().to_owned())),
            _ => None,
        })
        .collect();
    assert_eq!(
        shown,
        [("io.hearth.tip".to_owned(), "alice tipped bob 5.00 USD: great stream!".to_owned())],
        "{shown:?}"
    );
}

/// A charged tip whose message the room refuses (the member left before it could be posted)
/// is tried a bounded number of times, then given up on: start-up stops retrying it, and the
/// creator's ledger still lists it (it was charged) with the room's refusal.
#[tokio::test]
async fn an_approved_tip_the_room_refuses_is_given_up_after_bounded_tries() {
    let billing = Billing::start().await;
    let (server, bob, alice, room) = creator_and_member(&billing).await;
    billing.set(Mode::ChargeThenDrop);
    let (status, failed) = tip(&server, &alice, &room, "gone", five_to(&bob)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{failed}");
    server.leave(&alice, &room).await;
    billing.set(Mode::Approve);

    // Each start-up's recovery tries once more; the fifth refusal is the last.
    for attempt in 1..=5 {
        let unsettled = hearth::testing::creators::tips::recover(server.state.tips()).await.unwrap();
        assert_eq!(unsettled, 1, "try {attempt}");
    }
    assert_eq!(hearth::testing::creators::tips::recover(server.state.tips()).await.unwrap(), 0, "given up");
    assert!(tip_events(&server, &bob, &room).await.is_empty());
    let (_, ledger) = server.get("/_hearth/client/v1/tips/received", bob.token()).await;
    assert_eq!(ledger["chunk"].as_array().unwrap().len(), 1, "{ledger}");
    let entry = &ledger["chunk"][0];
    assert_eq!(entry["tip_id"], failed["tip_id"]);
    assert!(entry["event_id"].is_null() && entry["post_error"].is_string(), "{entry}");
    assert_eq!(ledger["totals"]["USD"]["count"], 1, "still charged, still counted");
    assert_eq!(billing.charges(), 1);
    // Alice's retry is told, and charges nothing.
    let retry = tip(&server, &alice, &room, "gone", five_to(&bob)).await;
    assert_error(&retry, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(billing.charges(), 1);
}
