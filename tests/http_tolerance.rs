//! What real clients send and Hearth must accept (DESIGN §6): empty bodies, JSON under any
//! content type, trailing slashes, `?access_token=`, and bodies over the limit, which must be
//! answered 413 in a way the client gets to read. Ends with one audit over every registered
//! route.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;

use common::*;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PASSWORD: &str = "correct horse battery";
/// The smallest limit the configuration allows, so that "too large" is cheap to reach.
const LIMIT: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Empty bodies

#[tokio::test]
async fn an_empty_body_is_an_empty_object() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;

    // matrix-nio's `join`: no body, a JSON content type, the token in the query string.
    let response = server
        .http
        .post(server.url(&format!(
            "/_matrix/client/v3/join/{}?access_token={}",
            encode(&room),
            encode(&bob.access_token)
        )))
        .header("content-type", "application/json")
        .send()
        .await
        .expect("join");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.expect("JSON")["room_id"], room.as_str());
    let (status, members) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{members}");
    assert!(members["joined"].get(&bob.user_id).is_some(), "bob joined: {members}");

    // matrix-nio's `room_leave` likewise; then matrix-js-sdk's `logout`: no body, no type.
    let response = server
        .http
        .post(server.url(&format!("/_matrix/client/v3/rooms/{room}/leave")))
        .bearer_auth(&bob.access_token)
        .send()
        .await
        .expect("leave");
    assert_eq!(response.status(), StatusCode::OK);
    let (_, members) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), alice.token()).await;
    assert!(members["joined"].get(&bob.user_id).is_none(), "bob left: {members}");
    let response = server
        .http
        .post(server.url("/_matrix/client/v3/logout"))
        .bearer_auth(&bob.access_token)
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status(), StatusCode::OK);
    let whoami = server.get("/_matrix/client/v3/account/whoami", bob.token()).await;
    assert_error(&whoami, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");

    // Where a field is required, `{}` lacks it: JSON of the wrong shape, not "not JSON".
    let invite = server
        .request_raw(Method::POST, &format!("/_matrix/client/v3/rooms/{room}/invite"), alice.token(), vec![])
        .await;
    assert_error(&invite, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    // So does `/login` without its `type`, which made ruma's parser panic and drop the
    // connection without an answer.
    let login = server.request_raw(Method::POST, "/_matrix/client/v3/login", None, vec![]).await;
    assert_error(&login, StatusCode::BAD_REQUEST, "M_BAD_JSON");

    // Only an empty body is `{}`: whitespace is not JSON.
    let blank = server
        .request_raw(Method::POST, &format!("/_matrix/client/v3/rooms/{room}/leave"), alice.token(), b" \n".to_vec())
        .await;
    assert_error(&blank, StatusCode::BAD_REQUEST, "M_NOT_JSON");
    let (_, members) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), alice.token()).await;
    assert!(members["joined"].get(&alice.user_id).is_some(), "a refused leave leaves nobody: {members}");
}

// ---------------------------------------------------------------------------------------------
// Content types

#[tokio::test]
async fn json_is_json_whatever_the_content_type_says() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    // curl's `-d` sends `application/x-www-form-urlencoded`; scripts send `text/plain` or none.
    for content_type in
        [Some("application/x-www-form-urlencoded"), Some("text/plain"), Some("application/octet-stream"), None]
    {
        let name = format!("made with {content_type:?}");
        let mut request = server
            .http
            .post(server.url("/_matrix/client/v3/createRoom"))
            .bearer_auth(&alice.access_token)
            .body(json!({"name": name}).to_string());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("createRoom");
        assert_eq!(response.status(), StatusCode::OK, "{content_type:?}");
        let room = response.json::<Value>().await.expect("JSON")["room_id"].as_str().expect("room_id").to_owned();
        let (status, state) =
            server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"), alice.token()).await;
        assert_eq!(status, StatusCode::OK, "{state}");
        assert_eq!(state["name"], name.as_str());
    }
}

// ---------------------------------------------------------------------------------------------
// Trailing slashes

