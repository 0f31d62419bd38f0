//! The scenarios. Each one provisions what it needs on one homeserver, measures, and returns
//! its figures; `main` runs it against each server and hands the figures to the report.

pub mod broadcast;
pub mod delivery;
pub mod fanout;
pub mod federation;
pub mod idle;
pub mod initial_sync;
pub mod media;
pub mod paired;
pub mod send;
pub mod sliding_sync;

use crate::client::MatrixClient;
use crate::provisioning::{Registration, RunPrefix};
use crate::report::ServerRun;
use anyhow::Result;
use serde::Serialize;

/// What a scenario gets for one measured server.
pub struct ServerContext<'a> {
    pub client: &'a MatrixClient,
    pub registration: &'a Registration,
    /// Fresh per server: `--compare` may name the same server twice.
    pub prefix: &'a RunPrefix,
    /// Which `--compare` server this is (0 for the first), `None` for the `--homeserver`: the
    /// process ids for memory figures are separate options.
    pub comparison: Option<usize>,
}

/// A measurement that runs the same way against every server: its parameters, what it
/// measures on one server, and a one-line description for the top of the table.
pub trait Scenario {
    type Parameters: Serialize;
    type Run: ServerRun;

    /// The subcommand's name, also the report's `scenario`.
    const NAME: &'static str;

    fn parameters(&self) -> &Self::Parameters;

    fn headline(&self) -> String;

    /// Checks that cannot wait for a server (a missing process, a too-low file limit), so that
    /// they fail before anything is provisioned.
    fn prepare(&self) -> Result<()> {
        Ok(())
    }

    async fn run(&self, server: ServerContext<'_>) -> Result<Self::Run>;
}
