//! Stream management with resumption (XEP-0198): slixmpp (with its xep_0198 plugin) enables
//! resumption, its TCP connection is cut mid-conversation, a Matrix user goes on talking, and
//! the client reconnects. Within `xmpp.resume_timeout_secs` the stream resumes and every
//! message arrives exactly once; after it, `<resume/>` fails with `item-not-found` and a fresh
//! session finds the messages in the archive (MAM).

use crate::clients::install::{slixmpp_python, xmpp_client_script};
use crate::common::{TestServer, TestUser};
use crate::xmpp::{event, start_with};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const WHILE_DOWN: [&str; 3] = ["while down 1", "while down 2", "while down 3"];

/// Bob (Matrix) opens a DM with alice (XMPP) and says "before drop"; when alice's connection
/// is cut he sends `WHILE_DOWN`, waits `pause`, and lets her reconnect. The script's lines.
async fn conversation_across_a_drop(server: &TestServer, bob: &TestUser, port: u16, pause: Duration) -> Vec<Value> {
    let python = slixmpp_python().expect("slixmpp installs");
    let script = xmpp_client_script().with_file_name("scenario.py");
    let port = port.to_string();
    let args = ["127.0.0.1", &port, "alice@hearth.test", "alice-password", "resume", "bob@hearth.test", WHILE_DOWN[2]];
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen: Vec<Value> = Vec::new();
    let mut room = String::new();
    let converse = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let line: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            seen.push(line.clone());
            match line["event"].as_str() {
                Some("session") if room.is_empty() => {
                    let create = json!({ "preset": "trusted_private_chat", "is_direct": true, "invite": ["@alice:hearth.test"] });
                    let (_, created) = server.post("/_matrix/client/v3/createRoom", bob.token(), create).await;
                    room = created["room_id"].as_str().unwrap().to_owned();
                    say(server, bob, &room, "before drop").await;
                }
                Some("dropping") => {
                    for text in WHILE_DOWN {
                        say(server, bob, &room, text).await;
                    }
                    tokio::time::sleep(pause).await;
                    stdin.write_all(b"go\n").await.unwrap();
                }
                Some("end") => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), converse).await.unwrap_or_else(|_| panic!("client hung: {seen:?}"));
    seen
}

async fn say(server: &TestServer, from: &TestUser, room: &str, text: &str) {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{}", text.replace(' ', "-"));
    let (status, body) = server.put(&path, from.token(), json!({ "msgtype": "m.text", "body": text })).await;
    assert!(status.is_success(), "{body}");
}

fn bodies(lines: &[Value]) -> Vec<&str> {
    lines.iter().filter(|line| line["event"] == "message").filter_map(|line| line["body"].as_str()).collect()
}

#[tokio::test]
async fn a_resumed_stream_gets_every_message_sent_while_the_connection_was_down_exactly_once() {
    let xmpp = start_with(|config| config.xmpp.resume_timeout_secs = 60).await;
    let server = &xmpp.server;
    server.register("alice", "alice-password").await;
    let bob = server.register("bob", "bob-password").await;

    let lines = conversation_across_a_drop(server, &bob, xmpp.starttls_port, Duration::ZERO).await;

    let resumed = event(&lines, "resumed").unwrap_or_else(|| panic!("the stream was not resumed: {lines:?}"));
    assert_eq!(resumed["h"], resumed["client_sent"], "the server handled every stanza the client sent: {lines:?}");
    assert!(event(&lines, "resume_failed").is_none(), "{lines:?}");
    let sessions = lines.iter().filter(|line| line["event"] == "session").count();
    assert_eq!(sessions, 1, "resumption binds no new resource: {lines:?}");
    let mut expected = vec!["before drop"];
    expected.extend(WHILE_DOWN);
    assert_eq!(bodies(&lines), expected, "each message once, in order: {lines:?}");
}

#[tokio::test]
async fn after_the_resumption_timeout_resume_fails_and_the_archive_has_the_messages() {
    let xmpp = start_with(|config| config.xmpp.resume_timeout_secs = 1).await;
    let server = &xmpp.server;
    server.register("alice", "alice-password").await;
    let bob = server.register("bob", "bob-password").await;

    let lines = conversation_across_a_drop(server, &bob, xmpp.starttls_port, Duration::from_millis(2500)).await;

    let failed = event(&lines, "resume_failed").unwrap_or_else(|| panic!("resumption did not fail: {lines:?}"));
    assert_eq!(failed["condition"], "item-not-found");
    assert!(event(&lines, "resumed").is_none(), "{lines:?}");
    assert_eq!(bodies(&lines), ["before drop"], "nothing arrives live on the new session: {lines:?}");
    let archive = event(&lines, "archive").unwrap_or_else(|| panic!("no archive read: {lines:?}"));
    let archived: Vec<&str> =
        archive["messages"].as_array().unwrap().iter().filter_map(|m| m["body"].as_str()).collect();
    let mut expected = vec!["before drop"];
    expected.extend(WHILE_DOWN);
    assert_eq!(archived, expected, "the fresh session finds what it missed in MAM: {lines:?}");
}
