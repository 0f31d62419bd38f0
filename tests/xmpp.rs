//! XMPP clients against Hearth (`src/xmpp/`): a real XMPP client (slixmpp, installed into the
//! ignored build area) logs in and chats with a Matrix user driven over HTTP; raw sockets send
//! what no client would (bad XML, oversized stanzas).

use crate::clients::install::{slixmpp_python, xmpp_client_script};
use crate::common::TestServer;
use hearth::testing::xmpp::Mode;
use serde_json::{Value, json};
use sha2::Digest;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct XmppServer {
    pub server: TestServer,
    pub starttls_port: u16,
    direct_tls_port: u16,
    data_dir: tempfile::TempDir,
}

pub async fn start() -> XmppServer {
    start_with(|_| {}).await
}

pub async fn start_with(adjust: impl FnOnce(&mut hearth::config::Config)) -> XmppServer {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path().to_owned();
    let server = TestServer::start_with(move |config| {
        config.data_dir = path;
        config.xmpp.enabled = true;
        config.xmpp.max_stanza_size = 4096;
        adjust(config);
    })
    .await;
    let mut ports = Vec::new();
    for mode in [Mode::StartTls, Mode::DirectTls] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        ports.push(listener.local_addr().unwrap().port());
        tokio::spawn(hearth::testing::xmpp::serve(listener, mode, server.state.clone(), std::future::pending()));
    }
    XmppServer { server, starttls_port: ports[0], direct_tls_port: ports[1], data_dir }
}

/// The generated certificate's SHA-256 (what a client sees in the handshake).
fn generated_cert_sha256(xmpp: &XmppServer) -> String {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_file(xmpp.data_dir.path().join("xmpp-tls.crt")).unwrap();
    hex::encode(sha2::Sha256::digest(der.as_ref()))
}

/// Runs slixmpp with `args`; `on_line` sees each JSON line as it comes (and may act on it).
async fn run_client(args: &[&str], on_line: impl AsyncFnMut(&Value)) -> Vec<Value> {
    run_script(&xmpp_client_script(), args, on_line).await
}

/// Runs a slixmpp driver `script` with `args`, as [`run_client`] does.
/// The client script's arguments for its `chat` mode: alice (SCRAM-SHA-256, STARTTLS on
/// `port`) sends `text` to bob, then reports what comes back.
pub fn alice_chats_with_bob<'a>(port: &'a str, text: &'a str) -> [&'a str; 8] {
    ["127.0.0.1", port, "alice@hearth.test", "alice-password", "SCRAM-SHA-256", "chat", "bob@hearth.test", text]
}

pub async fn run_script(script: &std::path::Path, args: &[&str], mut on_line: impl AsyncFnMut(&Value)) -> Vec<Value> {
    let python = slixmpp_python().expect("slixmpp installs");
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let value: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            on_line(&value).await;
            let end = value["event"] == "end";
            seen.push(value);
            if end {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), read).await.unwrap_or_else(|_| panic!("client hung: {seen:?}"));
    seen
}

pub fn event<'a>(lines: &'a [Value], name: &str) -> Option<&'a Value> {
    lines.iter().find(|line| line["event"] == name)
}

/// The room bob is invited to, from his sync.
async fn invited_room(server: &TestServer, token: &str) -> String {
    for _ in 0..50 {
        let (_, body) = server.get("/_matrix/client/v3/sync?timeout=2000", Some(token)).await;
        if let Some((room, _)) = body["rooms"]["invite"].as_object().and_then(|rooms| rooms.iter().next()) {
            return room.clone();
        }
    }
    panic!("bob was never invited");
}

