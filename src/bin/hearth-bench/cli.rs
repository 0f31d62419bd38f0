//! The command line: one subcommand per scenario, the options every scenario shares, and
//! each scenario's own size options.

use crate::feed::Transport;
use clap::{Args, Parser, Subcommand};
use reqwest::Url;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "hearth-bench",
    version,
    about = "Load tool for Matrix homeservers (Hearth, Synapse, any other)",
    long_about = "Load tool for Matrix homeservers. It speaks only the standard client-server API, \
                  so it measures Hearth, Synapse or any other homeserver the same way. Users are \
                  created with Synapse-compatible shared-secret registration (--shared-secret) or, \
                  without it, with open registration (m.login.dummy); their names carry a random \
                  prefix per run, so runs never collide. Disable the server's rate limits first.\n\n\
                  A table goes to stdout, progress to stderr; --json FILE keeps every figure."
)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// One user, one room: N messages sent one after another, then N more from C concurrent
    /// senders, then N more from C senders into R rooms; messages/s, request latency
    /// percentiles and, with --server-pid/--db-pid, CPU time per message for each phase.
    Send(Box<SendArgs>),
    /// P pairs of users, each pair in a private room: every user sends M messages and reads
    /// its partner's over long-polling /sync; delivery latency percentiles, messages/s and a
    /// validity check (every message exactly once, in order, unaltered).
    Paired(Box<PairedArgs>),
    /// One room with K members, each long-polling /sync with its own token, and one sender
    /// posting S messages; delivery latency over every (member, message) and a validity check.
    Fanout(Box<FanoutArgs>),
    /// One user in R rooms with E messages each; N initial /syncs (no filter, no since):
    /// latency, response size and a check that every answer holds all R rooms.
    InitialSync(Box<InitialSyncArgs>),
    /// One user in R rooms with E messages each opens the app N times: a first sliding sync
    /// (MSC4186) with a W-room window beside an initial /sync; latency and response size of
    /// each.
    SlidingSync(Box<SlidingSyncArgs>),
    /// K idle long-polling /syncs held by U users (K/U each, every one with its own since
    /// token); with --server-pid, the server's resident memory before and after, per connection.
    Idle(Box<IdleArgs>),
    /// N uploads of S MiB one after another and their downloads, then C uploads of S MiB at
    /// once; MiB/s, latency and, with --server-pid, the server's memory during the C uploads.
    Media(Box<MediaArgs>),
    /// hearth-bench acts as another homeserver (TLS on loopback, its own signing key) owning
    /// rooms a user of the target joins over federation: N signed messages pushed in
    /// transactions of 50 (PDUs/s acknowledged and readable), then the time to join a room of
    /// K members. The target must trust --ca-file's CA and allow loopback destinations.
    Federation(Box<FederationArgs>),
    /// Hearth only: a creator with N subscribers sends one message to a list of them all
    /// (each gets a new DM); seconds until every recipient is sent, and a validity check
    /// (sent == total). --make-creator is the operator's command that makes the creator.
    Broadcast(Box<BroadcastArgs>),
    /// An XMPP server (Hearth's XMPP listener, or Prosody for comparison) measured with XMPP
    /// clients: N logins one after another (logins/s, latency), with --homeserver and
    /// --peer-user M messages each way between the XMPP account and a Matrix user (latency;
    /// Hearth only), then K idle logged-in connections (with --server-pid, the server's RSS per
    /// connection). The accounts must exist.
    Xmpp(Box<XmppArgs>),
}

/// Options every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Base URL of the homeserver to measure, e.g. http://127.0.0.1:8008
    #[arg(long, value_name = "URL", value_parser = parse_homeserver)]
    pub homeserver: Url,

    /// Registration shared secret of the server (Synapse's `registration_shared_secret`,
    /// Hearth's `registration.shared_secret`); without it, open registration is used.
    /// Also read from HEARTH_BENCH_SHARED_SECRET, which keeps it out of `ps`.
    #[arg(long, value_name = "SECRET", env = "HEARTH_BENCH_SHARED_SECRET", hide_env_values = true)]
    pub shared_secret: Option<String>,

    /// Also write every figure, the parameters and the servers as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Run the same scenario against another homeserver right after the first and print the
    /// ratios (this one / the first). May be given more than once (e.g. Synapse, then
    /// Conduit): the servers run in order, each compared with the first. Every server is
    /// registered on with the shared secret when it offers Synapse's shared-secret
    /// registration, and with open registration otherwise.
    #[arg(long, value_name = "URL2", value_parser = parse_homeserver)]
    pub compare: Vec<Url>,
}

