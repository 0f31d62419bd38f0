//! Stopping (#15 item 8): SIGTERM answers the syncs waiting on new data at once — an empty
//! answer with the current `next_batch`, which the client simply resumes from against the next
//! server — and the process exits within two seconds, well inside Docker's ten before SIGKILL.
//! `hearth serve` runs as its own process here, on a database of the test cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "shutdown-password";

#[tokio::test]
async fn sigterm_answers_waiting_syncs_at_once_and_exits_within_two_seconds() {
    let (database, pool) = fresh_database().await;
    pool.close().await;
    let data_dir = tempfile::tempdir().expect("data dir");
    let port = crate::common::ports::port_for_child();
    let xmpp_port = crate::common::ports::port_for_child();
    let url = format!(
        "postgres://{}@localhost/{database}?host={}",
        hearth::testing::db::embedded::SUPERUSER,
        cluster_dir().display()
    );
    let log = data_dir.path().join("serve.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HEARTH_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .arg("serve")
        .envs([
            ("HEARTH_SERVER_NAME", SERVER_NAME),
            ("HEARTH_LISTEN", &format!("127.0.0.1:{port}")),
            ("HEARTH_DATA_DIR", &data_dir.path().display().to_string()),
            ("HEARTH_DATABASE__URL", &url),
            ("HEARTH_REGISTRATION__ENABLED", "true"),
            ("HEARTH_RATE_LIMITS__ENABLED", "false"),
            // The XMPP listener starts from the configuration alone (#22).
            ("HEARTH_XMPP__ENABLED", "true"),
            ("HEARTH_XMPP__LISTEN", &format!("127.0.0.1:{xmpp_port}")),
        ])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("spawn hearth serve");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let ready = Instant::now();
    while !http
        .get(format!("{base}/_matrix/client/versions"))
        .send()
        .await
        .is_ok_and(|response| response.status() == StatusCode::OK)
    {
        assert!(ready.elapsed() < Duration::from_secs(30), "{}", std::fs::read_to_string(&log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, registered) = send_json(
        &http,
        reqwest::Method::POST,
        &format!("{base}/_matrix/client/v3/register"),
        None,
        Some(json!({"username": "alice", "password": PASSWORD, "auth": {"type": "m.login.dummy"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{registered}");
    let token = registered["access_token"].as_str().unwrap().to_owned();
    let sync = |since: Option<String>| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        async move {
            let since = since.map(|since| format!("&since={}", encode(&since))).unwrap_or_default();
            let url = format!("{base}/_matrix/client/v3/sync?timeout=30000&set_presence=offline{since}");
            let started = Instant::now();
            let answer = send_json(&http, reqwest::Method::GET, &url, Some(&token), None).await;
            (answer, started.elapsed())
        }
    };
    let ((status, first), _) = sync(None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let waiting: Vec<_> = (0..3).map(|_| tokio::spawn(sync(Some(since.clone())))).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(waiting.iter().all(|sync| !sync.is_finished()), "the syncs wait for news");

    let mut xmpp = xmpp_stream_opened(xmpp_port).await;

    let signalled = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    for waiting in waiting {
        let ((status, body), _) = waiting.await.unwrap();
        assert_eq!(status, StatusCode::OK, "a waiting sync is answered: {body}");
        let next: &Value = &body["next_batch"];
        assert!(next.is_string(), "{body}");
        assert!(body.get("rooms").is_none(), "nothing new: {body}");
    }
    let answered = signalled.elapsed();
    // An open XMPP stream is told why it ends.
    let mut ending = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), xmpp.read_to_end(&mut ending)).await.unwrap().ok();
    let ending = String::from_utf8_lossy(&ending);
    assert!(ending.contains("<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"), "{ending}");
    assert!(ending.ends_with("</stream:stream>"), "{ending}");
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("hearth did not exit within 10 s:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stopped = signalled.elapsed();
    println!("waiting syncs answered in {answered:?}, process exited in {stopped:?}");
    assert_eq!(exited.code(), Some(0), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(answered < Duration::from_secs(1), "syncs answered after {answered:?}");
    assert!(stopped < Duration::from_secs(2), "exited after {stopped:?}");
}

/// A client stream on `hearth serve`'s XMPP listener, opened up to the offer of STARTTLS.
async fn xmpp_stream_opened(port: u16) -> tokio::net::TcpStream {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("the XMPP listener is up");
    let header = format!(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{SERVER_NAME}' version='1.0'>"
    );
    socket.write_all(header.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let mut buffer = [0u8; 4096];
    while !answer.contains("</stream:features>") {
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer)).await.unwrap().unwrap();
        assert!(read > 0, "closed: {answer}");
        answer.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    assert!(answer.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"), "{answer}");
    socket
}
