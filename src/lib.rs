//! Hearth: a Matrix homeserver on PostgreSQL.
//!
//! Three layers; arrows only point down (DESIGN §1). Follow a message send from request to table:
//!
//! ```text
//! http/client/rooms.rs   edge: parse the ruma request (http/ruma/), call the domain, render the answer;
//!                        domain errors become statuses in http/error.rs (xmpp/ is a second edge)
//! rooms/send/            domain: send_message -> locks (room lock + queue) -> batch (one transaction)
//!                        -> appender (DAG place, auth) -> persist -> committed (push actions, the
//!                        federation outbox, wake-ups); rooms/ also reads (read, visibility, served)
//! sync/serve.rs          domain: a /sync request -> long_poll -> build (+ sections), over streams/
//! users/, e2ee/, push/   domain: accounts, sessions, devices, account data; keys; push rules
//! store.rs               the pool as the domain sees it, with this process's caches of the database
//! db/events.rs, state.rs storage: all SQL; tables events, event_edges, state snapshots, current state
//! state.rs, server.rs    wiring: AppState (shared handles), start-up, listeners; cli.rs for `hearth`
//! ```
//!
//! Below everything: `error` (kinds, no HTTP), `time`, `config`, `cache`, `store`, `ratelimit`,
//! `streams` (positions and the notifier every writer and `/sync` share), `outbox` (queue writes).
//!
//! The domain is `pub(crate)`; `unreachable_pub` keeps it so. Integration tests, benches and
//! `hearth-bench` reach inside through one door, [`testing`], which is not an API.

pub(crate) mod admin;
pub mod allocator;
pub(crate) mod cache;
pub mod cli;
pub(crate) mod cli_admin;
pub mod config;
pub(crate) mod creators;
pub(crate) mod db;
pub(crate) mod e2ee;
pub mod error;
pub(crate) mod federation;
pub mod fuzz;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod media;
pub(crate) mod net;
pub(crate) mod outbox;
pub(crate) mod push;
pub(crate) mod ratelimit;
pub(crate) mod rooms;
pub mod server;
pub mod signing_key;
pub mod state;
pub(crate) mod store;
pub(crate) mod streams;
pub(crate) mod sync;
pub(crate) mod telemetry;
#[doc(hidden)]
pub mod testing;
pub(crate) mod time;
pub(crate) mod users;
pub(crate) mod xmpp;

pub use error::{Error, Result};
