//! `broadcast` (Hearth only: its `/_hearth/client/v1` API, docs/API.md): a creator with N
//! subscribers sends one message to a list of all of them, then a second one; each measured
//! from the `PUT` of the send until its progress says `done`, with every recipient `sent` (the
//! validity check). The first creates a DM per subscriber (the expensive case), the second
//! goes to those DMs. Only the operator makes a creator, so `--make-creator` is the command
//! that does (e.g. `hearth --config FILE user creator {user}`).

use crate::actions::{SETUP_CONCURRENCY, bounded};
use crate::client::{MatrixClient, answer_text};
use crate::progress::Progress;
use crate::provisioning::{BenchUser, Registration, RunPrefix, register_user};
use crate::report::{FigureRow, ServerRun};
use crate::scenarios::{Scenario, ServerContext};
use anyhow::{Context, Result, anyhow, bail};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Serialize)]
pub struct BroadcastParameters {
    pub subscribers: u32,
    /// Run through `sh -c` with `{user}` replaced by the creator's user id.
    pub make_creator: String,
    /// The server's process, whose tree's CPU time is measured around each phase.
    pub server_pid: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BroadcastRun {
    pub homeserver: String,
    pub creator: String,
    pub phases: Vec<BroadcastPhase>,
}

/// One broadcast to the whole list.
#[derive(Clone, Debug, Serialize)]
pub struct BroadcastPhase {
    /// `new_dms` or `existing_dms`.
    pub name: &'static str,
    pub total: u64,
    pub sent: u64,
    pub skipped: u64,
    pub failed: u64,
    /// From the send request until `state` is `done`.
    pub seconds: f64,
    pub recipients_per_s: f64,
    /// How long the send request itself took (the job runs after it answers).
    pub send_request_ms: f64,
    /// CPU time of the server's process tree (Hearth and its embedded PostgreSQL) from the
    /// send until `done`, per recipient sent; with `--server-pid` only.
    pub cpu_ms_per_recipient: Option<f64>,
    pub valid: bool,
}

pub struct BroadcastScenario(pub BroadcastParameters);

impl Scenario for BroadcastScenario {
    type Parameters = BroadcastParameters;
    type Run = BroadcastRun;
    const NAME: &'static str = "broadcast";

    fn parameters(&self) -> &BroadcastParameters {
        &self.0
    }

    fn headline(&self) -> String {
        format!(
            "broadcast: two messages to a list of {} subscribers (the first creates each one's DM)",
            self.0.subscribers
        )
    }

    async fn run(&self, server: ServerContext<'_>) -> Result<BroadcastRun> {
        run(server.client, server.registration, server.prefix, &self.0).await
    }
}

impl ServerRun for BroadcastRun {
    fn homeserver(&self) -> &str {
        &self.homeserver
    }

    fn valid(&self) -> bool {
        self.phases.iter().all(|phase| phase.valid)
    }

    fn write_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  {:<14}{:>8}{:>8}{:>9}{:>8}{:>10}{:>14}{:>10}{:>16}",
            "phase", "total", "sent", "skipped", "failed", "seconds", "recipients/s", "send ms", "CPU ms/recip."
        );
        for phase in &self.phases {
            let _ = writeln!(
                out,
                "  {:<14}{:>8}{:>8}{:>9}{:>8}{:>10.2}{:>14.1}{:>10.1}{:>16}",
                phase.name,
                phase.total,
                phase.sent,
                phase.skipped,
                phase.failed,
                phase.seconds,
                phase.recipients_per_s,
                phase.send_request_ms,
                phase.cpu_ms_per_recipient.map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.2}"))
            );
        }
        let _ = writeln!(out, "  every recipient sent: {}", if self.valid() { "yes" } else { "NO" });
    }

    fn comparable(&self) -> Vec<FigureRow> {
        let row = |phase: &BroadcastPhase| FigureRow {
            name: phase.name.to_owned(),
            figures: vec![("recipients_per_s", phase.recipients_per_s), ("seconds", phase.seconds)],
        };
        self.phases.iter().map(row).collect()
    }
}