#[tokio::test]
async fn paths_are_routed_with_and_without_a_trailing_slash() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let room = server.create_room(&alice, json!({"name": "slashes"})).await;

    for path in [
        "/_matrix/client/v3/account/whoami",
        "/_matrix/client/v3/account/whoami/",
        "/_matrix/client/r0/account/whoami/",
    ] {
        let (status, body) = server.get(path, alice.token()).await;
        assert_eq!(
            (status, body["user_id"].as_str()),
            (StatusCode::OK, Some(alice.user_id.as_str())),
            "{path}: {body}"
        );
    }
    // The empty state key, as matrix-js-sdk (`…/m.room.name/`) and matrix-nio (`…/m.room.name`,
    // having stripped the slash) write it.
    for path in [
        format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"),
        format!("/_matrix/client/v3/rooms/{room}/state/m.room.name"),
    ] {
        let (status, body) = server.get(&path, alice.token()).await;
        assert_eq!((status, body["name"].as_str()), (StatusCode::OK, Some("slashes")), "{path}: {body}");
    }
    let (status, body) = server
        .put(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"), alice.token(), json!({"topic": "slash"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, topic) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic"), alice.token()).await;
    assert_eq!(topic["topic"], "slash");

    // Every route the server registers answers on both forms.
    for route in hearth::testing::http::route_table().iter().filter(|route| is_matrix_path(route.path)) {
        let other = toggle_slash(route.path);
        assert!(route.shapes.contains(&other), "{} {} is not routed as {other}", route.method, route.path);
    }

    // A slash does not make an unknown path known.
    let response = server.get("/_matrix/client/v3/account/whoami//", alice.token()).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
}

/// Paths the spec defines (others, like `/health` and Synapse's admin API, are Hearth's own
/// and keep their one form).
fn is_matrix_path(path: &str) -> bool {
    path.starts_with("/_matrix/") || path.starts_with("/.well-known/matrix/")
}

fn toggle_slash(path: &str) -> String {
    match path.strip_suffix('/') {
        Some(without) => without.to_owned(),
        None => format!("{path}/"),
    }
}

// ---------------------------------------------------------------------------------------------
// `?access_token=`