#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    #[command(flatten)]
    pub target: Target,

    /// Messages per phase (sequential, then concurrent).
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub messages: u32,

    /// Concurrent senders in the second phase.
    #[arg(long, value_name = "C", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub concurrency: u32,

    /// Rooms of the third phase: N more messages from C concurrent senders, sender i sending
    /// to room i mod R, so that sends to different rooms run at once (at most C rooms are
    /// used). 1 (or C = 1) leaves the phase out.
    #[arg(long, value_name = "R", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub rooms: u32,

    /// Process id of the --homeserver server on this machine: the CPU time of its process
    /// tree (Hearth with its embedded PostgreSQL) is read from /proc around each phase and
    /// reported per message. Without it (and --db-pid), CPU is not measured.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Process id of the --homeserver's external PostgreSQL (its postmaster): its process
    /// tree's CPU time counts too.
    #[arg(long, value_name = "PID")]
    pub db_pid: Option<u32>,

    /// --server-pid for the --compare server.
    #[arg(long, value_name = "PID", requires = "compare")]
    pub compare_server_pid: Option<u32>,

    /// --db-pid for the --compare server.
    #[arg(long, value_name = "PID", requires = "compare")]
    pub compare_db_pid: Option<u32>,
}

#[derive(Args, Debug, Clone)]
pub struct PairedArgs {
    #[command(flatten)]
    pub target: Target,

    /// Pairs of users, each pair in its own room.
    #[arg(long, value_name = "P", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pairs: u32,

    /// Messages each user sends to its partner.
    #[arg(long, value_name = "M", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub messages: u32,

    /// Pause of each sender between two of its messages, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub interval_ms: u64,

    /// How the readers receive their sync: `long-poll` (/sync, any homeserver) or `ws`
    /// (Hearth's WebSocket, /_hearth/client/v1/ws).
    #[arg(long, value_enum, default_value_t = Transport::LongPoll)]
    pub transport: Transport,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub target: Target,

    /// Members of the room, each with its own account and its own long-polling /sync.
    #[arg(long, value_name = "K", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub members: u32,

    /// Messages the sender posts.
    #[arg(long, value_name = "S", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub messages: u32,

    /// Pause between two messages, in milliseconds, so that each message's fan-out is
    /// measured rather than a queue of them.
    #[arg(long, value_name = "MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub interval_ms: u64,

    /// How the readers receive their sync: `long-poll` (/sync, any homeserver) or `ws`
    /// (Hearth's WebSocket, /_hearth/client/v1/ws).
    #[arg(long, value_enum, default_value_t = Transport::LongPoll)]
    pub transport: Transport,
}

#[derive(Args, Debug, Clone)]
pub struct InitialSyncArgs {
    #[command(flatten)]
    pub target: Target,

    /// Rooms the user is in.
    #[arg(long, value_name = "R", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rooms: u32,

    /// Messages sent to each room before measuring.
    #[arg(long, value_name = "E", default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub events: u32,

    /// Initial /syncs measured, one after another.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub repeats: u32,
}

#[derive(Args, Debug, Clone)]
pub struct SlidingSyncArgs {
    #[command(flatten)]
    pub target: Target,

    /// Rooms the user is in.
    #[arg(long, value_name = "R", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rooms: u32,

    /// Messages sent to each room before measuring.
    #[arg(long, value_name = "E", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub events: u32,

    /// Rooms in the sliding sync's window (its list's range).
    #[arg(long, value_name = "W", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub window: u32,

    /// Times the app opens (a sliding sync and an initial /sync each).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub repeats: u32,
}

#[derive(Args, Debug, Clone)]
pub struct IdleArgs {
    #[command(flatten)]
    pub target: Target,

    /// Idle long-polling /sync connections to hold open at once. Each is a socket on both
    /// sides: this tool raises its own open-file limit to the hard limit, and the server's
    /// limit must allow them too.
    #[arg(long, value_name = "K", default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: u32,

    /// Users holding the connections, K/U each, every connection with its own since token
    /// (registering K users would cost more than the measurement).
    #[arg(long, value_name = "U", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub users: u32,

    /// Seconds to wait once all connections are open before reading the memory, for the
    /// server to park them.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub settle_s: u64,