async fn run(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    parameters: &BroadcastParameters,
) -> Result<BroadcastRun> {
    let server = client.base().to_string();
    client.check_reachable().await?;
    eprintln!("{server}: registering the creator");
    let creator = register_user(client, registration, &prefix.localpart("creator")).await?;
    make_creator(&parameters.make_creator, &creator.user_id)?;

    let count = parameters.subscribers;
    eprintln!("{server}: registering {count} subscribers");
    let progress = Progress::start("subscribers".to_owned(), u64::from(count));
    let subscribers = bounded(
        SETUP_CONCURRENCY,
        (0..count).map(|index| {
            let done = progress.counter();
            let creator = creator.user_id.clone();
            async move {
                let user = register_user(client, registration, &prefix.localpart(&format!("fan{index}"))).await?;
                let url = client.url(&["_hearth", "client", "v1", "creators", &creator, "subscription"])?;
                client.request(Method::PUT, url, Some(&user.access_token), Some(&json!({}))).await?;
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(user.user_id)
            }
        }),
    )
    .await?;
    progress.finish().await;

    let lists = client.url(&["_hearth", "client", "v1", "broadcast", "lists"])?;
    let created = call(client, &creator, Method::POST, lists, json!({"name": prefix.as_str()})).await?;
    let list_id = created["list_id"].as_str().ok_or_else(|| anyhow!("no list_id: {}", answer_text(&created)))?;
    for chunk in subscribers.chunks(1000) {
        let url = client.url(&["_hearth", "client", "v1", "broadcast", "lists", list_id, "members"])?;
        call(client, &creator, Method::POST, url, json!({"user_ids": chunk})).await?;
    }

    let mut phases = Vec::new();
    for name in ["new_dms", "existing_dms"] {
        eprintln!("{server}: broadcasting to {count} subscribers ({name})");
        let cpu_before = cpu_ms(parameters.server_pid)?;
        let mut phase = broadcast_phase(client, &creator, prefix, list_id, name, count).await?;
        if let (Some(before), Some(after)) = (cpu_before, cpu_ms(parameters.server_pid)?) {
            phase.cpu_ms_per_recipient = Some((after - before) / (phase.sent.max(1) as f64));
        }
        phases.push(phase);
    }
    Ok(BroadcastRun { homeserver: server, creator: creator.user_id, phases })
}

/// One send to the list, timed until its progress is `done`.
async fn broadcast_phase(
    client: &MatrixClient,
    creator: &BenchUser,
    prefix: &RunPrefix,
    list_id: &str,
    name: &'static str,
    count: u32,
) -> Result<BroadcastPhase> {
    let txn_id = format!("{}-{name}", prefix.as_str());
    let send = client.url(&["_hearth", "client", "v1", "broadcast", "lists", list_id, "send", &txn_id])?;
    let message = json!({"msgtype": "m.text", "body": format!("hearth-bench broadcast ({name})")});
    let started = Instant::now();
    let sent = call(client, creator, Method::PUT, send, message).await?;
    let send_request = started.elapsed();
    let broadcast_id =
        sent["broadcast_id"].as_str().ok_or_else(|| anyhow!("no broadcast_id: {}", answer_text(&sent)))?;
    let url = client.url(&["_hearth", "client", "v1", "broadcast", "broadcasts", broadcast_id])?;
    let done = loop {
        let answer = client.request(Method::GET, url.clone(), Some(&creator.access_token), None).await?;
        if answer["state"] == "done" {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let figure = |field: &str| done[field].as_u64().unwrap_or(0);
    let (total, delivered) = (figure("total"), figure("sent"));
    Ok(BroadcastPhase {
        name,
        total,
        sent: delivered,
        skipped: figure("skipped"),
        failed: figure("failed"),
        seconds,
        recipients_per_s: delivered as f64 / seconds.max(f64::EPSILON),
        send_request_ms: send_request.as_secs_f64() * 1000.0,
        cpu_ms_per_recipient: None,
        valid: total == u64::from(count) && delivered == total,
    })
}

async fn call(
    client: &MatrixClient,
    user: &BenchUser,
    method: Method,
    url: reqwest::Url,
    body: Value,
) -> Result<Value> {
    client.request(method, url, Some(&user.access_token), Some(&body)).await
}

/// CPU time so far of the server's process tree, when its pid was given.
fn cpu_ms(server_pid: Option<u32>) -> Result<Option<f64>> {
    server_pid.map(crate::process::cpu_ms_of_tree).transpose()
}

/// Runs the operator's command that makes `user_id` a creator.
fn make_creator(command: &str, user_id: &str) -> Result<()> {
    let command = command.replace("{user}", user_id);
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .status()
        .with_context(|| format!("cannot run `{command}`"))?;
    if !status.success() {
        bail!("`{command}` failed ({status}): the creator cannot be made");
    }
    Ok(())
}
