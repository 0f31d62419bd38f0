//! Uploads are streamed to storage, never held whole in memory: 20 clients upload 20 MiB each
//! at once (400 MiB in flight), and the server process's resident memory must grow by far
//! less than that. The throughput is printed, not asserted (DESIGN §7).
#![allow(unreachable_pub)] // a binary has no outside: `pub` here only shares between its modules
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;

use common::*;
use reqwest::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 20;
const FILE_BYTES: usize = 20 * 1024 * 1024;
const PIECE: usize = 64 * 1024;

/// This process's resident memory, in bytes (the server runs in it).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_clients_uploading_twenty_mib_each_hold_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_owned();
    let server = TestServer::start_with(|config| config.data_dir = data_dir).await;
    let users: Vec<TestUser> = {
        let mut users = Vec::new();
        for index in 0..CLIENTS {
            users.push(server.register(&format!("uploader{index}"), "pw").await);
        }
        users
    };

    let baseline = resident_bytes();
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(resident_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let started = Instant::now();
    let uploads = users.iter().enumerate().map(|(index, user)| {
        // Made piece by piece as it is sent, so the client side holds no file either; each
        // client's bytes differ, so none is deduplicated away.
        let pieces = (0..FILE_BYTES / PIECE).map(move |n| Ok::<_, std::io::Error>(vec![(index * 7 + n) as u8; PIECE]));
        server
            .http
            .post(server.url("/_matrix/media/v3/upload"))
            .bearer_auth(&user.access_token)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)))
            .send()
    });
    let responses = futures_util::future::join_all(uploads).await;
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    for response in responses {
        assert_eq!(response.unwrap().status(), StatusCode::OK);
    }

    let total = (CLIENTS * FILE_BYTES) as f64 / (1024.0 * 1024.0);
    let grown = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    println!(
        "{CLIENTS} uploads of {} MiB in {elapsed:.2?}: {:.1} MiB/s; resident memory grew by {:.1} MiB at most",
        FILE_BYTES / (1024 * 1024),
        total / elapsed.as_secs_f64(),
        grown as f64 / (1024.0 * 1024.0),
    );
    assert!(grown < 100 * 1024 * 1024, "uploads are streamed, not buffered: grew by {grown} bytes for {total} MiB");
    assert_eq!(server.count("SELECT count(*) FROM media").await, CLIENTS as i64);
}
