//! Rooms: creation, membership, the DAG and forks, relations, directory and moderation.
//!
//! One test binary per concern rather than per file: each file named below is a module of
//! this binary, so CI links a dozen binaries instead of seventy, and the files' tests run
//! alongside each other on one PostgreSQL cluster. A new test file is added here (the
//! `suite_process::test_layout` check fails until it is).
#![allow(unreachable_pub)] // a binary has no outside: `pub` here only shares between its modules
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

mod directory;
mod erasure;
mod ignore_and_invites;
mod membership_preconditions;
mod relations;
mod room_tags;
mod rooms;
mod rooms_access;
mod rooms_dag;
mod rooms_fork;
mod rooms_membership;
mod rooms_spaces;
mod send_groups;
mod send_round_trips;
mod state_resend;
