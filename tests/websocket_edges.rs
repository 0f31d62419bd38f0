//! The WebSocket transport's edges: a client too slow to keep up is closed cleanly and resumes;
//! bad frames and bad tokens get Matrix errors and close codes, never a dead or panicking
//! server; pings; two processes, one of them stopping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::websocket::*;
use common::node::*;
use common::*;
use futures_util::SinkExt;
use hearth::signing_key::SigningKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_cleanly_and_resumes_from_its_last_token() {
    let server = TestServer::start_with(|config| {
        config.limits.ws_send_queue = 2;
        // The server waits this long for a stuck socket (and for a silent client) before it
        // drops the connection; the flood below must fit in it even on a loaded machine.
        config.limits.ws_ping_interval_secs = 300;
    })
    .await;
    let (alice, bob, room) = two_in_a_room(&server).await;
    let since = initial_token(&server, &alice).await;
    let filter: Value = serde_json::from_str(NO_GAPS).unwrap();
    let mut ws = open_socket(&server.base_url, alice.token(), true).await.expect("upgrade");
    ws.send(json!({"since": since, "filter": filter})).await;
    // Alice stops reading while Bob writes more than the sockets between them hold (the
    // server's send buffer grows to 4 MiB here).
    let big = incompressible(50_000);
    let count = 150;
    for i in 0..count {
        server.send_text(&bob, &room, &format!("big{i}"), &format!("{i} {big}")).await;
    }
    let (code, reason) = ws.close().await;
    assert_eq!(code, 4003, "closed as fallen behind: {reason}");
    let delivered = ws.syncs.len();
    assert!(delivered > 0, "the frames queued before the close came first");
    assert_eq!(reason["next_batch"], ws.last_token(), "the close names the last delta sent");
    let first_part: Vec<String> = ws.messages(&room);
    assert!(first_part.len() < count, "the server did not hold everything for a client that did not read");

    let mut resumed = Ws::start(&server.base_url, &alice, json!({"since": ws.last_token(), "filter": filter})).await;
    let rest = count - first_part.len();
    resumed.until("the rest", |syncs| syncs.iter().map(|s| bodies(s, &room).len()).sum::<usize>() >= rest).await;
    let mut all = first_part;
    all.extend(resumed.messages(&room));
    let numbers: Vec<usize> = all.iter().map(|body| body.split(' ').next().unwrap().parse().unwrap()).collect();
    assert_eq!(numbers, (0..count).collect::<Vec<_>>(), "every message once, in order, across the close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_matrix_errors_and_the_connection_lives_on() {
    let server = TestServer::start().await;
    let (alice, bob, room) = two_in_a_room(&server).await;
    let private = server.create_room(&bob, json!({"preset": "private_chat"})).await;
    let mut ws = Ws::start(&server.base_url, &alice, json!({})).await;
    ws.until("the initial sync", |syncs| !syncs.is_empty()).await;

    let cases: Vec<(Message, Option<&str>, u16, &str)> = vec![
        (Message::text("{not json"), None, 400, "M_NOT_JSON"),
        (Message::binary(b"{}".to_vec()), None, 400, "M_NOT_JSON"),
        (Message::text(r#"{"op": "send"}"#), None, 400, "M_BAD_JSON"),
        (Message::text(r#"{"id": 7, "op": "ping"}"#), None, 400, "M_BAD_JSON"),
        (Message::text(r#"{"id": "a", "op": "dance"}"#), Some("a"), 404, "M_UNRECOGNIZED"),
        (Message::text(r#"{"id": "b", "op": "send", "room_id": 5}"#), Some("b"), 400, "M_BAD_JSON"),
        (
            Message::text(r#"{"id": "c", "op": "send", "room_id": "nope", "type": "m.room.message", "content": {}}"#),
            Some("c"),
            400,
            "M_INVALID_PARAM",
        ),
        (
            Message::text(format!(
                r#"{{"id": "d", "op": "send", "room_id": "{private}", "type": "m.room.message", "content": {{"body": "hi"}}}}"#
            )),
            Some("d"),
            403,
            "M_FORBIDDEN",
        ),
        (
            Message::text(format!(
                r#"{{"id": "e", "op": "receipt", "room_id": "{room}", "receipt_type": "m.read", "event_id": "not-an-id"}}"#
            )),
            Some("e"),
            400,
            "M_INVALID_PARAM",
        ),
        (
            Message::text(format!(
                r#"{{"id": "f", "op": "receipt", "room_id": "{room}", "receipt_type": "m.nope", "event_id": "$abc"}}"#
            )),
            Some("f"),
            400,
            "M_INVALID_PARAM",
        ),
        (Message::text("[]"), None, 400, "M_BAD_JSON"),
    ];
    for (frame, id, status, errcode) in cases {
        let shown = format!("{frame:?}");
        ws.socket.send(frame).await.expect("sent");
        let answer = ws.next_json().await;
        assert_eq!(answer["status"], status, "{shown}: {answer}");
        assert_eq!(answer["error"]["errcode"], errcode, "{shown}: {answer}");
        assert!(answer["error"]["error"].is_string(), "{shown}: {answer}");
        match id {
            Some(id) => {
                assert_eq!((answer["op"].as_str(), answer["id"].as_str()), (Some("result"), Some(id)), "{answer}")
            }
            None => assert_eq!(answer["op"], "error", "{answer}"),
        }
    }
    // Still connected, still synced.
    let answer = ws.request(send(&room, "still here")).await;
    event_id(&answer);
    ws.until("its own message", |syncs| syncs.iter().any(|s| bodies(s, &room) == ["still here"])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_bad_starts_are_refused_with_a_reason() {
    let server = TestServer::start().await;
    let (alice, bob, room) = two_in_a_room(&server).await;

    // A bad token in the upgrade request: an ordinary 401 before any upgrade.
    let refused = open_socket(&server.base_url, Some("not-a-token"), false).await.err().expect("refused");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["errcode"], "M_UNKNOWN_TOKEN", "{body}");
    // Not a WebSocket request at all.
    assert_error(&server.get("/_hearth/client/v1/ws", alice.token()).await, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");

    let closes = [
        (None, json!({"since": "h1_0"}), 4001, "M_MISSING_TOKEN"),
        (None, json!({"access_token": "wrong"}), 4001, "M_UNKNOWN_TOKEN"),
        (alice.token(), json!({"since": "h1_999999999"}), 4002, "M_INVALID_PARAM"),
        (alice.token(), json!({"since": "garbage"}), 4002, "M_INVALID_PARAM"),
        (alice.token(), json!({"filter": "no-such-filter"}), 4002, "M_INVALID_PARAM"),
        (alice.token(), json!({"op": "send", "room_id": room}), 4002, "M_BAD_JSON"),
        (alice.token(), json!({"since": 5}), 4002, "M_BAD_JSON"),
    ];
    for (token, start, code, errcode) in closes {
        let mut ws = open_socket(&server.base_url, token, false).await.expect("upgrade");
        ws.send(start.clone()).await;
        let error = ws.next_json().await;
        assert_eq!(error["error"]["errcode"], errcode, "{start}: {error}");
        let (closed, reason) = ws.close().await;
        assert_eq!((closed, reason["errcode"].as_str()), (code, Some(errcode)), "{start}: {reason}");
    }

    // A device that signs out is closed at its next delta.
    let mut ws = Ws::start(&server.base_url, &alice, json!({})).await;
    ws.until("the initial sync", |syncs| !syncs.is_empty()).await;
    let (status, body) = server.post("/_matrix/client/v3/logout", alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.send_text(&bob, &room, "after", "after the logout").await;
    let (code, reason) = ws.close().await;
    assert_eq!((code, reason["errcode"].as_str()), (4001, Some("M_UNKNOWN_TOKEN")), "{reason}");
    assert!(ws.messages(&room).is_empty(), "nothing reached the signed-out device: {:#?}", ws.syncs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_a_reading_client_connected() {
    let server = TestServer::start_with(|config| config.limits.ws_ping_interval_secs = 1).await;
    let (alice, _bob, _room) = two_in_a_room(&server).await;
    let mut ws = Ws::start(&server.base_url, &alice, json!({})).await;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(3500);
    // The client library answers each ping as it reads; the server counts that as the
    // client's sign of life, so the connection outlives two intervals.
    while let Ok(frame) = tokio::time::timeout_at(until, ws.next()).await {
        match frame {
            Frame::Ping => pings += 1,
            Frame::Json(_) => {}
            other => panic!("the connection ended: {other:?}"),
        }
    }
    assert!(pings >= 2, "pinged every second: {pings} pings in 3.5 s");
    let answer = ws.request(json!({"op": "ping"})).await;
    assert_eq!(answer["result"], json!({}), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_on_one_process_wakes_for_a_message_sent_through_another_and_resumes_when_it_stops() {
    let server = TestServer::start().await;
    // The second process only reads (its events would carry another key than the drop check
    // verifies with).
    let other = start_node(&server.database, SigningKey::generate().expect("key")).await;
    let (alice, bob, room) = two_in_a_room(&server).await;
    let since = initial_token(&server, &alice).await;
    let mut ws = Ws::start(&other.base_url, &alice, json!({"since": since})).await;
    // Give the socket time to be waiting: the message must wake it, not be found at start.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.send_text(&bob, &room, "b1", "across processes").await;
    ws.until("the message", |syncs| syncs.iter().any(|s| bodies(s, &room) == ["across processes"])).await;

    // The other process stops: the socket is closed with the token to resume from, and the
    // first process continues from it.
    other.state.streams.stop_waiting();
    let (code, reason) = ws.close().await;
    assert_eq!(code, u16::from(CloseCode::Away), "{reason}");
    assert_eq!(reason["next_batch"], ws.last_token(), "{reason}");
    other.stop().await;
    server.send_text(&bob, &room, "b2", "after the stop").await;
    let mut resumed = Ws::start(&server.base_url, &alice, json!({"since": ws.last_token()})).await;
    resumed.until("the next message", |syncs| syncs.iter().any(|s| bodies(s, &room) == ["after the stop"])).await;
    assert_eq!(resumed.messages(&room), ["after the stop"], "nothing repeated, nothing lost");
}
