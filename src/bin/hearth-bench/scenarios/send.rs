//! `send`: one user creates one room and sends N messages one after another, then N more
//! from C concurrent senders (the same user, distinct transaction ids), then N more from C
//! senders spread over R rooms. Each request's latency runs from the start of the `PUT` until
//! its answer has been read. With the server's process ids, each phase also reports the CPU
//! time the server (and its database) spent per message, from `/proc`: a figure that, unlike
//! latency, a busy machine does not distort much.

use crate::client::MatrixClient;
use crate::process;
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
    /// Rooms of the third phase; 1 leaves it out.
    pub rooms: u32,
    /// `[server, database]` process ids of the `--homeserver`, whose process trees' CPU time
    /// is measured.
    pub server_pids: [Option<u32>; 2],
    /// The same for the `--compare` server.
    pub compare_pids: [Option<u32>; 2],
}

impl SendParameters {
    /// The process ids to measure for the `--homeserver` (`None`) or the n-th `--compare`
    /// server: `--compare-server-pid`/`--compare-db-pid` name the first compared one.
    fn pids(&self, comparison: Option<usize>) -> Vec<u32> {
        let pids = match comparison {
            None => self.server_pids,
            Some(0) => self.compare_pids,
            Some(_) => [None, None],
        };
        pids.into_iter().flatten().collect()
    }
}

/// The figures of one server.
#[derive(Clone, Debug, Serialize)]
pub struct SendRun {
    pub homeserver: String,
    pub user_id: String,
    pub room_id: String,
    pub phases: Vec<PhaseResult>,
    /// CPU time of the server's processes per message, one per phase; empty when no process
    /// id was given.
    pub cpu: Vec<PhaseCpu>,
}

/// What the server's processes (the trees below the given ids) spent on one phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseCpu {
    pub phase: &'static str,
    pub pids: Vec<u32>,
    /// Milliseconds of CPU (user + system) over the phase, all processes together.
    pub cpu_ms: f64,
    /// `cpu_ms` per message sent.
    pub cpu_ms_per_message: f64,
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

    fn prepare(&self) -> Result<()> {
        for pid in self.0.pids(None).into_iter().chain(self.0.pids(Some(0))) {
            process::cpu_ms_of_tree(pid)?;
        }
        Ok(())
    }

    async fn run(&self, server: ServerContext<'_>) -> Result<SendRun> {
        let cpu = CpuMeter { pids: self.0.pids(server.comparison) };
        run(server.client, server.registration, server.prefix, self.0, &cpu).await
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
        if self.cpu.is_empty() {
            let _ = writeln!(out, "  CPU not measured: pass --server-pid (and --db-pid for an external database)");
        }
        for cpu in &self.cpu {
            let _ = writeln!(
                out,
                "  {:<12}CPU {:.1} ms per message ({:.0} ms over the phase, processes below {:?})",
                cpu.phase, cpu.cpu_ms_per_message, cpu.cpu_ms, cpu.pids
            );
        }
    }

    fn comparable(&self) -> Vec<FigureRow> {
        let mut rows: Vec<FigureRow> = self.phases.iter().map(FigureRow::of_phase).collect();
        for (row, cpu) in rows.iter_mut().zip(&self.cpu) {
            row.figures.push(("cpu_ms_per_message", cpu.cpu_ms_per_message));
        }
        rows
    }
}

/// Reads the CPU time of the server's process trees around a phase.
struct CpuMeter {
    pids: Vec<u32>,
}

impl CpuMeter {
    fn now(&self) -> Result<f64> {
        self.pids.iter().map(|pid| process::cpu_ms_of_tree(*pid)).sum()
    }

    async fn measure(
        &self,
        cpu: &mut Vec<PhaseCpu>,
        phase: impl Future<Output = Result<PhaseResult>>,
    ) -> Result<PhaseResult> {
        if self.pids.is_empty() {
            return phase.await;
        }
        let before = self.now()?;
        let result = phase.await?;
        let cpu_ms = self.now()? - before;
        cpu.push(PhaseCpu {
            phase: result.name,
            pids: self.pids.clone(),
            cpu_ms,
            cpu_ms_per_message: cpu_ms / f64::from(result.messages.max(1)),
        });
        Ok(result)
    }
}

async fn run(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    parameters: SendParameters,
    meter: &CpuMeter,
) -> Result<SendRun> {
    let server = client.base().to_string();
    client.check_reachable().await?;
    // Sender i sends to room i mod R: rooms beyond the senders would stay empty.
    let spread_rooms = if parameters.rooms > 1 { parameters.rooms.min(parameters.concurrency) } else { 0 };
    eprintln!("{server}: registering a user and creating {} room(s)", spread_rooms + 1);
    let user = Arc::new(register_user(client, registration, &prefix.localpart("sender")).await?);
    let room_id = create_room(client, &user).await?;
    let room = Room { client: client.clone(), user: user.clone(), room_id: room_id.clone() };
    let mut spread = Vec::new();
    if spread_rooms > 1 {
        for _ in 0..spread_rooms {
            let room_id = create_room(client, &user).await?;
            spread.push(Room { client: client.clone(), user: user.clone(), room_id });
        }
    }

    let mut cpu = Vec::new();
    let mut phases = Vec::new();
    eprintln!("{server}: sending {} messages one after another", parameters.messages);
    phases.push(meter.measure(&mut cpu, sequential_phase(&room, prefix, parameters.messages)).await?);
    eprintln!("{server}: sending {} messages from {} concurrent senders", parameters.messages, parameters.concurrency);
    let one_room = std::slice::from_ref(&room);
    phases.push(meter.measure(&mut cpu, concurrent_phase("concurrent", one_room, prefix, parameters)).await?);
    if !spread.is_empty() {
        eprintln!(
            "{server}: sending {} messages from {} concurrent senders into {} rooms",
            parameters.messages,
            parameters.concurrency,
            spread.len()
        );
        phases.push(meter.measure(&mut cpu, concurrent_phase("rooms", &spread, prefix, parameters)).await?);
    }

    Ok(SendRun { homeserver: server, user_id: user.user_id.clone(), room_id, phases, cpu })
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
/// phase keeps C requests in flight until its very end; sender i sends to room i mod R.
async fn concurrent_phase(
    name: &'static str,
    rooms: &[Room],
    prefix: &RunPrefix,
    parameters: SendParameters,
) -> Result<PhaseResult> {
    let SendParameters { messages, concurrency, .. } = parameters;
    let progress = Progress::start(format!("{name} ({concurrency} senders)"), u64::from(messages));
    let next = Arc::new(AtomicU32::new(0));
    let mut senders = JoinSet::new();
    let started = Instant::now();
    // Message numbers are unique within a phase; the letter keeps the phases' apart.
    let letter = if rooms.len() > 1 { 'r' } else { 'c' };
    for room in rooms.iter().cycle().take(concurrency.min(messages) as usize) {
        let (room, next, done, prefix) = (room.clone(), next.clone(), progress.counter(), prefix.clone());
        senders.spawn(async move {
            let mut samples = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= messages {
                    return Ok::<_, anyhow::Error>(samples);
                }
                let txn_id = format!("{}-{letter}{index}", prefix.as_str());
                samples.push(room.send(&txn_id, &message(name, index)).await?);
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
    Ok(PhaseResult::new(name, concurrency.min(messages), elapsed, &samples))
}
