//! `idle`: K long-polling `/sync` connections held open with nothing to report, as a
//! server's many idle clients are. Registering K users would cost more than the measurement,
//! so U users each hold K/U of the connections, each with its own `since` token. With the
//! server's process id (same machine), its resident memory is read before the connections
//! are opened and once all of them are parked, giving the memory one idle client costs.

use crate::actions::{self, SETUP_CONCURRENCY, bounded};
use crate::cli::ServerPids;
use crate::client::MatrixClient;
use crate::feed::{SyncFeed, Transport};
use crate::process::{self, Memory, SPARE_FILES};
use crate::progress::Progress;
use crate::provisioning::{BenchUser, Registration, RunPrefix, register_user};
use crate::report::{FigureRow, ServerRun};
use crate::scenarios::{Scenario, ServerContext};
use anyhow::{Result, anyhow};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Long-poll timeout of each connection: longer than opening and measuring all of them takes,
/// so that they stay parked throughout; a server that answers sooner is counted.
const POLL_TIMEOUT: Duration = Duration::from_secs(240);
/// Connections are opened in batches with a pause between them, so that the server's listen
/// backlog is not overrun (a dropped SYN costs a one-second retransmission).
const OPEN_BATCH: u32 = 100;
const OPEN_PAUSE: Duration = Duration::from_millis(100);
/// How long to wait for all K sockets to be open before giving up.
const OPEN_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, Serialize)]
pub struct IdleParameters {
    pub connections: u32,
    pub users: u32,
    /// Seconds to wait once every connection is open, for the server to park them all.
    pub settle_s: u64,
    pub transport: Transport,
    #[serde(flatten)]
    pub pids: ServerPids,
}

#[derive(Clone, Debug, Serialize)]
pub struct IdleRun {
    pub homeserver: String,
    pub connections: u32,
    pub users: u32,
    /// Sockets this tool held open when the memory was read.
    pub open_sockets: u64,
    /// Long-polls the server answered before their timeout (nothing should wake an idle one).
    pub early_answers: u64,
    /// Long-polls that failed (connection refused or reset, error answers).
    pub failures: u64,
    /// The first failure, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
    /// Absent when no process id was given for this server.
    pub memory: Option<MemoryFigures>,
    /// True when every connection was open and none had failed when the memory was read.
    pub valid: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct MemoryFigures {
    pub pid: u32,
    pub before: Memory,
    pub after: Memory,
    /// (RSS after − RSS before) / connections; negative if the server gave memory back.
    pub bytes_per_connection: f64,
    /// The server process's own open-file limit: with one socket per connection, a server
    /// whose limit is below K cannot hold them all.
    pub server_open_file_limit: Option<u64>,
}

pub struct IdleScenario(pub IdleParameters);

impl Scenario for IdleScenario {
    type Parameters = IdleParameters;
    type Run = IdleRun;
    const NAME: &'static str = "idle";

    fn parameters(&self) -> &IdleParameters {
        &self.0
    }

    fn headline(&self) -> String {
        format!(
            "idle: {} idle clients {} held by {} users ({} each), memory read {} s after all are open",
            self.0.connections,
            self.0.transport.describe(),
            self.0.users,
            self.0.connections.div_ceil(self.0.users),
            self.0.settle_s
        )
    }

    fn prepare(&self) -> Result<()> {
        process::raise_open_file_limit(u64::from(self.0.connections) + SPARE_FILES)?;
        for pid in self.0.pids.all() {
            process::memory_of(pid)?;
        }
        Ok(())
    }

    async fn run(&self, server: ServerContext<'_>) -> Result<IdleRun> {
        run(server.client, server.registration, server.prefix, &self.0, self.0.pids.of(server.comparison)).await
    }
}

impl ServerRun for IdleRun {
    fn homeserver(&self) -> &str {
        &self.homeserver
    }

    fn valid(&self) -> bool {
        self.valid
    }

    fn write_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  {:>12}{:>8}{:>14}{:>14}{:>14}{:>14}  valid",
            "connections", "users", "RSS before", "RSS after", "peak after", "per conn."
        );
        let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
        let (before, after, peak, per_connection) = match &self.memory {
            Some(m) => (
                mib(m.before.rss_kib),
                mib(m.after.rss_kib),
                mib(m.after.hwm_kib),
                format!("{:.0} B", m.bytes_per_connection),
            ),
            None => ("-".to_owned(), "-".to_owned(), "-".to_owned(), "-".to_owned()),
        };
        let _ = writeln!(
            out,
            "  {:>12}{:>8}{:>14}{:>14}{:>14}{:>14}  {}",
            format!("{}/{}", self.open_sockets.min(u64::from(self.connections)), self.connections),
            self.users,
            before,
            after,
            peak,
            per_connection,
            if self.valid { "yes" } else { "NO" }
        );
        match &self.memory {
            None => {
                let _ = writeln!(out, "  memory not measured: pass --server-pid (or --compare-server-pid)");
            }
            Some(m) => {
                if let Some(limit) = m.server_open_file_limit {
                    let _ = writeln!(out, "  server's open-file limit: {limit}");
                }
            }
        }
        let _ = writeln!(out, "  answered early: {}, failed: {}", self.early_answers, self.failures);
        if let Some(failure) = &self.first_failure {
            let _ = writeln!(out, "    {failure}");
        }
    }

    fn comparable(&self) -> Vec<FigureRow> {
        let Some(m) = &self.memory else { return Vec::new() };
        vec![FigureRow {
            name: "idle".to_owned(),
            figures: vec![
                ("rss_before_kib", m.before.rss_kib as f64),
                ("rss_after_kib", m.after.rss_kib as f64),
                ("bytes_per_connection", m.bytes_per_connection),
            ],
        }]
    }
}

