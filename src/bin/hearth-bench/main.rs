//! `hearth-bench`: a load tool for any Matrix homeserver (docs/PERFORMANCE.md). It drives a
//! running server over the standard client-server API only, so the same run measures Hearth,
//! Synapse or another server, and `--compare` puts two of them side by side.
#![allow(unreachable_pub)] // a binary has no outside: `pub` here only shares between its modules

mod actions;
mod cli;
mod client;
mod feed;
mod process;
mod progress;
mod provisioning;
mod report;
mod scenarios;
mod stats;
mod xmpp;

use anyhow::{Result, bail};
use clap::Parser;
use cli::{Cli, Target};
use client::MatrixClient;
use provisioning::{Registration, RunPrefix};
use report::{Report, ServerRun};
use scenarios::broadcast::{BroadcastParameters, BroadcastScenario};
use scenarios::fanout::{FanoutParameters, FanoutScenario};
use scenarios::federation::peer::PeerSettings;
use scenarios::federation::{FederationParameters, FederationScenario};
use scenarios::idle::{IdleParameters, IdleScenario};
use scenarios::initial_sync::{InitialSyncParameters, InitialSyncScenario};
use scenarios::media::{MediaParameters, MediaScenario};
use scenarios::paired::{PairedParameters, PairedScenario};
use scenarios::send::{SendParameters, SendScenario};
use scenarios::sliding_sync::{SlidingSyncParameters, SlidingSyncScenario};
use scenarios::{Scenario, ServerContext};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Invalid arguments end here, with clap's message and exit status 2.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hearth-bench: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hearth-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.scenario {
        cli::Scenario::Send(args) => {
            let parameters = SendParameters {
                messages: args.messages,
                concurrency: args.concurrency,
                rooms: args.rooms,
                server_pids: [args.server_pid, args.db_pid],
                compare_pids: [args.compare_server_pid, args.compare_db_pid],
            };
            measure(SendScenario(parameters), args.target).await
        }
        cli::Scenario::Paired(args) => {
            let parameters = PairedParameters {
                pairs: args.pairs,
                messages: args.messages,
                interval_ms: args.interval_ms,
                transport: args.transport,
            };
            measure(PairedScenario(parameters), args.target).await
        }
        cli::Scenario::Fanout(args) => {
            let parameters = FanoutParameters {
                members: args.members,
                messages: args.messages,
                interval_ms: args.interval_ms,
                transport: args.transport,
            };
            measure(FanoutScenario(parameters), args.target).await
        }
        cli::Scenario::InitialSync(args) => {
            let parameters = InitialSyncParameters { rooms: args.rooms, events: args.events, repeats: args.repeats };
            measure(InitialSyncScenario(parameters), args.target).await
        }
        cli::Scenario::SlidingSync(args) => {
            let parameters = SlidingSyncParameters {
                rooms: args.rooms,
                events: args.events,
                window: args.window,
                repeats: args.repeats,
            };
            measure(SlidingSyncScenario(parameters), args.target).await
        }
        cli::Scenario::Idle(args) => {
            let parameters = IdleParameters {
                connections: args.connections,
                // More users than connections would register users that hold nothing.
                users: args.users.min(args.connections),
                settle_s: args.settle_s,
                transport: args.transport,
                pids: args.pids,
            };
            measure(IdleScenario(parameters), args.target).await
        }
        cli::Scenario::Media(args) => {
            let parameters = MediaParameters {
                files: args.files,
                size_mib: args.size_mib,
                concurrency: args.concurrency,
                pids: args.pids,
            };
            measure(MediaScenario(parameters), args.target).await
        }
        cli::Scenario::Federation(args) => {
            let peer =
                PeerSettings { port: args.port, tls_cert: args.tls_cert, tls_key: args.tls_key, ca_file: args.ca_file };
            let parameters = FederationParameters { pdus: args.pdus, members: args.members, peer };
            measure(FederationScenario::new(parameters), args.target).await
        }
        cli::Scenario::Broadcast(args) => {
            let parameters = BroadcastParameters {
                subscribers: args.subscribers,
                make_creator: args.make_creator,
                server_pid: args.server_pid,
            };
            measure(BroadcastScenario(parameters), args.target).await
        }
        // Not a Matrix scenario: the server measured may be Prosody, so no `measure`.
        cli::Scenario::Xmpp(args) => xmpp::run(*args).await,
    }
}

/// Runs `scenario` against the `--homeserver` and then the `--compare` server, prints the
/// table, writes the JSON, and fails when a validity check did.
async fn measure<S: Scenario>(scenario: S, target: Target) -> Result<()> {
    check_json_path(&target)?;
    scenario.prepare()?;
    // Every scenario's set-up uses a handful of connections at a time, but the long-polling
    // ones hold one per member: raise the limit for all, it costs nothing.
    let _ = process::raise_open_file_limit(0);
    let timestamp = report::now_rfc3339();

    let mut servers = Vec::new();
    for (index, url) in std::iter::once(target.homeserver).chain(target.compare).enumerate() {
        let client = MatrixClient::new(url)?;
        client.check_reachable().await?;
        let registration = Registration::for_server(&client, target.shared_secret.as_deref()).await?;
        // A prefix per server: `--compare` may name the same server twice.
        let prefix = RunPrefix::random();
        let comparison = index.checked_sub(1);
        let context = ServerContext { client: &client, registration: &registration, prefix: &prefix, comparison };
        servers.push(scenario.run(context).await?);
    }

    let report = Report::new(S::NAME, scenario.headline(), timestamp, scenario.parameters(), servers);
    print!("{}", report.table());
    // The report is kept even when the check fails: it says what went wrong.
    if let Some(path) = &target.json {
        report.write_json(path)?;
        eprintln!("wrote {}", path.display());
    }
    if !report.valid {
        let failed: Vec<&str> = report.servers.iter().filter(|s| !s.valid()).map(ServerRun::homeserver).collect();
        bail!("the validity check of `{}` failed on {}: see the table above", S::NAME, failed.join(" and "));
    }
    Ok(())
}

/// Checked before measuring, so that a typo in the path does not cost a whole run.
fn check_json_path(target: &Target) -> Result<()> {
    if let Some(path) = &target.json {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        if !parent.is_dir() {
            bail!("cannot write the JSON report to {}: {} is not a directory", path.display(), parent.display());
        }
    }
    Ok(())
}
