//! Sliding sync timelines that grow: a room the connection has sent, asked for again with a
//! longer `timeline_limit` (an app opening a room its list shows with one event), sends its
//! latest events again up to the new limit, once, marked `unstable_expanded_timeline` as
//! Synapse marks it — and again only after a gap left the client with fewer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::sliding_sync::{PW, bodies, list, slide};
use common::*;
use serde_json::{Value, json};

/// The list of one room with one event each, and with `opened` a subscription of three.
fn request(room: &str, opened: bool) -> Value {
    let mut request = list(1, 1, json!([]));
    if opened {
        request["room_subscriptions"] = json!({ room: { "timeline_limit": 3 } });
    }
    request
}

fn pos(response: &Value) -> String {
    response["pos"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_longer_timeline_sends_the_latest_events_again_once_and_after_a_gap() {
    let server = TestServer::start().await;
    let (users, room) = server.public_room_of(&["alice", "bob"], PW, json!({})).await;
    let (alice, bob) = (&users[0], &users[1]);
    for n in 0..5 {
        server.send_text(alice, &room, &format!("m{n}"), &format!("message {n}")).await;
    }
    let first = slide(&server, bob, None, 0, request(&room, false)).await;
    assert_eq!(bodies(&first["rooms"][&room]), ["message 4"], "{first}");
    assert_eq!(first["rooms"][&room]["num_live"], 0, "a first answer has no live events: {first}");

    let opened = slide(&server, bob, Some(&pos(&first)), 0, request(&room, true)).await;
    let entry = &opened["rooms"][&room];
    assert_eq!(bodies(entry), ["message 2", "message 3", "message 4"], "the three latest: {entry}");
    assert_eq!(entry["unstable_expanded_timeline"], true, "{entry}");
    assert_eq!(entry["limited"], true, "older events remain: {entry}");
    assert!(entry.get("initial").is_none(), "the room is not new to the connection: {entry}");
    let again = slide(&server, bob, Some(&pos(&opened)), 0, request(&room, true)).await;
    assert!(again["rooms"].get(&room).is_none(), "sent once: {again}");

    // Closed, the room gets one new event: the client still has the three latest, no gap.
    server.send_text(alice, &room, "m5", "message 5").await;
    let closed = slide(&server, bob, Some(&pos(&again)), 0, request(&room, false)).await;
    assert_eq!(bodies(&closed["rooms"][&room]), ["message 5"], "{closed}");
    let reopened = slide(&server, bob, Some(&pos(&closed)), 0, request(&room, true)).await;
    assert!(reopened["rooms"].get(&room).is_none(), "nothing the client lacks: {reopened}");

    // Closed again, two events arrive with a limit of one: a gap, so reopening fills it.
    server.send_text(alice, &room, "m6", "message 6").await;
    server.send_text(alice, &room, "m7", "message 7").await;
    let gap = slide(&server, bob, Some(&pos(&reopened)), 0, request(&room, false)).await;
    assert_eq!(bodies(&gap["rooms"][&room]), ["message 7"], "{gap}");
    assert_eq!(gap["rooms"][&room]["limited"], true, "{gap}");
    let filled = slide(&server, bob, Some(&pos(&gap)), 0, request(&room, true)).await;
    assert_eq!(bodies(&filled["rooms"][&room]), ["message 5", "message 6", "message 7"], "{filled}");
    assert_eq!(filled["rooms"][&room]["unstable_expanded_timeline"], true, "{filled}");
}
