//! The WebSocket transport (`/_hearth/client/v1/ws`, docs/API.md): a client that syncs over a
//! socket and a client that long-polls `/sync` chat with nothing lost or repeated, across
//! disconnects and transports, and the stream invariant over both transports at once. The
//! test client here serves `websocket_edges` too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::node::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{WebSocketStream, client_async};

pub(crate) const PW: &str = "websocket-test-password";
/// How long a client waits for what must come (a correct server takes milliseconds; this only
/// turns a hang into a failure).
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);
/// A timeline limit above anything a test sends: a limited timeline would be a gap.
pub(crate) const NO_GAPS: &str = r#"{"room": {"timeline": {"limit": 1000}}}"#;

/// What the server sent, as a client sees it.
#[derive(Debug)]
pub(crate) enum Frame {
    Json(Value),
    Ping,
    Close(u16, Value),
    /// The connection ended without a close frame.
    Ended,
}

/// A WebSocket client of `/_hearth/client/v1/ws` that keeps every delta it was pushed.
pub(crate) struct Ws {
    pub(crate) socket: WebSocketStream<TcpStream>,
    pub(crate) syncs: Vec<Value>,
    next_id: u64,
}

/// Opens the socket (the token, if given, in the upgrade request); the handshake's refusal if
/// the server refused.
pub(crate) async fn open_socket(
    base_url: &str,
    token: Option<&str>,
    small_buffer: bool,
) -> Result<Ws, Box<reqwest::Response>> {
    let address = base_url.strip_prefix("http://").expect("http base url");
    let stream = if small_buffer {
        // A client that reads slowly: the server's socket fills after little more than its own
        // send buffer.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("small receive buffer");
        socket.connect(address.parse().expect("socket address")).await.expect("connect")
    } else {
        TcpStream::connect(address).await.expect("connect")
    };
    let mut request = format!("ws://{address}/_hearth/client/v1/ws").into_client_request().expect("request");
    if let Some(token) = token {
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    }
    match client_async(request, stream).await {
        Ok((socket, _)) => Ok(Ws { socket, syncs: Vec::new(), next_id: 0 }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let (parts, body) = response.into_parts();
            let response = http::Response::from_parts(parts, body.unwrap_or_default());
            Err(Box::new(reqwest::Response::from(response)))
        }
        Err(error) => panic!("the WebSocket handshake failed: {error}"),
    }
}

impl Ws {
    /// Connects with the token in the upgrade request and starts the sync with `start`.
    pub(crate) async fn start(base_url: &str, user: &TestUser, start: Value) -> Ws {
        let mut ws = open_socket(base_url, user.token(), false).await.expect("upgrade accepted");
        ws.send(start).await;
        ws
    }

    pub(crate) async fn send(&mut self, frame: Value) {
        self.socket.send(Message::text(frame.to_string())).await.expect("frame sent");
    }

    /// The next frame from the server, within [`PATIENCE`].
    pub(crate) async fn next(&mut self) -> Frame {
        let next = tokio::time::timeout(PATIENCE, self.socket.next()).await.expect("a frame within the patience");
        match next {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).expect("server frames are JSON");
                if frame["op"] == "sync" {
                    self.syncs.push(frame["sync"].clone());
                }
                Frame::Json(frame)
            }
            Some(Ok(Message::Ping(_))) => Frame::Ping,
            Some(Ok(Message::Close(Some(close)))) => {
                Frame::Close(u16::from(close.code), serde_json::from_str(&close.reason).expect("the reason is JSON"))
            }
            Some(Ok(Message::Close(None))) => Frame::Close(1005, Value::Null),
            Some(Ok(other)) => panic!("unexpected frame {other:?}"),
            None | Some(Err(_)) => Frame::Ended,
        }
    }

    /// The next JSON frame (pings are answered by the client library and skipped).
    pub(crate) async fn next_json(&mut self) -> Value {
        loop {
            match self.next().await {
                Frame::Json(frame) => return frame,
                Frame::Ping => {}
                other => panic!("expected a frame, the connection ended: {other:?} after {:#?}", self.syncs),
            }
        }
    }

    /// Reads deltas until `done` holds for all that arrived so far.
    pub(crate) async fn until(&mut self, what: &str, done: impl Fn(&[Value]) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done(&self.syncs) {
            assert!(tokio::time::Instant::now() < deadline, "{what} did not arrive: {:#?}", self.syncs);
            self.next_json().await;
        }
    }

    /// Sends a request with a fresh id; returns its answer (deltas arriving meanwhile are kept).
    pub(crate) async fn request(&mut self, mut frame: Value) -> Value {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        frame["id"] = json!(id);
        self.send(frame).await;
        loop {
            let answer = self.next_json().await;
            if answer["op"] == "result" && answer["id"] == id {
                return answer;
            }
            assert_eq!(answer["op"], "sync", "only deltas come between a request and its answer: {answer}");
        }
    }

    /// The close the server ends with, after any frames still on their way.
    pub(crate) async fn close(&mut self) -> (u16, Value) {
        loop {
            match self.next().await {
                Frame::Close(code, reason) => return (code, reason),
                Frame::Ended => panic!("the connection ended without a close frame"),
                Frame::Json(_) | Frame::Ping => {}
            }
        }
    }

    pub(crate) fn last_token(&self) -> String {
        let last = self.syncs.last().expect("a delta arrived");
        last["next_batch"].as_str().expect("next_batch").to_owned()
    }

    pub(crate) fn messages(&self, room: &str) -> Vec<String> {
        self.syncs.iter().flat_map(|sync| bodies(sync, room)).collect()
    }
}

