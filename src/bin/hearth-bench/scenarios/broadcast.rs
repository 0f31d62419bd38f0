//! `broadcast` (Hearth only: its `/_hearth/client/v1` API, docs/API.md): a creator with N
//! subscribers sends one message to a list of all of them; measured from the `PUT` of the send
//! until its progress says `done`, with every recipient `sent` (the validity check). Each
//! subscriber gets a new DM, the expensive case. Only the operator makes a creator, so
//! `--make-creator` is the command that does (e.g. `hearth --config FILE user creator {user}`).

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
}

#[derive(Clone, Debug, Serialize)]
pub struct BroadcastRun {
    pub homeserver: String,
    pub creator: String,
    pub total: u64,
    pub sent: u64,
    pub skipped: u64,
    pub failed: u64,
    /// From the send request until `state` is `done`.
    pub seconds: f64,
    pub recipients_per_s: f64,
    /// How long the send request itself took (the job runs after it answers).
    pub send_request_ms: f64,
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
        format!("broadcast: one message to a list of {} subscribers, each in a new DM", self.0.subscribers)
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
        self.valid
    }

    fn write_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  {:>10}{:>8}{:>9}{:>8}{:>10}{:>14}{:>12}",
            "total", "sent", "skipped", "failed", "seconds", "recipients/s", "send ms"
        );
        let _ = writeln!(
            out,
            "  {:>10}{:>8}{:>9}{:>8}{:>10.2}{:>14.1}{:>12.1}",
            self.total, self.sent, self.skipped, self.failed, self.seconds, self.recipients_per_s, self.send_request_ms
        );
        let _ = writeln!(out, "  every recipient sent: {}", if self.valid { "yes" } else { "NO" });
    }

    fn comparable(&self) -> Vec<FigureRow> {
        vec![FigureRow {
            name: "broadcast".to_owned(),
            figures: vec![("recipients_per_s", self.recipients_per_s), ("seconds", self.seconds)],
        }]
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

    eprintln!("{server}: broadcasting to {count} subscribers");
    let txn_id = format!("{}-broadcast", prefix.as_str());
    let send = client.url(&["_hearth", "client", "v1", "broadcast", "lists", list_id, "send", &txn_id])?;
    let message = json!({"msgtype": "m.text", "body": "hearth-bench broadcast"});
    let started = Instant::now();
    let sent = call(client, &creator, Method::PUT, send, message).await?;
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
    let figure = |name: &str| done[name].as_u64().unwrap_or(0);
    let (total, delivered) = (figure("total"), figure("sent"));
    Ok(BroadcastRun {
        homeserver: server,
        creator: creator.user_id,
        total,
        sent: delivered,
        skipped: figure("skipped"),
        failed: figure("failed"),
        seconds,
        recipients_per_s: delivered as f64 / seconds.max(f64::EPSILON),
        send_request_ms: send_request.as_secs_f64() * 1000.0,
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
