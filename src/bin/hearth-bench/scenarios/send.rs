//! `send`: one user creates one room and sends N messages one after another, then N more
//! from C concurrent senders (the same user, distinct transaction ids). Each request's
//! latency runs from the start of the `PUT` until its answer has been read.

use crate::client::MatrixClient;
use crate::progress::Progress;
use crate::provisioning::{BenchUser, Registration, RunPrefix, register_user};
use crate::report::{FigureRow, LATENCY_HEADER, ServerRun, latency_columns};
use crate::scenarios::{Scenario, ServerContext};
use crate::stats::PhaseResult;
use anyhow::{Context, Result, anyhow};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct SendParameters {
    pub messages: u32,
    pub concurrency: u32,
}

/// The figures of one server.
#[derive(Clone, Debug, Serialize)]
pub struct SendRun {
    pub homeserver: String,
    pub user_id: String,
    pub room_id: String,
    pub phases: Vec<PhaseResult>,
}

pub struct SendScenario(pub SendParameters);

impl Scenario for SendScenario {
    type Parameters = SendParameters;
    type Run = SendRun;
    const NAME: &'static str = "send";

    fn parameters(&self) -> &SendParameters {
        &self.0
    }

    fn headline(&self) -> String {
        format!(
            "send: {} messages per phase, {} concurrent senders in the concurrent phase",
            self.0.messages, self.0.concurrency
        )
    }

    async fn run(&self, server: ServerContext<'_>) -> Result<SendRun> {
        run(server.client, server.registration, server.prefix, self.0).await
    }
}

impl ServerRun for SendRun {
    fn homeserver(&self) -> &str {
        &self.homeserver
    }

    fn write_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  {:<12}{:>8}{:>10}{:>10}{:>10}{LATENCY_HEADER}",
            "phase", "senders", "messages", "seconds", "msg/s"
        );
        for phase in &self.phases {
            let _ = writeln!(
                out,
                "  {:<12}{:>8}{:>10}{:>10.2}{:>10.1}{}",
                phase.name,
                phase.concurrency,
                phase.messages,
                phase.elapsed_s,
                phase.messages_per_s,
                latency_columns(&phase.latency_ms)
            );
        }
    }

    fn comparable(&self) -> Vec<FigureRow> {
        self.phases.iter().map(FigureRow::of_phase).collect()
    }
}

async fn run(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    parameters: SendParameters,
) -> Result<SendRun> {
    let server = client.base().to_string();
    client.check_reachable().await?;
    eprintln!("{server}: registering a user and creating a room");
    let user = register_user(client, registration, &prefix.localpart("sender")).await?;
    let room_id = create_room(client, &user).await?;
    let room = Room { client: client.clone(), user: Arc::new(user.clone()), room_id: room_id.clone() };

    eprintln!("{server}: sending {} messages one after another", parameters.messages);
    let sequential = sequential_phase(&room, prefix, parameters.messages).await?;
    eprintln!("{server}: sending {} messages from {} concurrent senders", parameters.messages, parameters.concurrency);
    let concurrent = concurrent_phase(&room, prefix, parameters).await?;

    Ok(SendRun { homeserver: server, user_id: user.user_id, room_id, phases: vec![sequential, concurrent] })
}

/// What every send needs, cheap to clone into sender tasks.
#[derive(Clone)]
struct Room {
    client: MatrixClient,
    user: Arc<BenchUser>,
    room_id: String,
}

impl Room {
    /// Sends one message and returns how long the request took.
    async fn send(&self, txn_id: &str, body: &Value) -> Result<Duration> {
        let url =
            self.client.url(&["_matrix", "client", "v3", "rooms", &self.room_id, "send", "m.room.message", txn_id])?;
        let started = Instant::now();
        let answer = self.client.request(Method::PUT, url, Some(&self.user.access_token), Some(body)).await?;
        let took = started.elapsed();
        // A 2xx without an event id means the message was not sent, whatever the status says.
        answer["event_id"].as_str().ok_or_else(|| anyhow!("the send answer has no event_id: {answer}"))?;
        Ok(took)
    }
}

async fn create_room(client: &MatrixClient, user: &BenchUser) -> Result<String> {
    let url = client.url(&["_matrix", "client", "v3", "createRoom"])?;
    let body = json!({"preset": "private_chat", "name": "hearth-bench send"});
    let answer = client
        .request(Method::POST, url, Some(&user.access_token), Some(&body))
        .await
        .context("cannot create the room")?;
    answer["room_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the createRoom answer has no room_id: {answer}"))
}

fn message(phase: &str, index: u32) -> Value {
    json!({"msgtype": "m.text", "body": format!("hearth-bench {phase} message {index}")})
}

async fn sequential_phase(room: &Room, prefix: &RunPrefix, messages: u32) -> Result<PhaseResult> {
    let progress = Progress::start("sequential".to_owned(), u64::from(messages));
    let mut samples = Vec::with_capacity(messages as usize);
    let started = Instant::now();
    for index in 0..messages {
        let txn_id = format!("{}-s{index}", prefix.as_str());
        let took = room.send(&txn_id, &message("sequential", index)).await?;
        samples.push(took);
        progress.advance();
    }
    let elapsed = started.elapsed();
    progress.finish().await;
    Ok(PhaseResult::new("sequential", 1, elapsed, &samples))
}

/// C sender tasks take message numbers from one shared counter until N are sent, so the
/// phase keeps C requests in flight until its very end.
async fn concurrent_phase(room: &Room, prefix: &RunPrefix, parameters: SendParameters) -> Result<PhaseResult> {
    let SendParameters { messages, concurrency } = parameters;
    let progress = Progress::start(format!("concurrent ({concurrency} senders)"), u64::from(messages));
    let next = Arc::new(AtomicU32::new(0));
    let mut senders = JoinSet::new();
    let started = Instant::now();
    for _ in 0..concurrency.min(messages) {
        let (room, next, done, prefix) = (room.clone(), next.clone(), progress.counter(), prefix.clone());
        senders.spawn(async move {
            let mut samples = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= messages {
                    return Ok::<_, anyhow::Error>(samples);
                }
                let txn_id = format!("{}-c{index}", prefix.as_str());
                samples.push(room.send(&txn_id, &message("concurrent", index)).await?);
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut samples = Vec::with_capacity(messages as usize);
    while let Some(joined) = senders.join_next().await {
        match joined {
            Ok(Ok(sent)) => samples.extend(sent),
            // The first failure ends the phase; the other senders are stopped with the set.
            Ok(Err(error)) => return Err(error),
            Err(error) => return Err(anyhow!("a sender task ended abnormally: {error}")),
        }
    }
    let elapsed = started.elapsed();
    progress.finish().await;
    Ok(PhaseResult::new("concurrent", concurrency.min(messages), elapsed, &samples))
}
