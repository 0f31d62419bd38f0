//! `/sync` and sliding sync: what each client is sent, exactly once.
//!
//! One test binary per concern rather than per file: each file named below is a module of
//! this binary, so CI links a dozen binaries instead of seventy, and the files' tests run
//! alongside each other on one PostgreSQL cluster. A new test file is added here (the
//! `suite_process::test_layout` check fails until it is).
#![allow(unreachable_pub)] // a binary has no outside: `pub` here only shares between its modules
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

mod sliding_sync;
mod sliding_timelines;
mod sync;
mod sync_build;
mod sync_counts;
mod sync_ephemeral;
mod sync_fanout_cost;
mod sync_filters;
mod sync_initial_cache;
mod sync_joins;
mod sync_lazy_members;
mod sync_live;
mod sync_to_device;
mod websocket;
mod websocket_edges;
