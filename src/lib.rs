//! Hearth: a Matrix homeserver on PostgreSQL.
//!
//! The crate is layered (see `docs/` and DESIGN): `http` is the edge (thin handlers over ruma
//! types), `users` and `federation` are domain modules callable without HTTP, and `db` holds all
//! SQL. `server` wires them together; `cli` is what the `hearth` binary runs.

pub mod allocator;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod e2ee;
pub mod error;
pub mod federation;
pub mod http;
pub mod push;
pub mod rooms;
pub mod server;
pub mod streams;
pub mod sync;
pub mod users;

pub use error::{Error, Result};