    /// How the idle clients wait: `long-poll` (/sync, any homeserver) or `ws`
    /// (Hearth's WebSocket, /_hearth/client/v1/ws).
    #[arg(long, value_enum, default_value_t = Transport::LongPoll)]
    pub transport: Transport,

    #[command(flatten)]
    pub pids: ServerPids,
}

#[derive(Args, Debug, Clone)]
pub struct XmppArgs {
    /// The server's STARTTLS c2s listener, `host:port`.
    #[arg(long, value_name = "HOST:PORT")]
    pub xmpp: String,

    /// The XMPP domain (the stream's `to`), e.g. `localhost`.
    #[arg(long)]
    pub domain: String,

    /// The account's localpart; with --users U > 1, the accounts USER1 … USERU.
    #[arg(long)]
    pub user: String,

    /// The accounts' password. Also read from HEARTH_BENCH_XMPP_PASSWORD.
    #[arg(long, env = "HEARTH_BENCH_XMPP_PASSWORD", hide_env_values = true)]
    pub password: String,

    /// Accounts the idle connections are spread over (each connection binds its own resource).
    #[arg(long, value_name = "U", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub users: u32,

    /// Logins measured one after another.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub logins: u32,

    /// Idle logged-in connections held open when the memory is read.
    #[arg(long, value_name = "K", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: u32,

    /// Seconds to wait once all idle connections are open before reading the memory.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub settle_s: u64,

    /// Process id of the XMPP server on this machine (its RSS is read from /proc).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// The Matrix side of the latency figures: the homeserver's URL (Hearth's)...
    #[arg(long, value_name = "URL", value_parser = parse_homeserver, requires = "peer_user")]
    pub homeserver: Option<Url>,

    /// ...the Matrix user the XMPP account chats with (localpart)...
    #[arg(long, value_name = "LOCALPART", requires = "homeserver")]
    pub peer_user: Option<String>,

    /// ...and that user's password.
    #[arg(
        long,
        value_name = "PASSWORD",
        default_value = "",
        env = "HEARTH_BENCH_PEER_PASSWORD",
        hide_env_values = true
    )]
    pub peer_password: String,

    /// Messages sent each way for the latency figures.
    #[arg(long, value_name = "M", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub messages: u32,

    /// Also write every figure as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The servers' process ids, for the scenarios that read their memory.
#[derive(Args, Debug, Clone, Serialize)]
pub struct ServerPids {
    /// Process id of the --homeserver server on this machine: its memory (VmRSS/VmHWM) is
    /// read from /proc. Without it, memory is not measured.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Process id of a --compare server, likewise; given once per --compare, in the same
    /// order (the first for the first --compare, and so on).
    #[arg(long, value_name = "PID", requires = "compare")]
    pub compare_server_pid: Vec<u32>,
}

impl ServerPids {
    /// The process id of the `--homeserver` (comparison `None`) or of the n-th `--compare`
    /// server, if one was given.
    pub fn of(&self, comparison: Option<usize>) -> Option<u32> {
        match comparison {
            None => self.server_pid,
            Some(index) => self.compare_server_pid.get(index).copied(),
        }
    }

    /// Every process id given, first the `--homeserver`'s.
    pub fn all(&self) -> impl Iterator<Item = u32> + '_ {
        self.server_pid.into_iter().chain(self.compare_server_pid.iter().copied())
    }
}

#[derive(Args, Debug, Clone)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub target: Target,

    /// Subscribers registered, all on the list the message goes to.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub subscribers: u32,

    /// The shell command that makes a user a creator, `{user}` standing for the user id,
    /// e.g. 'hearth --config hearth.toml user creator {user}'.
    #[arg(long, value_name = "COMMAND")]
    pub make_creator: String,

    /// Process id of the --homeserver on this machine: the CPU time of its process tree
    /// (Hearth with its embedded PostgreSQL) is read from /proc around each broadcast and
    /// reported per recipient, a figure that does not depend on the machine's load as timings
    /// do. Without it, CPU is not measured.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
}

#[derive(Args, Debug, Clone)]
pub struct MediaArgs {
    #[command(flatten)]
    pub target: Target,

    /// Files uploaded (and downloaded) one after another.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub files: u32,

    /// Size of each file in MiB.
    #[arg(long, value_name = "S", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub size_mib: u32,

    /// Users uploading at once in the concurrent phase.
    #[arg(long, value_name = "C", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub concurrency: u32,

