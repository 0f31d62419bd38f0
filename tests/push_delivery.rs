//! Push delivery as a phone would see it: a real push gateway (a small HTTP server on
//! loopback, `common::push_gateway`) receives exactly the notifications the user's push rules
//! call for, once each — across a restart of Hearth while the gateway is down or in the middle
//! of a delivery, and with two Hearth processes on one database. A gateway's `rejected`
//! answer removes the pusher; `event_id_only` pushes carry ids and counts only; a gateway on a
//! private address is refused unless the operator allows it.
//!
//! "Not pushed" is asserted without waiting for time to pass: pushes to one pusher go out in
//! stream order, so once a later notification (a sentinel) has arrived, anything before it
//! that was going to be pushed has arrived too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::node::*;
use common::push_gateway::{Answer, PushGateway};
use common::*;
use hearth::signing_key::SigningKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const PW: &str = "push-delivery-password";

fn allow_private(config: &mut hearth::config::Config) {
    config.network.allow_private_destinations = true;
}

async fn register(api: &impl Api, username: &str) -> TestUser {
    register_through(api, username, PW).await
}

async fn call_ok(api: &impl Api, method: Method, path: &str, user: &TestUser, body: Value) -> Value {
    let (status, response) = api.call(method.clone(), path, user.token(), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{method} {path}: {response}");
    response
}

/// A room `creator` makes with `members` joined (a DM when `direct`).
async fn room_with(api: &impl Api, creator: &TestUser, members: &[&TestUser], direct: bool) -> String {
    let invite: Vec<&str> = members.iter().map(|member| member.user_id.as_str()).collect();
    let body = if direct {
        json!({"preset": "trusted_private_chat", "is_direct": true, "invite": invite})
    } else {
        json!({"preset": "private_chat", "name": "Tea room", "invite": invite})
    };
    let created = call_ok(api, Method::POST, "/_matrix/client/v3/createRoom", creator, body).await;
    let room = created["room_id"].as_str().expect("room_id").to_owned();
    for member in members {
        call_ok(api, Method::POST, &format!("/_matrix/client/v3/join/{room}"), member, json!({})).await;
    }
    room
}

static TXN: AtomicUsize = AtomicUsize::new(0);

/// Sends an `m.room.message` with this content; returns its event id.
async fn send(api: &impl Api, user: &TestUser, room: &str, content: Value) -> String {
    let txn = TXN.fetch_add(1, Ordering::SeqCst);
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t{txn}");
    let sent = call_ok(api, Method::PUT, &path, user, content).await;
    sent["event_id"].as_str().expect("event_id").to_owned()
}

async fn say(api: &impl Api, user: &TestUser, room: &str, text: &str) -> String {
    send(api, user, room, json!({"msgtype": "m.text", "body": text})).await
}

async fn set_pusher(api: &impl Api, user: &TestUser, gateway: &PushGateway, pushkey: &str, format: Option<&str>) {
    let mut data = json!({"url": gateway.url(), "brand": "hearth"});
    if let Some(format) = format {
        data["format"] = json!(format);
    }
    let body = json!({
        "kind": "http", "app_id": "org.hearth.test", "pushkey": pushkey, "app_display_name": "Hearth",
        "device_display_name": "Phone", "lang": "en", "data": data,
    });
    call_ok(api, Method::POST, "/_matrix/client/v3/pushers/set", user, body).await;
}

async fn pushers(api: &impl Api, user: &TestUser) -> Vec<Value> {
    let (status, body) = api.call(Method::GET, "/_matrix/client/v3/pushers", user.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["pushers"].as_array().expect("pushers").clone()
}

/// The event ids of the notifications received, in order.
fn event_ids(received: &[Value]) -> Vec<String> {
    received.iter().map(|body| body["notification"]["event_id"].as_str().unwrap_or("?").to_owned()).collect()
}

fn to_pushkey<'a>(received: &'a [Value], pushkey: &str) -> Vec<&'a Value> {
    received.iter().filter(|body| body["notification"]["devices"][0]["pushkey"] == pushkey).collect()
}

/// Waits (in steps; the product never polls, a test may) until the SQL count is positive.
async fn until_count(pool: &sqlx::PgPool, sql: &str) {
    for _ in 0..400 {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pool).await.expect("count");
        if count > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never true within 20 s: {sql}");
}

