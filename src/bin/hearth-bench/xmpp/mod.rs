//! `xmpp`: an XMPP server measured with XMPP clients (`client.rs`): the login rate (connect,
//! STARTTLS, SASL PLAIN, bind, one after another), with a Matrix peer the message latency
//! XMPP→Matrix and Matrix→XMPP, and with the server's process id the memory each idle,
//! logged-in connection costs. Everything but the latency works against any XMPP server, so
//! the same run measures Hearth and Prosody (docs/PERFORMANCE.md).

pub mod client;

use crate::actions::{join_room, messages_filter, next_batch, send_message, sync};
use crate::cli::XmppArgs;
use crate::client::{MatrixClient, answer_text};
use crate::process::{self, Memory, SPARE_FILES};
use crate::provisioning::BenchUser;
use crate::stats::Latency;
use anyhow::{Context, Result, anyhow, bail};
use client::{Account, XmppConnection, log_in};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Idle connections opened at once (more would only measure the server's accept backlog).
const OPEN_CONCURRENCY: usize = 20;

#[derive(Debug, Serialize)]
struct XmppRun {
    server: String,
    logins: u32,
    logins_per_s: f64,
    login_ms: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    xmpp_to_matrix_ms: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    matrix_to_xmpp_ms: Option<Latency>,
    idle_connections: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_before: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_after: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_idle_connection: Option<f64>,
}

pub async fn run(args: XmppArgs) -> Result<()> {
    process::raise_open_file_limit(u64::from(args.connections) + SPARE_FILES)?;
    if let Some(pid) = args.server_pid {
        process::memory_of(pid)?;
    }
    let tls = client::connector()?;
    let account = |index: u32| Account {
        address: args.xmpp.clone(),
        domain: args.domain.clone(),
        user: match args.users {
            1 => args.user.clone(),
            users => format!("{}{}", args.user, index % users + 1),
        },
        password: args.password.clone(),
    };
    let nonce = format!("{:08x}", rand_u32());

    eprintln!("xmpp: {} logins one after another", args.logins);
    let mut samples = Vec::new();
    let started = Instant::now();
    for index in 0..args.logins {
        let begun = Instant::now();
        let connection = log_in(&account(index), &format!("bench-login-{nonce}-{index}"), &tls).await?;
        samples.push(begun.elapsed());
        drop(connection);
    }
    let logins_per_s = f64::from(args.logins) / started.elapsed().as_secs_f64();

    let (xmpp_to_matrix_ms, matrix_to_xmpp_ms) = match (&args.homeserver, &args.peer_user) {
        (Some(homeserver), Some(peer)) => {
            let matrix = MatrixClient::new(homeserver.clone())?;
            let peer = matrix_login(&matrix, peer, &args.peer_password).await?;
            let mut xmpp = log_in(&account(0), &format!("bench-chat-{nonce}"), &tls).await?;
            let (to_matrix, to_xmpp) = latencies(&args, &matrix, &peer, &mut xmpp, &nonce).await?;
            (Some(to_matrix), Some(to_xmpp))
        }
        _ => (None, None),
    };

    eprintln!("xmpp: opening {} idle connections", args.connections);
    let memory_before = args.server_pid.map(process::memory_of).transpose()?;
    let opened = crate::actions::bounded(
        OPEN_CONCURRENCY,
        (0..args.connections).map(|index| {
            let (account, tls) = (account(index), tls.clone());
            let resource = format!("bench-idle-{nonce}-{index}");
            async move { log_in(&account, &resource, &tls).await }
        }),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(args.settle_s)).await;
    let memory_after = args.server_pid.map(process::memory_of).transpose()?;
    let bytes_per_idle_connection = memory_before.zip(memory_after).map(|(before, after)| {
        (after.rss_kib as f64 - before.rss_kib as f64) * 1024.0 / f64::from(args.connections.max(1))
    });
    drop(opened);

    let run = XmppRun {
        server: args.xmpp.clone(),
        logins: args.logins,
        logins_per_s,
        login_ms: Latency::from_samples(&samples),
        xmpp_to_matrix_ms,
        matrix_to_xmpp_ms,
        idle_connections: args.connections,
        memory_before,
        memory_after,
        bytes_per_idle_connection,
    };
    print!("{}", table(&run));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&run)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    nanos.subsec_nanos() ^ std::process::id()
}

async fn matrix_login(matrix: &MatrixClient, user: &str, password: &str) -> Result<BenchUser> {
    let url = matrix.url(&["_matrix", "client", "v3", "login"])?;
    let body = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": user }, "password": password });
    let answer = matrix.request(Method::POST, url, None, Some(&body)).await.context("the Matrix peer cannot log in")?;
    let field = |name: &str| {
        answer[name].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no `{name}` in {}", answer_text(&answer)))
    };
    Ok(BenchUser { user_id: field("user_id")?, access_token: field("access_token")? })
}