    /// Memory is sampled during the concurrent uploads.
    #[command(flatten)]
    pub pids: ServerPids,
}

#[derive(Args, Debug, Clone)]
pub struct FederationArgs {
    #[command(flatten)]
    pub target: Target,

    /// Messages pushed into the joined room over federation (0 skips this measurement).
    #[arg(long, value_name = "N", default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub pdus: u32,

    /// Members of the room the target's user then joins (0 skips this measurement).
    #[arg(long, value_name = "K", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub members: u32,

    /// Loopback port of the bench's own homeserver, which is named `localhost:<PORT>`.
    #[arg(long, value_name = "PORT", default_value_t = 18500)]
    pub port: u16,

    /// Certificate (PEM) of the bench's federation listener, valid for `localhost`.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,

    /// Private key (PEM) of that certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,

    /// CA certificate (PEM) the targets' federation certificates are signed by.
    #[arg(long, value_name = "FILE")]
    pub ca_file: PathBuf,
}

/// Accepts absolute http(s) URLs only: `localhost:8008` would otherwise parse as a URL whose
/// scheme is `localhost`, and fail much later with a confusing message.
fn parse_homeserver(value: &str) -> Result<Url, String> {
    let url = Url::parse(value)
        .map_err(|error| format!("`{value}` is not a URL ({error}); expected e.g. http://127.0.0.1:8008"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{value}` is not an http:// or https:// URL; expected e.g. http://127.0.0.1:8008"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{value}` has no host; expected e.g. http://127.0.0.1:8008"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{value}` must not have a query or fragment"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn homeserver_urls_must_be_http_or_https_with_a_host() {
        assert!(parse_homeserver("http://127.0.0.1:8008").is_ok());
        assert!(parse_homeserver("https://matrix.example.org/").is_ok());
        assert!(parse_homeserver("localhost:8008").is_err());
        assert!(parse_homeserver("ftp://example.org").is_err());
        assert!(parse_homeserver("not a url").is_err());
        assert!(parse_homeserver("http://example.org/?a=b").is_err());
    }

    #[test]
    fn send_has_the_documented_defaults() {
        let cli = Cli::try_parse_from(["hearth-bench", "send", "--homeserver", "http://localhost:8008"])
            .expect("valid command line");
        let Scenario::Send(args) = cli.scenario else { panic!("send expected") };
        assert_eq!((args.messages, args.concurrency, args.rooms), (500, 10, 10));
        assert!(Cli::try_parse_from(["hearth-bench", "send", "--homeserver", "http://h", "--messages", "0"]).is_err());
    }

    #[test]
    fn the_sync_scenarios_have_the_documented_defaults() {
        let parse = |scenario: &str| {
            Cli::try_parse_from(["hearth-bench", scenario, "--homeserver", "http://localhost:8008"])
                .expect("valid command line")
                .scenario
        };
        let Scenario::Fanout(fanout) = parse("fanout") else { panic!("fanout expected") };
        assert_eq!((fanout.members, fanout.messages, fanout.interval_ms), (1_000, 20, 250));
        let Scenario::InitialSync(initial) = parse("initial-sync") else { panic!("initial-sync expected") };
        assert_eq!((initial.rooms, initial.events, initial.repeats), (100, 50, 5));
        let Scenario::SlidingSync(sliding) = parse("sliding-sync") else { panic!("sliding-sync expected") };
        assert_eq!((sliding.rooms, sliding.events, sliding.window, sliding.repeats), (1_000, 5, 20, 5));
        let Scenario::Idle(idle) = parse("idle") else { panic!("idle expected") };
        assert_eq!((idle.connections, idle.users, idle.pids.server_pid), (5_000, 50, None));
        assert!(
            Cli::try_parse_from(["hearth-bench", "idle", "--homeserver", "http://h", "--compare-server-pid", "1"])
                .is_err(),
            "--compare-server-pid needs --compare"
        );
    }

    #[test]
    fn paired_has_the_documented_defaults() {
        let cli = Cli::try_parse_from(["hearth-bench", "paired", "--homeserver", "http://localhost:8008"])
            .expect("valid command line");
        let Scenario::Paired(args) = cli.scenario else { panic!("paired expected") };
        assert_eq!((args.pairs, args.messages, args.interval_ms), (50, 20, 0));
        assert!(Cli::try_parse_from(["hearth-bench", "paired", "--homeserver", "http://h", "--pairs", "0"]).is_err());
    }
}