#[tokio::test]
async fn the_gateway_gets_exactly_the_notifications_the_rules_call_for_once_each() {
    let server = TestServer::start_with(allow_private).await;
    let gateway = PushGateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let dm = room_with(&server, &bob, &[&alice], true).await;
    let group = room_with(&server, &bob, &[&alice, &carol], false).await;
    let muted = room_with(&server, &bob, &[&alice, &carol], false).await;

    // Alice's rules: ordinary group chatter does not notify her; "pineapple" does; the
    // `muted` room never does (an override, as Element's "mute" sets).
    let rules = "/_matrix/client/v3/pushrules/global";
    call_ok(
        &server,
        Method::PUT,
        &format!("{rules}/underride/.m.rule.message/enabled"),
        &alice,
        json!({"enabled": false}),
    )
    .await;
    let keyword = json!({"pattern": "pineapple", "actions": ["notify", {"set_tweak": "sound", "value": "default"}]});
    call_ok(&server, Method::PUT, &format!("{rules}/content/pineapple"), &alice, keyword).await;
    let mute = json!({"conditions": [{"kind": "event_match", "key": "room_id", "pattern": muted}], "actions": []});
    call_ok(&server, Method::PUT, &format!("{rules}/override/{muted}"), &alice, mute).await;
    // Before the pusher exists: not pushed to it.
    say(&server, &bob, &dm, "before the pusher").await;
    set_pusher(&server, &alice, &gateway, "alice-phone", None).await;

    let dm_message = say(&server, &bob, &dm, "hello alice").await;
    say(&server, &bob, &group, "plain chatter").await;
    let mention = send(
        &server,
        &bob,
        &group,
        json!({"msgtype": "m.text", "body": "alice: look", "m.mentions": {"user_ids": [alice.user_id]}}),
    )
    .await;
    let keyword = say(&server, &bob, &group, "who wants pineapple pizza").await;
    // @room needs the power to notify the room: Carol (power 0) lacks it, Bob (creator) has it.
    let room_mention = json!({"msgtype": "m.text", "body": "@room hello", "m.mentions": {"room": true}});
    send(&server, &carol, &group, room_mention.clone()).await;
    let at_room = send(&server, &bob, &group, room_mention).await;
    send(
        &server,
        &bob,
        &muted,
        json!({"msgtype": "m.text", "body": "alice: pineapple", "m.mentions": {"user_ids": [alice.user_id]}}),
    )
    .await;
    // One's own messages never push, whatever they say.
    say(&server, &alice, &dm, "my own message").await;
    send(
        &server,
        &alice,
        &group,
        json!({"msgtype": "m.text", "body": "alice likes pineapple", "m.mentions": {"user_ids": [alice.user_id]}}),
    )
    .await;
    let sentinel = say(&server, &bob, &dm, "sentinel").await;

    let received = gateway.wait_for_event(&sentinel).await;
    assert_eq!(
        event_ids(&received),
        vec![dm_message.clone(), mention.clone(), keyword.clone(), at_room, sentinel],
        "{received:#?}"
    );

    // What a gateway is told: the event, who sent it where, the unread count, and the device
    // with its data (minus the url) and the rules' tweaks.
    let first = &received[0]["notification"];
    assert_eq!(first["room_id"], dm.as_str());
    assert_eq!(first["type"], "m.room.message");
    assert_eq!(first["sender"], bob.user_id.as_str());
    assert_eq!(first["sender_display_name"], "bob");
    assert_eq!(first["content"], json!({"msgtype": "m.text", "body": "hello alice"}));
    let device = &first["devices"][0];
    assert_eq!(device["app_id"], "org.hearth.test");
    assert_eq!(device["pushkey"], "alice-phone");
    assert!(device["pushkey_ts"].as_u64().is_some_and(|seconds| seconds > 1_600_000_000), "{device}");
    assert_eq!(device["data"], json!({"brand": "hearth"}));
    assert_eq!(device["tweaks"]["sound"], "default", "{device}");
    assert_ne!(device["tweaks"]["highlight"], true, "{device}");
    let mentioned = &received[1]["notification"];
    assert_eq!(mentioned["room_name"], "Tea room");
    assert_eq!(mentioned["devices"][0]["tweaks"]["highlight"], true, "{mentioned}");
    let unread: Vec<u64> =
        received.iter().map(|body| body["notification"]["counts"]["unread"].as_u64().unwrap_or(0)).collect();
    // The badge is Alice's unread count when each push goes out (she read nothing, and the
    // message from before the pusher counts too): at least everything up to that push, never
    // going down, and all six by the last.
    assert!(unread.iter().enumerate().all(|(i, count)| *count as usize >= i + 2), "{unread:?}");
    assert!(unread.windows(2).all(|pair| pair[0] <= pair[1]), "{unread:?}");
    assert_eq!(unread.last(), Some(&6), "{unread:?}");
}