#[tokio::test]
async fn an_xmpp_client_and_a_matrix_user_chat_one_to_one() {
    let xmpp = start().await;
    let server = &xmpp.server;
    let _alice = server.register("alice", "alice-password").await;
    let bob = server.register("bob", "bob-password").await;
    let port = xmpp.starttls_port.to_string();
    let to_matrix = "héllo <matrix> & \"bob\" ✓";
    let to_xmpp = "hi alice, <from> Matrix & co ✓";
    let mut reply_id = None;
    let mut seen_in_room = None;
    let mut alice_presence = None;
    let args = alice_chats_with_bob(&port, to_matrix);
    let lines = run_client(&args, async |line| {
        if line["event"] != "sent" {
            return;
        }
        // Bob, on Matrix: the XMPP user's first message made a DM room and invited him.
        let room = invited_room(server, &bob.access_token).await;
        let (status, _) = server.post(&format!("/_matrix/client/v3/join/{room}"), bob.token(), json!({})).await;
        assert!(status.is_success());
        let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20");
        let (_, page) = server.get(&path, bob.token()).await;
        seen_in_room = page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .find(|event| event["type"] == "m.room.message")
            .map(|event| (event["sender"].clone(), event["content"].clone()));
        let (_, presence) = server.get("/_matrix/client/v3/presence/@alice:hearth.test/status", bob.token()).await;
        alice_presence = presence["presence"].as_str().map(str::to_owned);
        let path = "/_matrix/client/v3/presence/@bob:hearth.test/status";
        let (status, _) = server.put(path, bob.token(), json!({ "presence": "unavailable" })).await;
        assert!(status.is_success());
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/reply1");
        let (_, sent) = server.put(&path, bob.token(), json!({ "msgtype": "m.text", "body": to_xmpp })).await;
        reply_id = sent["event_id"].as_str().map(str::to_owned);
    })
    .await;

    let session = event(&lines, "session").unwrap_or_else(|| panic!("no session: {lines:?}"));
    assert!(session["jid"].as_str().unwrap().starts_with("alice@hearth.test/"), "{session}");
    assert_eq!(session["cert_sha256"], generated_cert_sha256(&xmpp), "STARTTLS with the generated certificate");
    assert_eq!(event(&lines, "roster").unwrap()["items"], json!({}), "no DM partner before the first message");
    let (sender, content) = seen_in_room.expect("bob sees the message");
    assert_eq!(sender, "@alice:hearth.test");
    assert_eq!(content, json!({ "msgtype": "m.text", "body": to_matrix }));
    assert_eq!(alice_presence.as_deref(), Some("online"), "XMPP presence is Matrix presence");
    let presence = event(&lines, "presence").unwrap_or_else(|| panic!("no presence reached XMPP: {lines:?}"));
    assert_eq!(presence, &json!({ "event": "presence", "type": null, "show": "away" }), "Matrix idle is XMPP away");
    let message = event(&lines, "message").unwrap_or_else(|| panic!("no answer reached XMPP: {lines:?}"));
    assert_eq!(message["body"], to_xmpp);
    assert_eq!(message["stanza_id"].as_str(), reply_id.as_deref(), "stanza-id is the event id");

    // Again over direct TLS with SCRAM-SHA-1: the roster now holds the DM partner.
    let port = xmpp.direct_tls_port.to_string();
    let args = ["127.0.0.1", &port, "alice@hearth.test", "alice-password", "SCRAM-SHA-1", "login-tls"];
    let lines = run_client(&args, async |_| {}).await;
    let session = event(&lines, "session").unwrap_or_else(|| panic!("no direct-TLS session: {lines:?}"));
    assert_eq!(session["cert_sha256"], generated_cert_sha256(&xmpp));
    let roster = &event(&lines, "roster").unwrap()["items"];
    assert_eq!(roster["bob@hearth.test"]["subscription"], "both", "{roster}");
    assert_eq!(roster.as_object().unwrap().len(), 1, "{roster}");
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_not_authorized() {
    // Attempts share /login's per-address rate: two tries, then even the right password waits.
    let xmpp = start_with(|config| {
        config.rate_limits.enabled = true;
        config.rate_limits.login_burst = 2;
        config.rate_limits.login_per_second = 0.001;
    })
    .await;
    xmpp.server.register("carol", "carol-password").await;
    let port = xmpp.starttls_port.to_string();
    for (user, password) in [("carol", "wrong-password"), ("nobody", "carol-password")] {
        let jid = format!("{user}@hearth.test");
        let args = ["127.0.0.1", &port, &jid, password, "SCRAM-SHA-256", "login"];
        let lines = run_client(&args, async |_| {}).await;
        assert!(event(&lines, "session").is_none(), "{lines:?}");
        let failure = event(&lines, "failed_auth").unwrap_or_else(|| panic!("no SASL failure: {lines:?}"));
        assert_eq!(failure["condition"], "not-authorized", "{user}");
    }
    let args = ["127.0.0.1", &port, "carol@hearth.test", "carol-password", "SCRAM-SHA-256", "login"];
    let lines = run_client(&args, async |_| {}).await;
    assert!(event(&lines, "session").is_none(), "{lines:?}");
    let failure = event(&lines, "failed_auth").unwrap_or_else(|| panic!("no SASL failure: {lines:?}"));
    assert_eq!(failure["condition"], "temporary-auth-failure");
}

/// Sends `input` on a fresh plain connection and returns everything the server wrote until it
/// closed the connection.
async fn raw_exchange(port: u16, input: &[u8]) -> String {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    socket.write_all(input).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
        .await
        .expect("the server closes the stream")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

const HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='hearth.test' version='1.0'>";

#[tokio::test]
async fn bad_input_ends_the_stream_with_a_stream_error() {
    let xmpp = start().await;
    let port = xmpp.starttls_port;
    let errors = "xmlns='urn:ietf:params:xml:ns:xmpp-streams'";

    let answer = raw_exchange(port, format!("{HEADER}<message><body></message>").as_bytes()).await;
    assert!(answer.contains(&format!("<stream:error><not-well-formed {errors}/>")), "{answer}");
    assert!(answer.ends_with("</stream:stream>"), "{answer}");

    let oversized = format!("{HEADER}<message><body>{}</body></message>", "x".repeat(10_000));
    let answer = raw_exchange(port, oversized.as_bytes()).await;
    assert!(answer.contains(&format!("<policy-violation {errors}/>")), "{answer}");

    let elsewhere = HEADER.replace("to='hearth.test'", "to='elsewhere.test'");
    let answer = raw_exchange(port, elsewhere.as_bytes()).await;
    assert!(answer.contains(&format!("<host-unknown {errors}/>")), "{answer}");

    // Authentication before TLS is refused: TLS comes first.
    let early = format!("{HEADER}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>");
    let answer = raw_exchange(port, early.as_bytes()).await;
    assert!(answer.contains(&format!("<policy-violation {errors}/>")), "{answer}");

    // And the server goes on serving: a new stream is offered STARTTLS.
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    socket.write_all(HEADER.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let mut buffer = [0u8; 4096];
    while !answer.contains("</stream:features>") {
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer)).await.unwrap().unwrap();
        assert!(read > 0, "closed: {answer}");
        answer.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    assert!(answer.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"), "{answer}");
}
