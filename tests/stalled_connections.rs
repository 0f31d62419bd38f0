//! Stalled connections are timed out (#15 item 9): partial headers, a partial body and an idle
//! kept-alive connection are each closed (or refused) after the configured time, instead of
//! holding a file descriptor for as long as the peer likes; a long-polling `/sync`, which is
//! being answered rather than waiting for the client, is not cut; and the server keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The configured timeouts, short so that the test is quick.
const TIMEOUT_SECS: u64 = 1;
/// Longer than a timeout by enough for a loaded machine; far shorter than "never".
const CLOSED_WITHIN: Duration = Duration::from_secs(5);

async fn server() -> TestServer {
    TestServer::start_with(|config| {
        config.limits.header_timeout_secs = TIMEOUT_SECS;
        config.limits.body_timeout_secs = TIMEOUT_SECS;
    })
    .await
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base_url.trim_start_matches("http://")).await.expect("connect")
}

/// Reads until the server closes the connection (within `CLOSED_WITHIN`); returns what it sent
/// and when it closed.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    read_until_closed_within(stream, CLOSED_WITHIN).await
}

async fn read_until_closed_within(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buffer)).await {
            Err(_) => panic!("the connection is still open after {limit:?}; received {received:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&received).into_owned(), started.elapsed()),
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

#[tokio::test]
async fn partial_headers_are_timed_out() {
    let server = server().await;
    let mut streams = Vec::new();
    for _ in 0..50 {
        let mut stream = connect(&server).await;
        stream.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: hearth.test\r\nX-Slow: ").await.unwrap();
        streams.push(stream);
    }
    for stream in &mut streams {
        let (_, after) = read_until_closed(stream).await;
        assert!(after < CLOSED_WITHIN, "closed after {after:?}");
    }
    let (status, body) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK, "the server still serves: {body}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let server = server().await;
    let mut stream = connect(&server).await;
    stream.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: hearth.test\r\n\r\n").await.unwrap();
    let mut buffer = [0u8; 4096];
    let read = stream.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"), "answered first");
    // Then nothing more is asked: the connection is closed, not kept forever.
    let (_, after) = read_until_closed(&mut stream).await;
    assert!(after >= Duration::from_millis(500), "kept alive for a while: {after:?}");
}

#[tokio::test]
async fn a_stalled_body_is_refused() {
    let server = server().await;
    let alice = server.register("alice", "stalled-password").await;
    let mut stream = connect(&server).await;
    let path = format!("/_matrix/client/v3/user/{}/account_data/org.example.x", alice.user_id);
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: hearth.test\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"a\": ",
        alice.access_token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Refused after the body timeout; closed once the server has stopped waiting for the rest
    // it would read and throw away (`http::linger`'s pause, 5 s) after answering.
    let (answer, _) = read_until_closed_within(&mut stream, Duration::from_secs(12)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("M_UNKNOWN"), "{answer}");
    assert_eq!(server.count("SELECT count(*) FROM account_data WHERE data_type = 'org.example.x'").await, 0);
}

/// A long-poll waits for the server, not for the client: no timeout cuts it.
#[tokio::test]
async fn a_long_poll_outlives_the_timeouts() {
    let server = server().await;
    let alice = server.register("alice", "stalled-password").await;
    let (_, first) = server.get("/_matrix/client/v3/sync", alice.token()).await;
    let since = encode(first["next_batch"].as_str().unwrap());
    let started = Instant::now();
    let path = format!("/_matrix/client/v3/sync?timeout=3000&set_presence=offline&since={since}");
    let (status, body) = server.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(2900), "waited its timeout: {:?}", started.elapsed());
}

/// A client that leaves while its long-poll waits is not waited for: its wait ends (it no
/// longer counts as a waiter) long before its timeout.
#[tokio::test]
async fn a_long_poll_whose_client_left_stops_waiting() {
    let server = server().await;
    let alice = server.register("alice", "stalled-password").await;
    let (_, first) = server.get("/_matrix/client/v3/sync", alice.token()).await;
    let since = encode(first["next_batch"].as_str().unwrap());
    let notifier = &server.state.streams.notifier;
    let before = notifier.registrations();
    let mut stream = connect(&server).await;
    let request = format!(
        "GET /_matrix/client/v3/sync?timeout=120000&set_presence=offline&since={since} HTTP/1.1\r\n\
         Host: hearth.test\r\nAuthorization: Bearer {}\r\n\r\n",
        alice.access_token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let waiting = Instant::now();
    while notifier.registrations() <= before {
        assert!(waiting.elapsed() < CLOSED_WITHIN, "the long-poll never started waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(stream);
    let left = Instant::now();
    while notifier.registrations() > before {
        assert!(left.elapsed() < CLOSED_WITHIN, "still waiting for a client that left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