#[tokio::test]
async fn event_id_only_pushes_carry_ids_counts_and_the_device_only() {
    let server = TestServer::start_with(allow_private).await;
    let gateway = PushGateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let dm = room_with(&server, &bob, &[&alice], true).await;
    set_pusher(&server, &alice, &gateway, "alice-phone", Some("event_id_only")).await;

    let message = say(&server, &bob, &dm, "a secret the gateway must not see").await;
    let received = gateway.wait_for_event(&message).await;
    assert_eq!(received.len(), 1, "{received:#?}");
    let notification = &received[0]["notification"];
    let mut fields: Vec<&str> = notification.as_object().expect("object").keys().map(String::as_str).collect();
    fields.sort_unstable();
    fields.retain(|field| *field != "prio");
    assert_eq!(fields, vec!["counts", "devices", "event_id", "room_id"], "{notification}");
    // The DM rule plays a sound, so the push is urgent: `high`, which is also what an absent
    // `prio` means.
    assert!(notification.get("prio").is_none_or(|prio| prio == "high"), "{notification}");
    assert_eq!(notification["event_id"], message.as_str());
    assert_eq!(notification["room_id"], dm.as_str());
    assert_eq!(notification["counts"], json!({"unread": 1}));
    let device = &notification["devices"][0];
    assert_eq!(device["data"], json!({"brand": "hearth", "format": "event_id_only"}));
    assert!(device.get("tweaks").is_none(), "{device}");
    assert!(!received[0].to_string().contains("secret"), "{notification}");
}

#[tokio::test]
async fn a_pushkey_the_gateway_rejects_loses_its_pusher() {
    let server = TestServer::start_with(allow_private).await;
    let gateway = PushGateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let dm = room_with(&server, &bob, &[&alice], true).await;
    set_pusher(&server, &alice, &gateway, "expired-token", None).await;
    set_pusher(&server, &alice, &gateway, "good-token", None).await;
    gateway.answer(Answer::Reject(vec!["expired-token".to_owned()]));

    let first = say(&server, &bob, &dm, "first").await;
    let received = gateway.wait_for(2).await;
    assert_eq!(to_pushkey(&received, "expired-token").len(), 1, "{received:#?}");
    until_count(&server.state.pool, "SELECT 1 - COUNT(*) FROM pushers WHERE pushkey = 'expired-token'").await;
    let left = pushers(&server, &alice).await;
    assert_eq!(left.iter().map(|p| p["pushkey"].clone()).collect::<Vec<_>>(), vec![json!("good-token")]);

    // Only the remaining pusher is sent anything more.
    let second = say(&server, &bob, &dm, "second").await;
    let received = gateway.wait_for(3).await;
    assert_eq!(
        event_ids(&to_pushkey(&received, "expired-token").into_iter().cloned().collect::<Vec<_>>()),
        vec![first.clone()]
    );
    assert_eq!(
        event_ids(&to_pushkey(&received, "good-token").into_iter().cloned().collect::<Vec<_>>()),
        vec![first, second]
    );
}

#[tokio::test]
async fn gateways_on_private_addresses_are_refused_unless_allowed() {
    // The default configuration: private destinations are not allowed.
    let server = TestServer::start().await;
    let gateway = PushGateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let dm = room_with(&server, &bob, &[&alice], true).await;
    set_pusher(&server, &alice, &gateway, "alice-phone", None).await;
    say(&server, &bob, &dm, "to a loopback gateway").await;

    // Delivery was attempted and failed; the gateway never saw a connection's request.
    until_count(&server.state.pool, "SELECT COUNT(*) FROM pushers WHERE failing_since IS NOT NULL").await;
    assert!(gateway.received().is_empty(), "{:#?}", gateway.received());
    // A refused destination is a failure to retry, not a rejection: the pusher stays.
    assert_eq!(pushers(&server, &alice).await.len(), 1);
}

#[tokio::test]
async fn a_notification_read_before_it_could_be_pushed_is_not_pushed_any_more() {
    let server = TestServer::start_with(allow_private).await;
    let gateway = PushGateway::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let dm = room_with(&server, &bob, &[&alice], true).await;
    set_pusher(&server, &alice, &gateway, "alice-phone", None).await;

    // The gateway fails; meanwhile Alice reads the message on another device.
    gateway.answer(Answer::Fail(StatusCode::SERVICE_UNAVAILABLE));
    let read = say(&server, &bob, &dm, "read elsewhere").await;
    gateway.wait_for(1).await;
    let receipt = format!("/_matrix/client/v3/rooms/{dm}/receipt/m.read/{read}");
    call_ok(&server, Method::POST, &receipt, &alice, json!({})).await;
    gateway.answer(Answer::Accept);

    let unread = say(&server, &bob, &dm, "not read yet").await;
    gateway.wait_for_event(&unread).await;
    let accepted = gateway.accepted();
    assert_eq!(event_ids(&accepted), vec![unread.clone()], "{accepted:#?}");
    assert_eq!(accepted[0]["notification"]["counts"]["unread"], 1, "the read message no longer counts");
    let attempts = event_ids(&gateway.received());
    assert!(attempts.iter().all(|id| *id == read || *id == unread), "{attempts:?}");
}