pub(crate) fn timeline(sync: &Value, room: &str) -> Vec<Value> {
    sync["rooms"]["join"][room]["timeline"]["events"].as_array().cloned().unwrap_or_default()
}

pub(crate) fn messages(sync: &Value, room: &str) -> Vec<Value> {
    timeline(sync, room).into_iter().filter(|event| event["type"] == "m.room.message").collect()
}

pub(crate) fn bodies(sync: &Value, room: &str) -> Vec<String> {
    messages(sync, room).iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)).collect()
}

pub(crate) fn ephemeral(sync: &Value, room: &str, kind: &str) -> Vec<Value> {
    let events = sync["rooms"]["join"][room]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
    events.into_iter().filter(|event| event["type"] == kind).collect()
}

pub(crate) fn send(room: &str, body: &str) -> Value {
    json!({"op": "send", "room_id": room, "type": "m.room.message", "content": {"msgtype": "m.text", "body": body}})
}

pub(crate) fn event_id(answer: &Value) -> String {
    answer["result"]["event_id"].as_str().unwrap_or_else(|| panic!("the send succeeded: {answer}")).to_owned()
}

/// Long-polls `/sync` from `since` until `done` holds for what arrived; returns the responses
/// and the last token.
pub(crate) async fn long_poll_until(
    api: &impl Api,
    user: &TestUser,
    since: &str,
    done: impl Fn(&[Value]) -> bool,
) -> (Vec<Value>, String) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (mut responses, mut since) = (Vec::new(), since.to_owned());
    while !done(&responses) {
        assert!(tokio::time::Instant::now() < deadline, "nothing came: {responses:#?}");
        let path = format!("/_matrix/client/v3/sync?timeout=10000&since={}&filter={}", encode(&since), encode(NO_GAPS));
        let (status, body) = api.call(Method::GET, &path, user.token(), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        since = body["next_batch"].as_str().expect("next_batch").to_owned();
        responses.push(body);
    }
    (responses, since)
}

