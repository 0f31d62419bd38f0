//! The S3 media backend against a real S3-protocol server: moto's `moto_server`, installed
//! from PyPI into `target/test-clients/s3-venv` on first use and started by this test. What
//! the store holds is read back from it directly, not from Hearth.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::media_support;

use common::*;
use media_support::s3::*;
use media_support::*;
use reqwest::StatusCode;
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

/// The keys the bucket holds, as the store lists them.
async fn stored_keys(s3: &S3Server) -> Vec<String> {
    let listing = reqwest::get(format!("{}/{BUCKET}?list-type=2", s3.endpoint)).await.unwrap().text().await.unwrap();
    listing.split("<Key>").skip(1).filter_map(|part| part.split("</Key>").next()).map(str::to_owned).collect()
}

/// A test server whose media store is a fresh S3 server (its data directory, kept by the
/// caller, holds nothing of the media).
async fn server_on_s3() -> (S3Server, tempfile::TempDir, TestServer) {
    let s3 = start_s3().await;
    let endpoint = s3.endpoint.clone();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_owned();
    let server = TestServer::start_with(move |config| {
        config.data_dir = data_dir;
        store_media_in(config, endpoint);
    })
    .await;
    (s3, dir, server)
}

#[tokio::test]
async fn media_round_trips_through_an_s3_store() {
    let (s3, dir, server) = server_on_s3().await;
    let alice = server.register("alice", PASSWORD).await;

    // 20 MiB: sent to the store in several parts.
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let media = uploaded(&server, &alice.access_token, big.clone(), "video/mp4").await;
    let (status, headers, got) =
        fetch(&server, &format!("/_matrix/client/v1/media/download/{media}"), alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "video/mp4");
    assert!(got == big, "the bytes come back unchanged");
    let (status, _, got) = fetch_with(
        &server,
        &format!("/_matrix/client/v1/media/download/{media}"),
        alice.token(),
        &[("range", "bytes=10000000-10000009")],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(got, big[10_000_000..10_000_010]);
    // Nothing of it stays on local disk.
    let local: Vec<_> = walk(&dir.path().join("media"));
    assert!(local.is_empty(), "no media files on local disk: {local:?}");

    // An image and its thumbnail.
    let picture = picture(640, 480, image::ImageFormat::Jpeg);
    let image = uploaded(&server, &alice.access_token, picture.clone(), "image/jpeg").await;
    let (status, _, body) = fetch(
        &server,
        &format!("/_matrix/client/v1/media/thumbnail/{image}?width=96&height=96&method=crop"),
        alice.token(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(dimensions(&body), (96, 96));

    // The store holds the two contents and the thumbnails, under content hashes.
    let keys = stored_keys(&s3).await;
    assert_eq!(keys.iter().filter(|key| key.starts_with("content/")).count(), 2, "{keys:?}");
    assert!(keys.iter().any(|key| key.starts_with("thumbnail/")), "{keys:?}");

    // Deleting the image takes its bytes and thumbnails out of the store.
    let origin = ruma::ServerName::parse("hearth.test").unwrap();
    let image_id = image.rsplit('/').next().unwrap();
    assert!(server.state.media.delete(&server.state.pool, &origin, image_id).await.unwrap());
    let keys = stored_keys(&s3).await;
    assert_eq!(keys.iter().filter(|key| key.starts_with("content/")).count(), 1, "{keys:?}");
    assert!(!keys.iter().any(|key| key.starts_with("thumbnail/")), "{keys:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |entries| {
            entries
                .flatten()
                .flat_map(|entry| if entry.path().is_dir() { walk(&entry.path()) } else { vec![entry.path()] })
                .collect()
        },
    )
}

#[tokio::test]
async fn the_orphan_sweep_deletes_objects_no_row_names_and_keeps_the_rest() {
    let (s3, _dir, server) = server_on_s3().await;
    let alice = server.register("alice", PASSWORD).await;
    let media = uploaded(&server, &alice.access_token, b"kept".to_vec(), "text/plain").await;
    // What a failed commit leaves: an object no row names.
    let orphan = format!("content/{}", "0".repeat(64));
    let put = reqwest::Client::new().put(format!("{}/{BUCKET}/{orphan}", s3.endpoint)).body("orphan").send().await;
    assert!(put.unwrap().status().is_success());
    assert_eq!(stored_keys(&s3).await.len(), 2);

    let sweeper = server.state.media.orphan_sweeper();
    let swept = sweeper.sweep(&server.state.pool, Duration::from_secs(3600)).await.unwrap();
    assert_eq!(swept.contents, 0, "within the grace period nothing goes");
    // S3 keeps modification times to the second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let swept = sweeper.sweep(&server.state.pool, Duration::ZERO).await.unwrap();
    assert_eq!(swept.contents, 1);
    let keys = stored_keys(&s3).await;
    assert!(!keys.contains(&orphan), "{keys:?}");
    assert_eq!(keys.len(), 1, "the upload's bytes stay: {keys:?}");
    let (status, _, got) = fetch(&server, &format!("/_matrix/client/v1/media/download/{media}"), alice.token()).await;
    assert_eq!((status, got), (StatusCode::OK, b"kept".to_vec()));
}
