//! The clients people use: matrix-js-sdk, matrix-nio and matrix-sdk, driven against Hearth.
//!
//! One test binary per concern rather than per file: each file named below is a module of
//! this binary, so CI links a dozen binaries instead of seventy, and the files' tests run
//! alongside each other on one PostgreSQL cluster. A new test file is added here (the
//! `suite_process::test_layout` check fails until it is).
#![allow(unreachable_pub)] // a binary has no outside: `pub` here only shares between its modules
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
#![recursion_limit = "256"]

mod clients;
mod common;
mod sdk_support;

mod e2ee_federation;
mod e2ee_sdk;
mod matrix_sdk;
mod real_clients;
mod sliding_app;
mod sliding_sdk;
mod xmpp;
mod xmpp_bad_input;
mod xmpp_blocking;
mod xmpp_live;
mod xmpp_resume;
mod xmpp_sdk;
