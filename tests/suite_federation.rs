//! Federation between two Hearths and with a real Synapse.
//!
//! One test binary per concern rather than per file: each file named below is a module of
//! this binary, so CI links a dozen binaries instead of seventy, and the files' tests run
//! alongside each other on one PostgreSQL cluster. A new test file is added here (the
//! `suite_process::test_layout` check fails until it is).
#![allow(unreachable_pub)] // a binary has no outside: `pub` here only shares between its modules
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
#![recursion_limit = "256"]

mod common;
mod media_support;
mod sdk_support;

mod federation_backfill;
mod federation_dag;
mod federation_directory;
mod federation_edus;
mod federation_inbound;
mod federation_join;
mod federation_keys;
mod federation_membership;
mod federation_partial_state;
mod federation_send;
mod federation_sender;
mod federation_synapse;
mod media_federation;