#[tokio::test]
async fn the_access_token_may_come_in_the_query_string() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;

    let whoami = format!("/_matrix/client/v3/account/whoami?access_token={}", encode(&alice.access_token));
    let (status, body) = server.get(&whoami, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], alice.user_id.as_str());
    assert_eq!(body["device_id"], alice.device_id.as_str());

    // What it authenticates is done as that user.
    let room = server.create_room(&alice, json!({})).await;
    let send =
        format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/q1?access_token={}", encode(&alice.access_token));
    let (status, body) = server.put(&send, None, json!({"msgtype": "m.text", "body": "by query"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, messages) =
        server.get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1"), alice.token()).await;
    assert_eq!(messages["chunk"][0]["content"]["body"], "by query");
    assert_eq!(messages["chunk"][0]["sender"], alice.user_id.as_str());

    // A wrong one is refused as a wrong header token is; none at all is a missing token.
    let response = server.get("/_matrix/client/v3/account/whoami?access_token=nonsense", None).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    let response = server.get("/_matrix/client/v3/account/whoami?access_token=", None).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    let response = server.get("/_matrix/client/v3/account/whoami", None).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    // The header wins when both are given (matrix-nio sends both).
    let response = server.get(&whoami, Some("nonsense")).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    let (status, _) = server.get("/_matrix/client/v3/account/whoami?access_token=nonsense", alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    // Two tokens in the query are ambiguous: refused, not guessed.
    let twice = format!("{whoami}&access_token=other");
    let response = server.get(&twice, None).await;
    assert_eq!(response.0, StatusCode::BAD_REQUEST, "{}", response.1);
}

// ---------------------------------------------------------------------------------------------
// Bodies over the limit

/// 32 MiB: well past what loopback socket buffers hold, so a server that stops reading makes
/// the client's writes fail instead of quietly filling buffers.
const HUGE: usize = 32 * 1024 * 1024;

#[tokio::test]
async fn a_body_declared_too_large_is_answered_413() {
    let server = TestServer::start_with(|config| config.limits.max_request_size = LIMIT).await;
    let alice = server.register("alice", PASSWORD).await;
    let path = format!("/_matrix/client/v3/user/{}/account_data/org.example.big", alice.user_id);

    let started = Instant::now();
    put_is_too_large(&server, &alice, &path, reqwest::Body::from(vec![b' '; HUGE])).await;
    println!("413 for a {HUGE}-byte body after {:?}", started.elapsed());

    assert_error(&server.get(&path, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_eq!(server.put(&path, alice.token(), json!({"small": true})).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_chunked_body_growing_past_the_limit_is_answered_413() {
    let server = TestServer::start_with(|config| config.limits.max_request_size = LIMIT).await;
    let alice = server.register("alice", PASSWORD).await;
    let path = format!("/_matrix/client/v3/user/{}/account_data/org.example.big", alice.user_id);

    // A stream without a length goes out chunked; it keeps coming long after the limit.
    let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
    let chunks = futures_util::stream::iter(
        std::iter::repeat_n(chunk, HUGE / (64 * 1024))
            .map(|chunk| Ok::<_, std::io::Error>(http_body::Frame::data(chunk))),
    );
    put_is_too_large(&server, &alice, &path, reqwest::Body::wrap(http_body_util::StreamBody::new(chunks))).await;
    assert_error(&server.get(&path, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

/// Sends `body` with reqwest, which reads the answer while it writes, and checks the answer.
async fn put_is_too_large(server: &TestServer, user: &TestUser, path: &str, body: reqwest::Body) {
    let response = server
        .http
        .put(server.url(path))
        .bearer_auth(&user.access_token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the client reads an answer");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.expect("a JSON answer");
    assert_eq!(body["errcode"], "M_TOO_LARGE", "{body}");
}

/// A client that writes its whole body before it reads (most simple clients; reverse proxies
/// forwarding an upload) must be able to: the server keeps reading what it does not want until
/// the client is done, then the answer waits for it, and the connection stays usable.
#[tokio::test]
async fn a_client_that_writes_its_whole_body_first_reads_the_answer() {
    let server = TestServer::start_with(|config| config.limits.max_request_size = LIMIT).await;
    let alice = server.register("alice", PASSWORD).await;
    let account_data = format!("/_matrix/client/v3/user/{}/account_data/org.example.big", alice.user_id);
    let bearer = format!("Authorization: Bearer {}\r\n", alice.access_token);

    // (what the request is, its extra headers, the answer it gets)
    let cases = [
        ("too large, declared", format!("PUT {account_data}"), bearer.clone(), false, 413, "M_TOO_LARGE"),
        ("too large, chunked", format!("PUT {account_data}"), bearer.clone(), true, 413, "M_TOO_LARGE"),
        ("no token, not read at all", format!("PUT {account_data}"), String::new(), false, 401, "M_MISSING_TOKEN"),
        (
            "unknown path",
            "POST /_matrix/client/v3/no_such_thing".to_owned(),
            bearer.clone(),
            true,
            404,
            "M_UNRECOGNIZED",
        ),
    ];
    for (case, request_line, headers, chunked, status, errcode) in cases {
        let mut connection = HttpConnection::open(&server).await;
        let write = connection.send_huge(&request_line, &headers, chunked).await;
        assert!(write.is_ok(), "{case}: the server stopped reading while the client wrote: {write:?}");
        let (got_status, body) = connection.read_response().await;
        assert_eq!((got_status, body["errcode"].as_str()), (status, Some(errcode)), "{case}: {body}");

        // The rest was read, so the connection carries the next request.
        connection
            .send(&format!("GET /_matrix/client/v3/account/whoami HTTP/1.1\r\nHost: hearth\r\n{bearer}\r\n"))
            .await;
        let (status, body) = connection.read_response().await;
        assert_eq!((status, body["user_id"].as_str()), (200, Some(alice.user_id.as_str())), "{case}: {body}");
    }
}

/// A client that asks `Expect: 100-continue` (curl does, for bodies over 1 MiB) is answered
/// without being asked for its body, and the server does not then wait for that body.
#[tokio::test]
async fn a_client_expecting_100_continue_gets_the_413_instead() {
    let server = TestServer::start_with(|config| config.limits.max_request_size = LIMIT).await;
    let alice = server.register("alice", PASSWORD).await;
    let mut connection = HttpConnection::open(&server).await;
    connection
        .send(&format!(
            "PUT /_matrix/client/v3/user/{}/account_data/org.example.big HTTP/1.1\r\nHost: hearth\r\n\
             Authorization: Bearer {}\r\nContent-Length: {HUGE}\r\nExpect: 100-continue\r\n\r\n",
            alice.user_id, alice.access_token
        ))
        .await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), connection.read_response())
        .await
        .expect("answered without the body");
    assert_eq!((status, body["errcode"].as_str()), (413, Some("M_TOO_LARGE")), "{body}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), connection.stream.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "the connection is closed, nothing more sent: {closed:?}");
}

/// Requests without a body (answered on the lean path, `http::lean`) and with one (hyper's)
/// share a kept-alive connection in either order, and pipelined ones are answered in order.
#[tokio::test]
async fn bodiless_and_bodied_requests_share_a_connection_in_order() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bearer = format!("Authorization: Bearer {}\r\n", alice.access_token);
    let whoami = format!("GET /_matrix/client/v3/account/whoami HTTP/1.1\r\nHost: hearth\r\n{bearer}\r\n");
    let data = format!("/_matrix/client/v3/user/{}/account_data/org.example.kept", alice.user_id);
    let get_data = format!("GET {data} HTTP/1.1\r\nHost: hearth\r\n{bearer}\r\n");

    let mut connection = HttpConnection::open(&server).await;
    // Lean, then lean again on the same connection.
    for _ in 0..2 {
        connection.send(&whoami).await;
        let (status, body) = connection.read_response().await;
        assert_eq!((status, body["user_id"].as_str()), (200, Some(alice.user_id.as_str())), "{body}");
    }
    // Three at once: a lean one, one with a body, a lean one reading what the second wrote.
    let put = format!(
        "PUT {data} HTTP/1.1\r\nHost: hearth\r\n{bearer}Content-Type: application/json\r\nContent-Length: 9\r\n\r\n{{\"n\": 42}}"
    );
    connection.send(&format!("{whoami}{put}{get_data}")).await;
    let answers =
        [connection.read_response().await, connection.read_response().await, connection.read_response().await];
    assert_eq!(answers[0].0, 200, "{:?}", answers[0]);
    assert_eq!(answers[0].1["user_id"].as_str(), Some(alice.user_id.as_str()));
    assert_eq!(answers[1], (200, json!({})));
    assert_eq!(answers[2], (200, json!({"n": 42})));
    // And on after the one with a body: the connection still answers.
    connection.send(&get_data).await;
    assert_eq!(connection.read_response().await, (200, json!({"n": 42})));
}

/// One HTTP/1.1 connection driven by hand, to control exactly when the client writes and reads.
struct HttpConnection {
    stream: TcpStream,
    buffered: Vec<u8>,
}

impl HttpConnection {
    async fn open(server: &TestServer) -> HttpConnection {
        let address = server.base_url.trim_start_matches("http://");
        HttpConnection { stream: TcpStream::connect(address).await.expect("connect"), buffered: Vec::new() }
    }

    async fn send(&mut self, bytes: &str) {
        self.stream.write_all(bytes.as_bytes()).await.expect("send");
    }

    /// Sends a request with a body of [`HUGE`] bytes, declared or chunked, all of it before
    /// reading anything.
    async fn send_huge(&mut self, request_line: &str, headers: &str, chunked: bool) -> std::io::Result<()> {
        let framing = if chunked { "Transfer-Encoding: chunked".to_owned() } else { format!("Content-Length: {HUGE}") };
        let head = format!(
            "{request_line} HTTP/1.1\r\nHost: hearth\r\nContent-Type: application/json\r\n{headers}{framing}\r\n\r\n"
        );
        self.stream.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..HUGE / chunk.len() {
            if chunked {
                self.stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                self.stream.write_all(&chunk).await?;
                self.stream.write_all(b"\r\n").await?;
            } else {
                self.stream.write_all(&chunk).await?;
            }
        }
        if chunked {
            self.stream.write_all(b"0\r\n\r\n").await?;
        }
        Ok(())
    }

    /// Reads one response with a `Content-Length` (as all of Hearth's are): its status and
    /// JSON body.
    async fn read_response(&mut self) -> (u16, Value) {
        let head_end = loop {
            if let Some(end) = self.buffered.windows(4).position(|window| window == b"\r\n\r\n") {
                break end + 4;
            }
            self.fill().await;
        };
        let head = String::from_utf8_lossy(&self.buffered[..head_end]).into_owned();
        let status: u16 = head.split(' ').nth(1).and_then(|status| status.parse().ok()).expect("a status line");
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
            })
            .expect("a Content-Length");
        while self.buffered.len() < head_end + length {
            self.fill().await;
        }
        let body: Vec<u8> = self.buffered.drain(..head_end + length).skip(head_end).collect();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn fill(&mut self) {
        let mut buffer = [0u8; 8192];
        let read = self.stream.read(&mut buffer).await.expect("read the answer");
        assert!(read > 0, "the server closed the connection; got so far: {}", String::from_utf8_lossy(&self.buffered));
        self.buffered.extend_from_slice(&buffer[..read]);
    }
}

// ---------------------------------------------------------------------------------------------
// The audit: every registered route, every shape of body clients send

/// For every route the server registers (listed by the server itself, so that new endpoints
/// are covered without touching this test), sends what clients send: no body, an empty body,
/// `{}` under each content type, `{}` with the token in the query string, `{}` on the other
/// trailing-slash form. No answer may be a 500, `M_NOT_JSON` or `M_UNRECOGNIZED`, and every
/// one must be the answer `{}` as `application/json` gets: the body is read the same way
/// whatever its framing. Each route gets a fresh user (a member of a shared room, with a
/// message there, a filter and a key backup); before each request, what an earlier one may
/// have undone (the session, the membership, the backup) is restored, so that each request
/// meets the same situation.
#[tokio::test]
async fn every_route_reads_what_clients_send() {
    let server = TestServer::start().await;
    let owner = server.register("owner", PASSWORD).await;
    let room = server.create_room(&owner, json!({"preset": "public_chat"})).await;
    let routes = hearth::testing::http::route_table();
    assert!(routes.len() > 90, "the route table lists every route: {}", routes.len());
    let started = Instant::now();

    let results: Vec<(String, Vec<String>)> = futures_util::stream::iter(routes.iter().enumerate())
        .map(|(index, route)| audit_route(&server, &room, index, route))
        .buffer_unordered(4)
        .collect()
        .await;

    let requests = results.len() * Variant::ALL.len();
    let mut failures = Vec::new();
    for (summary, problems) in &results {
        println!("{summary}");
        failures.extend(problems.iter().cloned());
    }
    println!("{} routes, {requests} requests, in {:?}", results.len(), started.elapsed());
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    /// `{}` as `application/json`: what every other variant must be answered like.
    Json,
    /// No body at all (matrix-js-sdk's `logout`).
    Absent,
    /// An empty body under a JSON content type (matrix-nio's `join`).
    EmptyJson,
    TextPlain,
    /// curl's default for `-d`.
    FormUrlEncoded,
    NoContentType,
    /// The token as `?access_token=` instead of a header.
    QueryToken,
    /// The path with (or without) its trailing slash.
    OtherSlash,
}

impl Variant {
    const ALL: [Variant; 8] = [
        Variant::Json,
        Variant::Absent,
        Variant::EmptyJson,
        Variant::TextPlain,
        Variant::FormUrlEncoded,
        Variant::NoContentType,
        Variant::QueryToken,
        Variant::OtherSlash,
    ];
}

/// What a route's path placeholders and required query parameters are filled with.
struct Fixture {
    user: TestUser,
    room: String,
    event: String,
    backup: String,
    filter: String,
    since: String,
}

impl Fixture {
    async fn new(server: &TestServer, room: &str, index: usize) -> Fixture {
        let user = server.register(&format!("audit{index}"), PASSWORD).await;
        server.join(&user, room).await;
        let event = server.send_text(&user, room, "audit-fixture", "hello").await;
        let (status, body) = server
            .post(&format!("/_matrix/client/v3/user/{}/filter", encode(&user.user_id)), user.token(), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let filter = body["filter_id"].as_str().expect("filter_id").to_owned();
        let (status, body) = server.get("/_matrix/client/v3/sync", user.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let since = body["next_batch"].as_str().expect("next_batch").to_owned();
        let mut fixture = Fixture { user, room: room.to_owned(), event, backup: String::new(), filter, since };
        fixture.backup = fixture.create_backup(server).await;
        fixture
    }

    async fn create_backup(&self, server: &TestServer) -> String {
        let (status, body) = server
            .post(
                "/_matrix/client/v3/room_keys/version",
                self.user.token(),
                json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "audit"}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["version"].as_str().expect("version").to_owned()
    }

    /// Puts back what a request may have undone: a live session, the membership, the backup.
    async fn restore(&mut self, server: &TestServer) {
        if server.get("/_matrix/client/v3/account/whoami", self.user.token()).await.0 != StatusCode::OK {
            self.user = server.login(&self.user.user_id, PASSWORD).await;
        }
        let (_, joined) = server.get("/_matrix/client/v3/joined_rooms", self.user.token()).await;
        if !joined["joined_rooms"].as_array().is_some_and(|rooms| rooms.iter().any(|room| room == self.room.as_str())) {
            server.join(&self.user, &self.room).await;
        }
        if server.get("/_matrix/client/v3/room_keys/version", self.user.token()).await.0 != StatusCode::OK {
            self.backup = self.create_backup(server).await;
        }
    }

    /// `path` (or its other trailing-slash form, `shape`) with its placeholders filled and the
    /// query parameters its endpoint requires, so that a request gets past the path and the
    /// query to its body.
    fn request_path(&self, path: &str, shape: &str) -> String {
        let query = if path.contains("/room_keys/keys") {
            format!("?version={}", self.backup)
        } else if path.ends_with("/messages") {
            "?dir=b".to_owned()
        } else if path.ends_with("/timestamp_to_event") {
            "?ts=0&dir=f".to_owned()
        } else if path.ends_with("/register/available") {
            "?username=free".to_owned()
        } else if path.ends_with("/validity") {
            "?token=audit".to_owned()
        } else if path.ends_with("/keys/changes") {
            format!("?from={0}&to={0}", encode(&self.since))
        } else {
            String::new()
        };
        format!("{}{query}", self.fill(shape))
    }

    /// `path` with each `{placeholder}` replaced by a value that names something real.
    fn fill(&self, path: &str) -> String {
        fill_path(path, |name| {
            let fixture = match name {
                "user_id" => Some(self.user.user_id.as_str()),
                "device_id" => Some(self.user.device_id.as_str()),
                "room_id" | "room_id_or_alias" => Some(self.room.as_str()),
                "event_id" => Some(self.event.as_str()),
                "version" => Some(self.backup.as_str()),
                "filter_id" => Some(self.filter.as_str()),
                "field" => Some("displayname"),
                _ => None,
            };
            fixture.map(str::to_owned).or_else(|| inert_placeholder(name, "audit")).unwrap_or_else(|| {
                panic!("{path}: give the placeholder {{{name}}} a value in `Fixture::fill` or `inert_placeholder`")
            })
        })
    }
}

/// Sends every variant to one route; returns a summary line and the problems found.
async fn audit_route(
    server: &TestServer,
    room: &str,
    index: usize,
    route: &hearth::testing::http::ruma::Route,
) -> (String, Vec<String>) {
    let mut fixture = Fixture::new(server, room, index).await;
    let mut problems = Vec::new();
    let mut expected = None;
    for variant in Variant::ALL {
        fixture.restore(server).await;
        let path = match variant {
            Variant::OtherSlash if !is_matrix_path(route.path) => continue,
            Variant::OtherSlash => fixture.request_path(route.path, &toggle_slash(route.path)),
            _ => fixture.request_path(route.path, route.path),
        };
        let answer = send_variant(server, &fixture.user, route.method.clone(), &path, variant).await;
        let (status, errcode) = &answer;
        let what = format!("{} {path} ({variant:?})", route.method);
        if status.is_server_error() {
            problems.push(format!("{what}: {status} {errcode:?}"));
        }
        if let Some(errcode @ ("M_NOT_JSON" | "M_UNRECOGNIZED")) = errcode.as_deref() {
            problems.push(format!("{what}: {status} {errcode}"));
        }
        match &expected {
            None => expected = Some(answer),
            Some(expected) if *expected != answer => {
                problems.push(format!("{what}: {status} {errcode:?}, but `{{}}` as JSON got {expected:?}"));
            }
            Some(_) => {}
        }
    }
    let summary = format!("{:>6} {:<80} {:?}", route.method.as_str(), route.path, expected);
    (summary, problems)
}

/// Sends one variant; returns the status and the errcode, if any.
async fn send_variant(
    server: &TestServer,
    user: &TestUser,
    method: Method,
    path: &str,
    variant: Variant,
) -> (StatusCode, Option<String>) {
    let url = match variant {
        Variant::QueryToken => {
            let separator = if path.contains('?') { '&' } else { '?' };
            server.url(&format!("{path}{separator}access_token={}", encode(&user.access_token)))
        }
        _ => server.url(path),
    };
    let mut request = server.http.request(method, url);
    if variant != Variant::QueryToken {
        request = request.bearer_auth(&user.access_token);
    }
    request = match variant {
        Variant::Absent => request,
        Variant::EmptyJson => request.header("content-type", "application/json").body(""),
        Variant::TextPlain => request.header("content-type", "text/plain").body("{}"),
        Variant::FormUrlEncoded => request.header("content-type", "application/x-www-form-urlencoded").body("{}"),
        Variant::NoContentType => request.body("{}"),
        Variant::Json | Variant::QueryToken | Variant::OtherSlash => {
            request.header("content-type", "application/json").body("{}")
        }
    };
    let response = request.send().await.expect("the request reaches the server");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["errcode"].as_str().map(str::to_owned))
}