/// Nothing of any room, presence or account data: an idle connection has nothing to wait
/// for, so any answer before the timeout is the server's doing.
fn quiet_filter() -> Value {
    json!({
        "room": {"rooms": []},
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    })
}

async fn run(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    parameters: &IdleParameters,
    pid: Option<u32>,
) -> Result<IdleRun> {
    let server = client.base().to_string();
    client.check_reachable().await?;
    eprintln!("{server}: registering {} users", parameters.users);
    let filter = quiet_filter();
    let users = bounded(
        SETUP_CONCURRENCY,
        (0..parameters.users).map(|index| {
            let filter = &filter;
            async move {
                let user = register_user(client, registration, &prefix.localpart(&format!("i{index}"))).await?;
                let answer = actions::sync(client, &user, Some(filter), None, 0).await?;
                Ok(Holder { since: actions::next_batch(&answer)?, user: Arc::new(user) })
            }
        }),
    )
    .await?;

    let before = pid.map(process::memory_of).transpose()?;
    let sockets_before = process::open_sockets();
    let long_polls = MatrixClient::with_timeout(client.base().clone(), POLL_TIMEOUT + Duration::from_secs(30))?;
    let early_answers = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let first_failure = Arc::new(std::sync::OnceLock::new());
    eprintln!("{server}: opening {} idle clients {}", parameters.connections, parameters.transport.describe());
    let progress = Progress::counting("idle connections".to_owned(), u64::from(parameters.connections), "open");
    let mut holders = JoinSet::new();
    let transport = parameters.transport;
    for index in 0..parameters.connections {
        if index > 0 && index % OPEN_BATCH == 0 {
            tokio::time::sleep(OPEN_PAUSE).await;
            progress.counter().store(socket_count(sockets_before), Ordering::Relaxed);
        }
        let holder = users[(index % parameters.users) as usize].clone();
        let (client, filter) = (long_polls.clone(), filter.clone());
        let (early_answers, failures, first_failure) = (early_answers.clone(), failures.clone(), first_failure.clone());
        holders.spawn(async move {
            if let Err(error) = holder.hold(&client, transport, &filter, &early_answers).await {
                failures.fetch_add(1, Ordering::Relaxed);
                let _ = first_failure.set(format!("{error:#}"));
            }
        });
    }
    let deadline = Instant::now() + OPEN_DEADLINE;
    let wanted = u64::from(parameters.connections);
    while socket_count(sockets_before) < wanted && Instant::now() < deadline && failures.load(Ordering::Relaxed) == 0 {
        progress.counter().store(socket_count(sockets_before), Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress.finish().await;
    eprintln!(
        "{server}: {} sockets open; waiting {} s for the server to park them",
        socket_count(sockets_before),
        parameters.settle_s
    );
    tokio::time::sleep(Duration::from_secs(parameters.settle_s)).await;

    let open_sockets = socket_count(sockets_before);
    let after = pid.map(process::memory_of).transpose()?;
    // Dropping the set closes every connection.
    holders.abort_all();
    drop(holders);

    let failures = failures.load(Ordering::Relaxed);
    let memory = match (pid, before, after) {
        (Some(pid), Some(before), Some(after)) => Some(MemoryFigures {
            pid,
            before,
            after,
            bytes_per_connection: (after.rss_kib as f64 - before.rss_kib as f64) * 1024.0
                / f64::from(parameters.connections),
            server_open_file_limit: process::open_file_limit_of(pid),
        }),
        _ => None,
    };
    Ok(IdleRun {
        homeserver: server,
        connections: parameters.connections,
        users: parameters.users,
        open_sockets,
        early_answers: early_answers.load(Ordering::Relaxed),
        failures,
        first_failure: first_failure.get().cloned(),
        memory,
        valid: failures == 0 && open_sockets >= wanted,
    })
}

fn socket_count(baseline: usize) -> u64 {
    process::open_sockets().saturating_sub(baseline) as u64
}

#[derive(Clone)]
struct Holder {
    user: Arc<BenchUser>,
    since: String,
}

impl Holder {
    /// Waits until stopped; an answer (the server's timeout may be shorter than ours, and a
    /// pushed feed should send nothing) is counted and the wait renewed, as a client would.
    async fn hold(
        self,
        client: &MatrixClient,
        transport: Transport,
        filter: &Value,
        early_answers: &AtomicU64,
    ) -> Result<()> {
        let timeout_ms = u64::try_from(POLL_TIMEOUT.as_millis()).map_err(|_| anyhow!("timeout too large"))?;
        let mut feed = SyncFeed::open(transport, client, self.user, filter, &self.since, timeout_ms).await?;
        loop {
            if feed.next(POLL_TIMEOUT).await?.is_some() {
                early_answers.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
