//! The scenarios. Each one provisions what it needs on one homeserver, measures, and returns
//! its figures; running it against a second server for `--compare` is the caller's job.

pub mod paired;
pub mod send;
