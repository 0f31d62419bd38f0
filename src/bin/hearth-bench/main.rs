//! `hearth-bench`: a load tool for any Matrix homeserver (docs/PERFORMANCE.md). It drives a
//! running server over the standard client-server API only, so the same run measures Hearth,
//! Synapse or another server, and `--compare` puts two of them side by side.

mod cli;
mod client;
mod progress;
mod provisioning;
mod report;
mod scenarios;
mod stats;

use anyhow::{Result, bail};
use clap::Parser;
use cli::{Cli, PairedArgs, Scenario, SendArgs, Target};
use client::MatrixClient;
use provisioning::{Registration, RunPrefix};
use report::{PairedReport, SendReport};
use scenarios::paired::{self, PairedParameters};
use scenarios::send::{self, SendParameters};
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
        Scenario::Send(args) => run_send(args).await,
        Scenario::Paired(args) => run_paired(args).await,
        other => bail!(
            "the `{}` scenario is not implemented yet (it needs /sync); only `send` is available so far",
            other.name()
        ),
    }
}

async fn run_send(args: Box<SendArgs>) -> Result<()> {
    let target = args.target;
    check_json_path(&target)?;
    let parameters = SendParameters { messages: args.messages, concurrency: args.concurrency };
    let registration = Registration::from_secret(target.shared_secret);
    let timestamp = report::now_rfc3339();

    let mut servers = Vec::new();
    for url in std::iter::once(target.homeserver).chain(target.compare) {
        let client = MatrixClient::new(url)?;
        // A prefix per server: `--compare` may name the same server twice.
        let prefix = RunPrefix::random();
        servers.push(send::run(&client, &registration, &prefix, parameters).await?);
    }

    let report = SendReport::new(timestamp, parameters, servers);
    print!("{}", report.table());
    if let Some(path) = &target.json {
        report.write_json(path)?;
        eprintln!("wrote {}", path.display());
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

async fn run_paired(args: Box<PairedArgs>) -> Result<()> {
    let target = args.target;
    check_json_path(&target)?;
    let parameters = PairedParameters { pairs: args.pairs, messages: args.messages, interval_ms: args.interval_ms };
    let registration = Registration::from_secret(target.shared_secret);
    let timestamp = report::now_rfc3339();

    let mut servers = Vec::new();
    for url in std::iter::once(target.homeserver).chain(target.compare) {
        let client = MatrixClient::new(url)?;
        // A prefix per server: `--compare` may name the same server twice.
        let prefix = RunPrefix::random();
        servers.push(paired::run(&client, &registration, &prefix, parameters).await?);
    }

    let report = PairedReport::new(timestamp, parameters, servers);
    print!("{}", report.table());
    // The report is kept even when the check fails: it says what went wrong.
    if let Some(path) = &target.json {
        report.write_json(path)?;
        eprintln!("wrote {}", path.display());
    }
    if !report.valid {
        bail!("the validity check failed: not every message arrived exactly once, in order and unaltered");
    }
    Ok(())
}