/// The DM room of the XMPP user and the peer: the XMPP user's first message makes it (or finds
/// it) and invites the peer, who joins.
async fn dm_room(
    matrix: &MatrixClient,
    peer: &BenchUser,
    xmpp: &mut XmppConnection,
    to: &str,
    nonce: &str,
) -> Result<String> {
    let warm_up = format!("warm-up-{nonce}");
    xmpp.send(&format!("<message to='{to}' type='chat' id='{warm_up}'><body>{warm_up}</body></message>")).await?;
    for _ in 0..100 {
        let answer = sync(matrix, peer, None, None, 0).await?;
        for (room, joined) in answer["rooms"]["join"].as_object().into_iter().flatten() {
            if timeline_has(joined, &warm_up) {
                return Ok(room.clone());
            }
        }
        for room in answer["rooms"]["invite"].as_object().into_iter().flatten().map(|(room, _)| room) {
            join_room(matrix, peer, room).await?;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the XMPP user's message never reached the Matrix peer")
}

fn timeline_has(room: &Value, body: &str) -> bool {
    room["timeline"]["events"].as_array().into_iter().flatten().any(|event| event["content"]["body"] == body)
}

/// One message at a time each way; the time from sending to the other side reading it.
async fn latencies(
    args: &XmppArgs,
    matrix: &MatrixClient,
    peer: &BenchUser,
    xmpp: &mut XmppConnection,
    nonce: &str,
) -> Result<(Latency, Latency)> {
    let peer_jid =
        format!("{}@{}", peer.user_id.trim_start_matches('@').split(':').next().unwrap_or_default(), args.domain);
    let room = dm_room(matrix, peer, xmpp, &peer_jid, nonce).await?;
    let filter = messages_filter(&[room.as_str()], 50);
    let mut since = next_batch(&sync(matrix, peer, Some(&filter), None, 0).await?)?;
    eprintln!("xmpp: {} messages XMPP→Matrix, then {} Matrix→XMPP", args.messages, args.messages);
    let mut to_matrix = Vec::new();
    for index in 0..args.messages {
        let body = format!("x2m-{nonce}-{index}");
        let sent = Instant::now();
        xmpp.send(&format!("<message to='{peer_jid}' type='chat' id='{body}'><body>{body}</body></message>")).await?;
        loop {
            let answer = sync(matrix, peer, Some(&filter), Some(&since), 30_000).await?;
            since = next_batch(&answer)?;
            if timeline_has(&answer["rooms"]["join"][&room], &body) {
                break;
            }
            if sent.elapsed() > Duration::from_secs(60) {
                bail!("{body} never reached the Matrix peer");
            }
        }
        to_matrix.push(sent.elapsed());
    }
    let mut to_xmpp = Vec::new();
    for index in 0..args.messages {
        let body = format!("m2x-{nonce}-{index}");
        let sent = Instant::now();
        send_message(matrix, peer, &room, &body, &json!({ "msgtype": "m.text", "body": body })).await?;
        xmpp.wait_for(&format!(">{body}<")).await?;
        to_xmpp.push(sent.elapsed());
    }
    Ok((Latency::from_samples(&to_matrix), Latency::from_samples(&to_xmpp)))
}

fn table(run: &XmppRun) -> String {
    use std::fmt::Write as _;
    let mut out = format!("xmpp: {}\n", run.server);
    let latency =
        |l: &Latency| format!("p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms", l.p50, l.p95, l.p99, l.max);
    let _ = writeln!(out, "  logins        {:>6}  {:>8.1}/s  {}", run.logins, run.logins_per_s, latency(&run.login_ms));
    for (name, figures) in [("XMPP→Matrix", &run.xmpp_to_matrix_ms), ("Matrix→XMPP", &run.matrix_to_xmpp_ms)] {
        if let Some(figures) = figures {
            let _ = writeln!(out, "  {name:<13} {}", latency(figures));
        }
    }
    let mib = |m: &Option<Memory>| m.map_or("-".to_owned(), |m| format!("{:.1} MiB", m.rss_kib as f64 / 1024.0));
    let per = run.bytes_per_idle_connection.map_or("-".to_owned(), |b| format!("{:.0} B", b));
    let _ = writeln!(
        out,
        "  idle          {:>6}  RSS before {}  after {}  per connection {}",
        run.idle_connections,
        mib(&run.memory_before),
        mib(&run.memory_after),
        per
    );
    out
}