/// A database and a signing key that survive restarts of the nodes on them.
struct Deployment {
    database: String,
    _data_dir: tempfile::TempDir,
    key_file: std::path::PathBuf,
}

impl Deployment {
    async fn new() -> Deployment {
        let (database, pool) = fresh_database().await;
        pool.close().await;
        let data_dir = tempfile::tempdir().expect("temp dir");
        let key_file = data_dir.path().join("signing.key");
        Deployment { database, _data_dir: data_dir, key_file }
    }

    async fn start(&self) -> Node {
        let key = SigningKey::load_or_generate(&self.key_file).expect("signing key");
        start_node_with(&self.database, key, allow_private).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_the_gateway_is_down_delivers_each_notification_once() {
    let deployment = Deployment::new().await;
    let mut gateway = PushGateway::start().await;
    let first = deployment.start().await;
    let alice = register(&first, "alice").await;
    let bob = register(&first, "bob").await;
    let dm = room_with(&first, &bob, &[&alice], true).await;
    set_pusher(&first, &alice, &gateway, "alice-phone", None).await;

    let m1 = say(&first, &bob, &dm, "one").await;
    gateway.wait_for_event(&m1).await;
    gateway.stop().await;
    let m2 = say(&first, &bob, &dm, "two, while the gateway is down").await;
    let m3 = say(&first, &bob, &dm, "three, while the gateway is down").await;
    until_count(&first.state.pool, "SELECT COUNT(*) FROM pushers WHERE failing_since IS NOT NULL").await;
    first.stop().await;

    let second = deployment.start().await;
    let m4 = say(&second, &bob, &dm, "four, after the restart").await;
    gateway.restart().await;
    let received = gateway.wait_for_event(&m4).await;
    assert_eq!(event_ids(&received), vec![m1.clone(), m2.clone(), m3.clone(), m4.clone()], "{received:#?}");
    let m5 = say(&second, &bob, &dm, "five").await;
    let received = gateway.wait_for_event(&m5).await;
    assert_eq!(event_ids(&received), vec![m1, m2, m3, m4, m5], "nothing repeated: {received:#?}");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_in_the_middle_of_a_delivery_neither_loses_nor_repeats_it() {
    let deployment = Deployment::new().await;
    let gateway = PushGateway::start().await;
    let first = deployment.start().await;
    let alice = register(&first, "alice").await;
    let bob = register(&first, "bob").await;
    let dm = room_with(&first, &bob, &[&alice], true).await;
    set_pusher(&first, &alice, &gateway, "alice-phone", None).await;

    // The gateway takes its time: Hearth stops while the first push is in flight.
    gateway.answer(Answer::Slowly(Duration::from_millis(1500)));
    let m1 = say(&first, &bob, &dm, "one").await;
    let m2 = say(&first, &bob, &dm, "two").await;
    gateway.wait_for(1).await;
    first.stop().await;
    gateway.answer(Answer::Accept);

    let second = deployment.start().await;
    let m3 = say(&second, &bob, &dm, "three").await;
    let received = gateway.wait_for_event(&m3).await;
    assert_eq!(event_ids(&received), vec![m1, m2, m3], "{received:#?}");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_database_push_each_notification_once() {
    let deployment = Deployment::new().await;
    let gateway = PushGateway::start().await;
    let first = deployment.start().await;
    let second = deployment.start().await;
    let alice = register(&first, "alice").await;
    let bob = register(&first, "bob").await;
    let dm = room_with(&first, &bob, &[&alice], true).await;
    set_pusher(&second, &alice, &gateway, "alice-phone", None).await;

    let mut sent = Vec::new();
    for round in 0..6 {
        let node: &Node = if round % 2 == 0 { &first } else { &second };
        sent.push(say(node, &bob, &dm, &format!("message {round}")).await);
    }
    let received = gateway.wait_for_event(sent.last().expect("sent")).await;
    assert_eq!(event_ids(&received), sent, "{received:#?}");
    first.stop().await;
    second.stop().await;
}
