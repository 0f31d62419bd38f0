//! Stopping a server stops its periodic database work first, then closes the pool: no task
//! finds the pool closed under it (each such find was a warning per tick at every stop).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use hearth::signing_key::SigningKey;
use hearth::state::AppState;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every line the process logs at WARN or above.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn shutting_down_stops_background_work_before_the_pool_closes() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let (_, pool) = fresh_database().await;
    let state = AppState::new(test_config(), pool, SigningKey::generate().expect("key")).await.expect("state");
    // Let the typing sweeper run a few times while the server is up.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    state.shutdown().await;
    assert!(state.pool.is_closed(), "shutting down closes the pool");
    // Longer than two sweep intervals: a sweeper still running would have found the pool closed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The subscriber is the process's: under `cargo test` the other tests of this binary run
    // beside this one and log too (a fixture's slow `CREATE DATABASE` on a loaded machine made
    // this fail). What a task says when it finds the pool closed under it is sqlx's
    // `PoolClosed`; none may say it.
    let found_closed: Vec<&str> =
        logged.lines().filter(|line| line.contains("attempted to acquire a connection on a closed pool")).collect();
    assert!(found_closed.is_empty(), "no task found the pool closed while stopping:\n{logged}");
}
