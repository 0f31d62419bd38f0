//! The `hearth` binary: parses the command line and hands over to the library.
#![allow(unreachable_pub)] // a binary has no outside: `pub` here only shares between its modules

use clap::Parser;
use hearth::cli::{Cli, Command};
use hearth::config::Config;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    hearth::allocator::tune();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { config } => {
                let config = Config::load(config.as_deref())?;
                init_logging(&config.log);
                hearth::server::run(config).await
            }
            tool => {
                init_logging(&std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()));
                hearth::cli::run_tool(tool).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
