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
use cli::{Cli, Scenario, SendArgs};
use client::MatrixClient;
use provisioning::{Registration, RunPrefix};
use report::SendReport;
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
        other => bail!(
            "the `{}` scenario is not implemented yet (it needs /sync); only `send` is available so far",
            other.name()
        ),
    }
}

async fn run_send(args: Box<SendArgs>) -> Result<()> {
    let target = args.target;
    // Checked before measuring, so that a typo in the path does not cost a whole run.
    if let Some(path) = &target.json {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        if !parent.is_dir() {
            bail!("cannot write the JSON report to {}: {} is not a directory", path.display(), parent.display());
        }
    }
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
