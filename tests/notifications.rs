//! Notifications decided by each user's own push rules when an event arrives, as a user sees
//! them: `/sync`'s `unread_notifications` and `GET /notifications` (paging, `only=highlight`,
//! read state) — for a DM, mentions, a keyword rule, a muted room and one's own messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "notifications-test-password";

/// `(notification_count, highlight_count)` of a joined room in an initial sync.
async fn counts(server: &TestServer, user: &TestUser, room: &str) -> (i64, i64) {
    let (status, body) = server.get("/_matrix/client/v3/sync", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let unread = &body["rooms"]["join"][room]["unread_notifications"];
    match (unread["notification_count"].as_i64(), unread["highlight_count"].as_i64()) {
        (Some(n), Some(h)) => (n, h),
        _ => panic!("no unread_notifications for {room}: {body}"),
    }
}

async fn notifications(server: &TestServer, user: &TestUser, query: &str) -> Value {
    let (status, body) = server.get(&format!("/_matrix/client/v3/notifications{query}"), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The bodies of the listed notifications' events, newest first.
fn bodies(page: &Value) -> Vec<String> {
    let list = page["notifications"].as_array().expect("notifications");
    list.iter().map(|n| n["event"]["content"]["body"].as_str().unwrap_or("").to_owned()).collect()
}

#[tokio::test]
async fn a_dm_notifies_with_a_sound_the_invite_too_but_never_for_ones_own_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(&alice, json!({"preset": "trusted_private_chat", "invite": [bob.user_id], "is_direct": true}))
        .await;
    // The invite notifies bob (`.m.rule.invite_for_me`).
    let page = notifications(&server, &bob, "").await;
    let invite = &page["notifications"][0];
    assert_eq!((invite["event"]["type"].clone(), invite["room_id"].clone()), (json!("m.room.member"), json!(room)));
    assert_eq!(invite["event"]["state_key"], bob.user_id);
    server.join(&bob, &room).await;

    server.send_message(&alice, &room, "own", text("my own words")).await;
    server.send_message(&bob, &room, "one", text("hello alice")).await;
    assert_eq!(counts(&server, &alice, &room).await, (1, 0), "bob's message notifies alice, hers does not");
    let page = notifications(&server, &alice, "").await;
    assert_eq!(bodies(&page), ["hello alice"], "{page}");
    let first = &page["notifications"][0];
    // `.m.rule.room_one_to_one`: notify with the default sound; the event in client format.
    assert_eq!(first["actions"], json!(["notify", {"set_tweak": "sound", "value": "default"}]));
    assert_eq!((first["event"]["sender"].clone(), first["read"].clone()), (json!(bob.user_id), json!(false)));
    assert!(first["ts"].as_u64().is_some() && first["event"]["event_id"].is_string(), "{first}");
    assert_eq!(counts(&server, &bob, &room).await, (1, 0), "alice's message notifies bob, his does not");
}

#[tokio::test]
async fn mentions_highlight_and_a_room_mention_needs_the_power_to_notify_the_room() {
    let server = TestServer::start().await;
    let moderator = json!({"power_level_content_override": {"users": {format!("@bob:{SERVER_NAME}"): 50}}});
    let (users, room) = server.public_room_of(&["alice", "bob", "carol"], PW, moderator).await;
    let [alice, bob, carol]: [TestUser; 3] = users.try_into().expect("three users");

    server.send_message(&carol, &room, "plain", text("hello all")).await;
    let mention = json!({"msgtype": "m.text", "body": "alice?", "m.mentions": {"user_ids": [alice.user_id.clone()]}});
    server.send_message(&carol, &room, "mention", mention).await;
    let everyone = json!({"msgtype": "m.text", "body": "everyone!", "m.mentions": {"room": true}});
    server.send_message(&carol, &room, "carol-room", everyone.clone()).await;
    server.send_message(&bob, &room, "bob-room", everyone).await;
    assert_eq!(counts(&server, &alice, &room).await, (4, 2));

    let page = notifications(&server, &alice, "?only=highlight").await;
    assert_eq!(bodies(&page), ["everyone!", "alice?"], "bob's @room and carol's mention: {page}");
    assert_eq!(page["notifications"][0]["event"]["sender"], bob.user_id);
    let actions = &page["notifications"][1]["actions"];
    assert!(actions.as_array().unwrap().contains(&json!({"set_tweak": "highlight"})), "{actions}");
    // Carol was mentioned by nobody; bob's @room highlights for her too, her own does not count.
    assert_eq!(counts(&server, &carol, &room).await, (1, 1));
}

#[tokio::test]
async fn a_keyword_rule_highlights_and_a_muted_room_stops_counting() {
    let server = TestServer::start().await;
    let (users, room) = server.public_room_of(&["alice", "bob", "carol"], PW, json!({})).await;
    let [alice, bob, carol]: [TestUser; 3] = users.try_into().expect("three users");

    let keyword = json!({"pattern": "pizza", "actions": ["notify", {"set_tweak": "highlight"}]});
    let (status, body) = server.put("/_matrix/client/v3/pushrules/global/content/pizza", alice.token(), keyword).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.send_message(&bob, &room, "p", text("who wants PIZZA tonight")).await;
    server.send_message(&bob, &room, "q", text("pizzas are not the word")).await;
    assert_eq!(counts(&server, &alice, &room).await, (2, 1), "the keyword matches a whole word, any case");
    assert_eq!(bodies(&notifications(&server, &alice, "?only=highlight").await), ["who wants PIZZA tonight"]);
    // Carol has no such rule.
    assert_eq!(counts(&server, &carol, &room).await, (2, 0));

    // Alice reads up to here, then mutes the room (a room rule without actions, as Element does).
    let latest = server.send_message(&bob, &room, "r", text("last one before the mute")).await;
    server.read_up_to(&alice, &room, &latest).await;
    let path = format!("/_matrix/client/v3/pushrules/global/room/{}", encode(&room));
    let (status, body) = server.put(&path, alice.token(), json!({"actions": []})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.send_message(&bob, &room, "s", text("anyone?")).await;
    server.send_message(&bob, &room, "t", text("hello?")).await;
    assert_eq!(counts(&server, &alice, &room).await, (0, 0), "a muted room counts nothing new");
    assert_eq!(counts(&server, &carol, &room).await, (5, 0), "carol did not mute it");
    let listed = bodies(&notifications(&server, &alice, "").await);
    assert!(!listed.iter().any(|body| body == "anyone?" || body == "hello?"), "{listed:?}");
    // Content rules outrank room rules (spec: override, content, room, sender, underride): the
    // keyword still gets through, as in Element's "mentions and keywords" setting.
    server.send_message(&bob, &room, "u", text("pizza again")).await;
    assert_eq!(counts(&server, &alice, &room).await, (1, 1));
    server.read_up_to(&alice, &room, &server.send_message(&alice, &room, "mine", text("ok")).await).await;

    // `dont_notify`, the legacy form of no actions, mutes too; deleted, counting resumes.
    let (status, body) = server.put(&path, alice.token(), json!({"actions": ["dont_notify"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.send_message(&bob, &room, "v", text("still muted")).await;
    assert_eq!(counts(&server, &alice, &room).await, (0, 0));
    let (status, body) = server.delete(&path, alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.send_message(&bob, &room, "w", text("back")).await;
    assert_eq!(counts(&server, &alice, &room).await, (1, 0));
}

#[tokio::test]
async fn notifications_page_from_newest_and_say_what_has_been_read() {
    let server = TestServer::start().await;
    let (users, room) = server.public_room_of(&["alice", "bob"], PW, json!({})).await;
    let [alice, bob]: [TestUser; 2] = users.try_into().expect("two users");
    let mut ids = Vec::new();
    for i in 0..5 {
        let content = match i {
            1 | 3 => {
                json!({"msgtype": "m.text", "body": format!("m{i}"), "m.mentions": {"user_ids": [alice.user_id.clone()]}})
            }
            _ => text(&format!("m{i}")),
        };
        ids.push(server.send_message(&bob, &room, &format!("t{i}"), content).await);
    }
    server.read_up_to(&alice, &room, &ids[2]).await;

    let first = notifications(&server, &alice, "?limit=2").await;
    assert_eq!(bodies(&first), ["m4", "m3"]);
    let token = first["next_token"].as_str().expect("a next page").to_owned();
    let second = notifications(&server, &alice, &format!("?limit=2&from={token}")).await;
    assert_eq!(bodies(&second), ["m2", "m1"]);
    let token = second["next_token"].as_str().expect("a last page").to_owned();
    let third = notifications(&server, &alice, &format!("?limit=2&from={token}")).await;
    assert_eq!(bodies(&third), ["m0"]);
    assert!(third.get("next_token").is_none(), "no page after the last: {third}");
    let read: Vec<bool> = [&first, &second, &third]
        .iter()
        .flat_map(|page| page["notifications"].as_array().unwrap().iter().map(|n| n["read"].as_bool().unwrap()))
        .collect();
    assert_eq!(read, [false, false, true, true, true], "the receipt on m2 covers m2 and before");

    let highlights = notifications(&server, &alice, "?only=highlight&limit=1").await;
    assert_eq!(bodies(&highlights), ["m3"]);
    let token = highlights["next_token"].as_str().expect("next").to_owned();
    assert_eq!(bodies(&notifications(&server, &alice, &format!("?only=highlight&from={token}")).await), ["m1"]);

    // A redacted event is listed redacted.
    let (status, body) =
        server.put(&format!("/_matrix/client/v3/rooms/{room}/redact/{}/r1", ids[4]), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let newest = notifications(&server, &alice, "?limit=1").await;
    assert_eq!(newest["notifications"][0]["event"]["content"], json!({}), "{newest}");

    let bad = server.get("/_matrix/client/v3/notifications?from=nonsense", alice.token()).await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    assert_error(
        &server.get("/_matrix/client/v3/notifications", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
}

#[tokio::test]
async fn an_ignored_users_messages_never_notify() {
    let server = TestServer::start().await;
    let (users, room) = server.public_room_of(&["alice", "bob", "carol"], PW, json!({})).await;
    let [alice, bob, carol]: [TestUser; 3] = users.try_into().expect("three users");
    let path = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", alice.user_id);
    let (status, body) = server.put(&path, alice.token(), json!({"ignored_users": {carol.user_id.clone(): {}}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mention = json!({"msgtype": "m.text", "body": "alice!", "m.mentions": {"user_ids": [alice.user_id.clone()]}});
    server.send_message(&carol, &room, "c", mention).await;
    server.send_message(&bob, &room, "b", text("from bob")).await;
    assert_eq!(bodies(&notifications(&server, &alice, "").await), ["from bob"]);
    assert_eq!(counts(&server, &alice, &room).await, (1, 0));
    // Bob ignores nobody: carol's message notifies him.
    assert_eq!(bodies(&notifications(&server, &bob, "").await), ["alice!"]);
}

/// The cost of evaluating one event for every member of a 1,000-member room (printed, not
/// asserted: speed is measured, never a test's pass mark). Members are made and joined through
/// the domain functions, not HTTP, to keep the set-up short.
#[tokio::test]
async fn evaluation_cost_per_event_in_a_thousand_member_room() {
    use hearth::testing::rooms::build::EventTemplate;
    use hearth::testing::rooms::send::append;
    use ruma::{OwnedDeviceId, RoomId, UserId};
    use std::time::{Duration, Instant};

    const MEMBERS: usize = 1000;
    let server = TestServer::start().await;
    let state = &server.state;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    let room_id = RoomId::parse(&room).expect("room id");
    let members: Vec<_> =
        (0..MEMBERS).map(|i| UserId::parse(format!("@member{i}:{SERVER_NAME}")).expect("user id")).collect();
    let mut tx = state.pool.begin().await.expect("begin");
    for member in &members {
        hearth::testing::users::accounts::insert_account(&mut tx, member, None, false, false).await.expect("account");
    }
    tx.commit().await.expect("commit");
    let started = Instant::now();
    let joins =
        members.iter().map(|member| {
            let session = hearth::testing::users::Session {
                user_id: member.clone(),
                device_id: OwnedDeviceId::from("BENCH"),
                is_admin: false,
                is_guest: false,
                shadow_banned: false,
                message_limit: None,
            };
            let room_id = room_id.clone();
            async move {
                hearth::testing::rooms::membership::join(state.rooms(), &room_id, &session, None).await.expect("join")
            }
        });
    futures_util::future::join_all(joins).await;
    eprintln!("{MEMBERS} joins in {:?}", started.elapsed());

    // One message, and a batch of 100 sent at once (one transaction).
    let sender: &UserId = &members[0];
    let one =
        append(state.rooms(), &room_id, sender, EventTemplate::message("m.room.message", text("hello all")), None)
            .await
            .expect("send");
    let batch = (0..100).map(|i| {
        let template = EventTemplate::message("m.room.message", text(&format!("message {i}")));
        append(state.rooms(), &room_id, sender, template, None)
    });
    let batch: Vec<String> =
        futures_util::future::join_all(batch).await.into_iter().map(|id| id.expect("send").to_string()).collect();
    let position_of = |id: String| {
        let pool = state.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT e.stream_position FROM events e JOIN event_ids i ON i.event_nid = e.event_nid WHERE i.event_id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("position")
        }
    };
    let single = vec![position_of(one.to_string()).await];
    let mut many = Vec::new();
    for id in batch {
        many.push(position_of(id).await);
    }
    let rows =
        server.count(&format!("SELECT COUNT(*) FROM event_push_actions WHERE stream_position = {}", single[0])).await;
    assert_eq!(rows, MEMBERS as i64, "every member but the sender (alice too) was notified");

    // Evaluate again (their rows removed first), inside transactions that are rolled back,
    // with the caches warm.
    let measure = |positions: Vec<i64>| async move {
        sqlx::query("DELETE FROM event_push_actions WHERE stream_position = ANY($1)")
            .bind(&positions)
            .execute(&state.pool)
            .await
            .expect("clear");
        // The events as their writer hands them over.
        let events: Vec<hearth::testing::db::push_actions::NewEvent> = sqlx::query_as(
            "SELECT e.event_nid, i.event_id, e.room_id, e.sender, e.event_type, e.origin_server_ts, e.stream_position,
                    e.json
             FROM events e JOIN event_ids i ON i.event_nid = e.event_nid
             WHERE e.stream_position = ANY($1) ORDER BY e.stream_position",
        )
        .bind(&positions)
        .fetch_all(&state.pool)
        .await
        .expect("events");
        let mut times = Vec::new();
        for _ in 0..5 {
            let mut tx = state.pool.begin().await.expect("begin");
            let handed_over = events.clone();
            let started = Instant::now();
            hearth::testing::push::record_notifications(&mut tx, &state.pool, &state.server_name, handed_over)
                .await
                .expect("evaluate");
            times.push(started.elapsed());
            tx.rollback().await.expect("rollback");
        }
        times.sort_unstable();
        times[times.len() / 2]
    };
    let one_event = measure(single).await;
    let hundred = measure(many).await;
    let per_event = |time: Duration, events: u32| time / events;
    eprintln!(
        "evaluation in a {MEMBERS}-member room (median of 5, this build's profile): one event {one_event:?} \
         ({:?} per member); a batch of 100 events {hundred:?} ({:?} per event)",
        one_event / MEMBERS as u32,
        per_event(hundred, 100),
    );
}
