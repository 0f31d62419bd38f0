//! Accounts, sessions, devices, account data and end-to-end keys over HTTP.
//!
//! One test binary per concern rather than per file: each file named below is a module of
//! this binary, so CI links a dozen binaries instead of seventy, and the files' tests run
//! alongside each other on one PostgreSQL cluster. A new test file is added here (the
//! `suite_process::test_layout` check fails until it is).
#![allow(unreachable_pub)] // a binary has no outside: `pub` here only shares between its modules
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

mod accounts;
mod client_data;
mod e2ee_keys;
mod element_web;
mod key_backup;
mod nul;
mod registration;
mod sessions;
mod token_cache;
mod transaction_ids;
mod uia_binding;
