//! Hearth driven by the clients people use, as they use them: matrix-js-sdk (the engine of
//! Element Web) under Node.js and matrix-nio under Python. Each test starts Hearth on a fresh
//! database, registers `alice` and `bob`, and runs one scenario script from `tests/clients/`
//! as a subprocess; the script checks what its users would see and reports the step that failed.
//! The clients are installed on first use into `target/test-clients/` (see `clients::install`).
//!
//! Test names put the two clients' versions of a scenario side by side, so the test runner's
//! two threads usually run one of each at a time.

mod clients;
mod common;

use clients::RealClient::{JsSdk, Nio};
use clients::run;
use common::TestServer;

#[tokio::test]
async fn account_with_js_sdk() {
    run(JsSdk, &TestServer::start().await, "account").await;
}

#[tokio::test]
async fn account_with_nio() {
    run(Nio, &TestServer::start().await, "account").await;
}

#[tokio::test]
async fn chat_with_js_sdk() {
    run(JsSdk, &TestServer::start().await, "chat").await;
}

#[tokio::test]
async fn chat_with_nio() {
    run(Nio, &TestServer::start().await, "chat").await;
}

#[tokio::test]
async fn restart_with_js_sdk() {
    run(JsSdk, &TestServer::start().await, "restart").await;
}

#[tokio::test]
async fn restart_with_nio() {
    run(Nio, &TestServer::start().await, "restart").await;
}

#[tokio::test]
async fn start_with_js_sdk() {
    run(JsSdk, &TestServer::start().await, "start").await;
}

#[tokio::test]
async fn start_with_nio() {
    run(Nio, &TestServer::start().await, "start").await;
}
