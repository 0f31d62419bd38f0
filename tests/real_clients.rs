//! Hearth driven by the clients people use, as they use them: matrix-js-sdk (the engine of
//! Element Web) under Node.js and matrix-nio under Python. Each test starts Hearth on a fresh
//! database, registers `alice` and `bob`, and runs one scenario script from `tests/clients/`
//! as a subprocess; the script checks what its users would see and reports the step that failed.
//! The clients are installed on first use into `target/test-clients/` (see `clients::install`).
//!
//! Each scenario is a module with a test per client (`chat::js_sdk`, `chat::nio`); the runner
//! runs them all at once (`RUST_TEST_THREADS` in `.cargo/config.toml`), each on its own server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::clients;
use crate::common;

use clients::RealClient::{JsSdk, Nio};
use clients::run;
use common::TestServer;

/// A scenario as a module with one test per client: `chat::js_sdk`, `chat::nio`.
macro_rules! scenario {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn js_sdk() {
                run(JsSdk, &TestServer::start().await, stringify!($name)).await;
            }

            #[tokio::test]
            async fn nio() {
                run(Nio, &TestServer::start().await, stringify!($name)).await;
            }
        }
    };
}

// A new user: registration, login, first sync (and its time), chat, a public room joined by alias.
scenario!(newcomer);
// Two users: create, invite, join, send, reply, edit, react, redact, typing, receipts, leave.
scenario!(chat);
// Profile, presence and push rules, seen from another user or device.
scenario!(account);
// A client stopped and started again from its stored sync token sees exactly what it missed.
scenario!(restart);

// Element Web's path (matrix-js-sdk set up as Element sets it up): cross-signing and secure
// backup at first login, an encrypted room, encrypted messages, a reaction and a thread reply,
// and the settings tabs. matrix-js-sdk only: it is Element's engine.
#[tokio::test]
async fn element() {
    run(JsSdk, &TestServer::start().await, "element").await;
}

// A member tips a creator in a room they share; the creator's client (matrix-js-sdk as Element
// runs it, knowing nothing of tips) shows the tip as a message with its text.
// matrix-js-sdk only: it is Element's engine.
#[tokio::test]
async fn tips() {
    let billing = common::billing::Billing::start().await;
    let server = TestServer::start_with(|config| billing.configure(config)).await;
    let accounts = clients::accounts(&server).await;
    let bob = ruma::UserId::parse(&accounts[1].1.user_id).unwrap();
    hearth::testing::creators::flag::set_creator(&server.state.pool, &bob, true).await.unwrap();
    clients::run_as(JsSdk, &server, "tips", &accounts).await;
    assert_eq!(billing.charges(), 1, "one tip, charged once");
}
