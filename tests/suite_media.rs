//! Media: uploads, downloads, thumbnails, storage on disk and in S3.
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

mod media;
mod media_orphans;
mod media_s3;
mod media_sdk;
mod media_thumbnails;
