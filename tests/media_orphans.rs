//! The orphan sweep: bytes in storage that no row names (a request stored them and then failed
//! to commit; a crash left a staging file) are deleted once older than the grace period, and
//! nothing that a row names is ever touched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::media_support;

use common::*;
use hearth::testing::media::orphans::Swept;
use media_support::*;
use reqwest::StatusCode;
use std::path::Path;
use std::time::Duration;

const PASSWORD: &str = "orphan sweep pw";

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn bytes_without_a_row_are_deleted_after_the_grace_period_and_named_bytes_stay() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_owned();
    let server = TestServer::start_with(|config| config.data_dir = data_dir).await;
    let alice = server.register("alice", PASSWORD).await;
    let photo = picture(200, 100, image::ImageFormat::Png);
    let media = uploaded(&server, &alice.access_token, photo.clone(), "image/png").await;
    // Its thumbnail exists (made on demand if the upload's own are still being made).
    let thumbnail_path = format!("/_matrix/client/v1/media/thumbnail/{media}?width=32&height=32&method=crop");
    let (status, _, thumbnail) = fetch(&server, &thumbnail_path, alice.token()).await;
    assert_eq!(status, StatusCode::OK);

    // What failed commits and a crash leave behind.
    let root = dir.path().join("media");
    let orphan = root.join("content").join("0".repeat(64));
    let orphan_thumbnail = root.join("thumbnail").join("1".repeat(64)).join("32x32-crop");
    let unfinished_thumbnail = root.join("thumbnail").join("2".repeat(64)).join("96x96-crop.partial-abc");
    let staged = root.join("staging").join("leftover");
    for path in [&orphan, &orphan_thumbnail, &unfinished_thumbnail, &staged] {
        write(path, b"no row names these bytes");
    }
    let sweeper = server.state.media.orphan_sweeper();

    // Within the grace period nothing goes: a request may be between storing and committing.
    let swept = sweeper.sweep(&server.state.pool, Duration::from_secs(3600)).await.unwrap();
    assert_eq!(swept, Swept::default());
    assert!(orphan.exists() && orphan_thumbnail.exists() && staged.exists());

    tokio::time::sleep(Duration::from_millis(20)).await;
    let swept = sweeper.sweep(&server.state.pool, Duration::ZERO).await.unwrap();
    assert_eq!(swept, Swept { contents: 1, thumbnails: 2, staging_files: 1 });
    for path in [&orphan, &orphan_thumbnail, &unfinished_thumbnail, &staged] {
        assert!(!path.exists(), "{} is swept", path.display());
    }

    // The upload and its thumbnail are untouched.
    let (status, _, got) = fetch(&server, &format!("/_matrix/client/v1/media/download/{media}"), alice.token()).await;
    assert_eq!((status, got), (StatusCode::OK, photo));
    let (status, _, again) = fetch(&server, &thumbnail_path, alice.token()).await;
    assert_eq!((status, again), (StatusCode::OK, thumbnail));
    let again = sweeper.sweep(&server.state.pool, Duration::ZERO).await.unwrap();
    assert_eq!(again, Swept::default(), "a second sweep finds nothing");
}