pub(crate) async fn initial_token(server: &TestServer, user: &TestUser) -> String {
    let (status, body) = server.get("/_matrix/client/v3/sync", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["next_batch"].as_str().expect("next_batch").to_owned()
}

/// Alice and Bob in a room of their own.
pub(crate) async fn two_in_a_room(server: &TestServer) -> (TestUser, TestUser, String) {
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    (alice, bob, room)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_and_a_sync_client_chat_with_nothing_lost_or_repeated() {
    let server = TestServer::start().await;
    let (alice, bob, room) = two_in_a_room(&server).await;
    let bob_since = initial_token(&server, &bob).await;

    // Alice's initial sync comes first, whatever else happens.
    let mut ws =
        Ws::start(&server.base_url, &alice, json!({"filter": serde_json::from_str::<Value>(NO_GAPS).unwrap()})).await;
    ws.until("the initial sync", |syncs| !syncs.is_empty()).await;
    assert!(ws.syncs[0]["rooms"]["join"].get(&room).is_some(), "the initial sync lists the room: {}", ws.syncs[0]);

    // They take turns: Alice over the socket, Bob over HTTP.
    let mut expected = Vec::new();
    let mut alice_ids = HashMap::new();
    for turn in 0..5 {
        let mine = format!("alice {turn}");
        let answer = ws.request(send(&room, &mine)).await;
        alice_ids.insert(event_id(&answer), answer["id"].as_str().unwrap().to_owned());
        let theirs = format!("bob {turn}");
        server.send_text(&bob, &room, &format!("b{turn}"), &theirs).await;
        expected.extend([mine, theirs]);
    }
    let last = expected.last().unwrap().clone();
    ws.until("the whole conversation", |syncs| syncs.iter().any(|s| bodies(s, &room).contains(&last))).await;
    assert_eq!(ws.messages(&room), expected, "the socket got each message once, in order");
    // Alice's own sends come back with the transaction id of the request (the frame's id).
    for event in ws.syncs.iter().flat_map(|sync| messages(sync, &room)) {
        if let Some(request_id) = alice_ids.get(event["event_id"].as_str().unwrap()) {
            assert_eq!(event["unsigned"]["transaction_id"], request_id.as_str(), "{event}");
        }
    }
    let (bobs, bob_since) =
        long_poll_until(&server, &bob, &bob_since, |rs| rs.iter().any(|r| bodies(r, &room).contains(&last))).await;
    let bob_got: Vec<String> = bobs.iter().flat_map(|r| bodies(r, &room)).collect();
    assert_eq!(bob_got, expected, "the long-poll got each message once, in order");

    // Typing and a read receipt over the socket reach Bob's long-poll.
    let typing = ws.request(json!({"op": "typing", "room_id": room, "typing": true, "timeout": 10_000})).await;
    assert_eq!(typing["result"], json!({}), "{typing}");
    let read_up_to =
        bobs.iter().flat_map(|r| messages(r, &room)).last().unwrap()["event_id"].as_str().unwrap().to_owned();
    let receipt =
        ws.request(json!({"op": "receipt", "room_id": room, "receipt_type": "m.read", "event_id": read_up_to})).await;
    assert_eq!(receipt["result"], json!({}), "{receipt}");
    long_poll_until(&server, &bob, &bob_since, |rs| {
        let typing = rs
            .iter()
            .flat_map(|r| ephemeral(r, &room, "m.typing"))
            .any(|e| e["content"]["user_ids"][0] == alice.user_id);
        let read = rs
            .iter()
            .flat_map(|r| ephemeral(r, &room, "m.receipt"))
            .any(|e| e["content"][&read_up_to]["m.read"][&alice.user_id]["ts"].is_u64());
        typing && read
    })
    .await;

    // Read markers over the socket land in Alice's own account data, pushed to her.
    let markers = ws.request(json!({"op": "read_markers", "room_id": room, "m.fully_read": read_up_to})).await;
    assert_eq!(markers["result"], json!({}), "{markers}");
    ws.until("the fully-read marker", |syncs| {
        syncs.iter().any(|s| {
            let data = s["rooms"]["join"][&room]["account_data"]["events"].as_array().cloned().unwrap_or_default();
            data.iter().any(|e| e["type"] == "m.fully_read" && e["content"]["event_id"] == read_up_to.as_str())
        })
    })
    .await;
    assert_eq!(ws.messages(&room), expected, "nothing was repeated since");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_with_the_last_next_batch_on_either_transport_loses_and_repeats_nothing() {
    let server = TestServer::start().await;
    let (alice, bob, room) = two_in_a_room(&server).await;
    let filter: Value = serde_json::from_str(NO_GAPS).unwrap();
    let since = initial_token(&server, &alice).await;

    // The token in the start frame, as browsers must.
    let mut ws = open_socket(&server.base_url, None, false).await.expect("upgrade");
    ws.send(json!({"op": "start", "access_token": alice.access_token, "since": since, "filter": filter})).await;
    server.send_text(&bob, &room, "m1", "m1").await;
    ws.until("m1", |syncs| syncs.iter().any(|s| bodies(s, &room) == ["m1"])).await;
    // Request "r1": its transaction id is its request id.
    let sent = event_id(&ws.request(send(&room, "mine")).await);
    ws.until("her own message", |syncs| syncs.iter().any(|s| bodies(s, &room).contains(&"mine".to_owned()))).await;
    let token = ws.last_token();
    // The connection drops without a goodbye; Bob goes on writing.
    drop(ws);
    server.send_text(&bob, &room, "m2", "m2").await;
    server.send_text(&bob, &room, "m3", "m3").await;

    let mut ws = Ws::start(&server.base_url, &alice, json!({"since": token, "filter": filter})).await;
    ws.until("m2 and m3", |syncs| syncs.iter().flat_map(|s| bodies(s, &room)).count() >= 2).await;
    assert_eq!(ws.messages(&room), ["m2", "m3"], "what came while away, once");
    // The same request again after the reconnect (the new connection's first id is "r1"
    // again, so the same transaction): sent once.
    let again = ws.request(send(&room, "mine")).await;
    assert_eq!(event_id(&again), sent, "a repeated transaction is the same event");

    // Over to `/sync` with the socket's token, and back.
    let token = ws.last_token();
    drop(ws);
    server.send_text(&bob, &room, "m4", "m4").await;
    let (polled, token) =
        long_poll_until(&server, &alice, &token, |rs| rs.iter().any(|r| bodies(r, &room).contains(&"m4".to_owned())))
            .await;
    let polled: Vec<String> = polled.iter().flat_map(|r| bodies(r, &room)).collect();
    assert_eq!(polled, ["m4"], "the long-poll continues where the socket stopped");
    server.send_text(&bob, &room, "m5", "m5").await;
    let mut ws = Ws::start(&server.base_url, &alice, json!({"since": token, "filter": filter})).await;
    ws.until("m5", |syncs| syncs.iter().any(|s| bodies(s, &room).contains(&"m5".to_owned()))).await;
    assert_eq!(ws.messages(&room), ["m5"], "the socket continues where the long-poll stopped");
    let ping = ws.request(json!({"op": "ping"})).await;
    assert_eq!(ping["result"], json!({}), "{ping}");
    assert_eq!(ws.messages(&room), ["m5"], "nothing repeated");
}

const WRITERS: usize = 4;
const MESSAGES_PER_WRITER: usize = 20;
const ROOMS: usize = 2;

/// The stream invariant of `sync.rs`, over both transports at once: writers send over sockets
/// and over HTTP, readers sync over a socket that reconnects, over `/sync`, and alternating
/// between the two; each receives every message once, in each room's stream order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_and_readers_on_both_transports_see_every_message_once_in_order() {
    tokio::time::timeout(Duration::from_secs(120), invariant_on_both_transports())
        .await
        .expect("the writers and readers finished within 120 s");
}

#[derive(Clone, Copy, Debug)]
enum Transport {
    Socket,
    LongPoll,
    Alternating,
}

async fn invariant_on_both_transports() {
    let server = TestServer::start().await;
    let mut writers = Vec::new();
    for i in 0..WRITERS {
        writers.push(server.register(&format!("writer{i}"), PW).await);
    }
    let transports = [Transport::Socket, Transport::LongPoll, Transport::Alternating];
    let mut readers = Vec::new();
    for i in 0..transports.len() {
        readers.push(server.register(&format!("reader{i}"), PW).await);
    }
    let mut rooms = Vec::new();
    for _ in 0..ROOMS {
        let room = server.create_room(&writers[0], json!({"preset": "public_chat"})).await;
        for user in writers.iter().skip(1).chain(&readers) {
            server.join(user, &room).await;
        }
        rooms.push(room);
    }
    let total = WRITERS * MESSAGES_PER_WRITER;
    let done = Arc::new(AtomicBool::new(false));
    let mut reading = Vec::new();
    for (reader, transport) in readers.iter().zip(transports) {
        let since = initial_token(&server, reader).await;
        let (base, http, reader, rooms, done) =
            (server.base_url.clone(), server.http.clone(), reader.clone(), rooms.clone(), done.clone());
        reading.push(tokio::spawn(async move {
            read_everything(&base, &http, &reader, transport, since, &rooms, total, &done).await
        }));
    }
    let writing: Vec<_> = writers
        .iter()
        .enumerate()
        .map(|(w, writer)| {
            let (server_base, http, writer, rooms) =
                (server.base_url.clone(), server.http.clone(), writer.clone(), rooms.clone());
            tokio::spawn(async move {
                let mut ws = match w % 2 {
                    0 => Some(Ws::start(&server_base, &writer, json!({"filter": {"room": {"rooms": []}}})).await),
                    _ => None,
                };
                let mut sent = Vec::new();
                for m in 0..MESSAGES_PER_WRITER {
                    let room = &rooms[(w + m) % rooms.len()];
                    let body = format!("w{w}m{m}");
                    let event = match &mut ws {
                        Some(ws) => event_id(&ws.request(send(room, &body)).await),
                        None => {
                            let url =
                                format!("{server_base}/_matrix/client/v3/rooms/{room}/send/m.room.message/{body}");
                            let content = json!({"msgtype": "m.text", "body": body});
                            let (status, answer) =
                                send_json(&http, Method::PUT, &url, writer.token(), Some(content)).await;
                            assert_eq!(status, StatusCode::OK, "{answer}");
                            answer["event_id"].as_str().unwrap().to_owned()
                        }
                    };
                    sent.push((room.clone(), event));
                }
                sent
            })
        })
        .collect();
    let mut sent: HashMap<String, HashSet<String>> = HashMap::new();
    for writer in writing {
        for (room, event) in writer.await.expect("writer") {
            sent.entry(room).or_default().insert(event);
        }
    }
    done.store(true, Ordering::SeqCst);
    assert_eq!(sent.values().map(HashSet::len).sum::<usize>(), total, "every send made its own event");
    let mut order = HashMap::new();
    for room in &rooms {
        let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=1000");
        let (status, page) = server.get(&path, readers[0].token()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let ids: Vec<String> = page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), sent[room], "/messages holds what was sent");
        order.insert(room.clone(), ids);
    }
    for reader in reading {
        let (who, transport, seen) = reader.await.expect("reader");
        for room in &rooms {
            assert_eq!(
                seen[room], order[room],
                "{who} ({transport:?}) got {room}'s messages once each, in stream order"
            );
        }
    }
}

/// One reader: syncs over its transport until it has `total` messages, reconnecting the socket
/// every few deltas; then looks once more for anything delivered twice late.
#[allow(clippy::too_many_arguments)]
async fn read_everything(
    base: &str,
    http: &reqwest::Client,
    reader: &TestUser,
    transport: Transport,
    mut since: String,
    rooms: &[String],
    total: usize,
    done: &AtomicBool,
) -> (String, Transport, HashMap<String, Vec<String>>) {
    let mut seen: HashMap<String, Vec<String>> = rooms.iter().map(|room| (room.clone(), Vec::new())).collect();
    let keep = |delta: &Value, seen: &mut HashMap<String, Vec<String>>| {
        for room in rooms {
            let joined = &delta["rooms"]["join"][room];
            assert_ne!(joined["timeline"]["limited"], true, "a gap for {}: {joined}", reader.user_id);
            let ids =
                messages(delta, room).iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
            seen.get_mut(room).unwrap().extend(ids);
        }
    };
    let count = |seen: &HashMap<String, Vec<String>>| seen.values().map(Vec::len).sum::<usize>();
    let filter: Value = serde_json::from_str(NO_GAPS).unwrap();
    let mut round = 0;
    let mut last_look = false;
    loop {
        round += 1;
        let socket = match transport {
            Transport::Socket => true,
            Transport::LongPoll => false,
            Transport::Alternating => round % 2 == 0,
        };
        if socket {
            // A few deltas on one connection, then it drops and the next one resumes.
            let mut ws = Ws::start(base, reader, json!({"since": since, "filter": filter})).await;
            let wait = if last_look { Duration::from_millis(500) } else { Duration::from_secs(2) };
            let deadline = tokio::time::Instant::now() + wait;
            while ws.syncs.len() < 3 {
                match tokio::time::timeout_at(deadline, ws.next_json()).await {
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            for delta in &ws.syncs {
                keep(delta, &mut seen);
            }
            if !ws.syncs.is_empty() {
                since = ws.last_token();
            }
        } else {
            let timeout = if last_look { 500 } else { 2000 };
            let path = format!(
                "{base}/_matrix/client/v3/sync?timeout={timeout}&since={}&filter={}",
                encode(&since),
                encode(NO_GAPS)
            );
            let (status, body) = send_json(http, Method::GET, &path, reader.token(), None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            keep(&body, &mut seen);
            since = body["next_batch"].as_str().unwrap().to_owned();
        }
        if last_look {
            return (reader.user_id.clone(), transport, seen);
        }
        last_look = done.load(Ordering::SeqCst) && count(&seen) >= total;
    }
}
