//! Media across servers: another server's media (`mxc://other/…`) is fetched over federation
//! (`/_matrix/federation/v1/media/download`, multipart), kept, and served to local clients,
//! thumbnails included; this server's media is served to other servers the same way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::media_support;

use common::federation::{FedServer, FederatedPair, TestCa, https_client};
use common::*;
use media_support::*;
use reqwest::StatusCode;
use ruma::api::federation::authenticated_media::{FileOrLocation, get_content, get_content_thumbnail};
use std::sync::Arc;

const PASSWORD: &str = "media federation pw";

/// Files under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries.flatten().map(|entry| if entry.path().is_dir() { files_under(&entry.path()) } else { 1 }).sum()
    })
}

#[tokio::test]
async fn a_user_downloads_another_servers_file_and_thumbnail_which_stay_when_that_server_is_gone() {
    let FederatedPair { a, b, .. } = FederatedPair::start().await;
    let alice = a.server.register("alice", PASSWORD).await;
    let bob = b.server.register("bob", PASSWORD).await;
    let photo = picture(300, 200, image::ImageFormat::Png);
    let (status, body) = upload(&a.server, &alice.access_token, photo.clone(), "image/png", Some("sunset.png")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let media = mxc_path(&body["content_uri"]);
    assert!(media.starts_with(&format!("{}/", a.name())), "{media}");

    let (status, headers, got) =
        fetch(&b.server, &format!("/_matrix/client/v1/media/download/{media}"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&got));
    assert_eq!(got, photo, "bob gets alice's bytes");
    assert_eq!(headers["content-type"], "image/png");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(disposition.contains("sunset.png"), "the uploaded name crosses servers: {disposition}");

    let (status, headers, thumbnail) = fetch(
        &b.server,
        &format!("/_matrix/client/v1/media/thumbnail/{media}?width=96&height=96&method=crop"),
        bob.token(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&thumbnail));
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(dimensions(&thumbnail), (96, 96));

    // Kept on B: with A gone, both are still served.
    let origin = a.name().to_string();
    assert_eq!(b.server.count(&format!("SELECT count(*) FROM media WHERE origin = '{origin}'")).await, 1);
    let _stopped = a.stop().await;
    let (status, _, again) = fetch(&b.server, &format!("/_matrix/client/v1/media/download/{media}"), bob.token()).await;
    assert_eq!((status, again), (StatusCode::OK, photo));
    let (status, _, again) = fetch(
        &b.server,
        &format!("/_matrix/client/v1/media/thumbnail/{media}?width=96&height=96&method=crop"),
        bob.token(),
    )
    .await;
    assert_eq!((status, again), (StatusCode::OK, thumbnail));
}

#[tokio::test]
async fn media_the_other_server_does_not_have_is_not_found() {
    let FederatedPair { a, b, .. } = FederatedPair::start().await;
    let bob = b.server.register("bob", PASSWORD).await;
    for path in [
        format!("/_matrix/client/v1/media/download/{}/nosuchmediahere", a.name()),
        format!("/_matrix/client/v1/media/thumbnail/{}/nosuchmediahere?width=32&height=32", a.name()),
    ] {
        let (status, _, body) = fetch(&b.server, &path, bob.token()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {}", String::from_utf8_lossy(&body));
        assert_eq!(errcode(&body), "M_NOT_FOUND", "{path}");
    }
    assert_eq!(b.server.count("SELECT count(*) FROM media").await, 0, "nothing is recorded for a miss");
}

#[tokio::test]
async fn concurrent_first_requests_all_get_the_file_which_is_kept_once() {
    let FederatedPair { a, b, .. } = FederatedPair::start().await;
    let alice = a.server.register("alice", PASSWORD).await;
    let bob = b.server.register("bob", PASSWORD).await;
    let file = incompressible(3 * 1024 * 1024).into_bytes();
    let media = uploaded(&a.server, &alice.access_token, file.clone(), "application/octet-stream").await;
    let path = format!("/_matrix/client/v1/media/download/{media}");
    let downloads = (0..8).map(|_| fetch(&b.server, &path, bob.token()));
    for (status, _, got) in futures_util::future::join_all(downloads).await {
        assert_eq!(status, StatusCode::OK);
        assert!(got == file, "every concurrent request gets the whole file");
    }
    assert_eq!(b.server.count("SELECT count(*) FROM media").await, 1);
    let media_dir = b.state().config.data_dir.join("media");
    assert_eq!(files_under(&media_dir.join("content")), 1, "the bytes are stored once");
    assert_eq!(files_under(&media_dir.join("staging")), 0, "no staging file is left behind");
}

#[tokio::test]
async fn a_remote_file_over_the_upload_limit_is_refused_and_not_kept() {
    let ca = Arc::new(TestCa::new());
    let (a, b) = tokio::join!(
        FedServer::start(ca.clone()),
        FedServer::start_with(ca.clone(), |config| config.media.max_upload_size = 100_000)
    );
    let alice = a.server.register("alice", PASSWORD).await;
    let bob = b.server.register("bob", PASSWORD).await;
    let media = uploaded(&a.server, &alice.access_token, vec![7; 200_000], "application/octet-stream").await;
    let (status, _, body) = fetch(&b.server, &format!("/_matrix/client/v1/media/download/{media}"), bob.token()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(errcode(&body), "M_TOO_LARGE");
    assert_eq!(b.server.count("SELECT count(*) FROM media").await, 0);
    assert_eq!(files_under(&b.state().config.data_dir.join("media").join("staging")), 0);
}

#[tokio::test]
async fn the_legacy_endpoints_serve_remote_media_only_without_the_freeze() {
    let ca = Arc::new(TestCa::new());
    let (a, frozen, open) = tokio::join!(
        FedServer::start(ca.clone()),
        FedServer::start(ca.clone()),
        FedServer::start_with(ca.clone(), |config| config.media.legacy_unauthenticated = true)
    );
    let alice = a.server.register("alice", PASSWORD).await;
    let photo = picture(64, 48, image::ImageFormat::Jpeg);
    let media = uploaded(&a.server, &alice.access_token, photo.clone(), "image/jpeg").await;

    let (status, _, body) = fetch(&frozen.server, &format!("/_matrix/media/v3/download/{media}"), None).await;
    assert_eq!((status, errcode(&body).as_str()), (StatusCode::NOT_FOUND, "M_NOT_FOUND"), "the spec's freeze");

    let (status, _, got) = fetch(&open.server, &format!("/_matrix/media/v3/download/{media}"), None).await;
    assert_eq!((status, got), (StatusCode::OK, photo));
    let (status, headers, thumbnail) =
        fetch(&open.server, &format!("/_matrix/media/v3/thumbnail/{media}?width=32&height=32&method=crop"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(dimensions(&thumbnail), (32, 32));
}

#[tokio::test]
async fn other_servers_get_this_servers_media_as_multipart_and_only_when_signed() {
    let FederatedPair { a, b, ca } = FederatedPair::start().await;
    let alice = a.server.register("alice", PASSWORD).await;
    let photo = picture(120, 80, image::ImageFormat::Png);
    let (status, body) = upload(&a.server, &alice.access_token, photo.clone(), "image/png", Some("cat.png")).await;
    assert_eq!(status, StatusCode::OK);
    let media_id = mxc_path(&body["content_uri"]).rsplit('/').next().unwrap().to_owned();

    // ruma's client side reads the answer: the multipart framing is the spec's.
    let response =
        b.state().federation.send(a.name(), get_content::v1::Request::new(media_id.clone())).await.expect("download");
    let FileOrLocation::File(content) = response.content else { panic!("the file itself, not a Location") };
    assert_eq!(content.file, photo);
    assert_eq!(content.content_type.as_deref(), Some("image/png"));
    assert_eq!(content.content_disposition.and_then(|d| d.filename).as_deref(), Some("cat.png"));

    let mut request = get_content_thumbnail::v1::Request::new(media_id.clone(), 32u32.into(), 32u32.into());
    request.method = Some(ruma::media::Method::Crop);
    let response = b.state().federation.send(a.name(), request).await.expect("thumbnail");
    let FileOrLocation::File(content) = response.content else { panic!("the thumbnail itself") };
    assert_eq!(content.content_type.as_deref(), Some("image/png"));
    assert_eq!(dimensions(&content.file), (32, 32));

    let missing = b.state().federation.send(a.name(), get_content::v1::Request::new("nosuchmedia".to_owned())).await;
    assert!(
        matches!(&missing, Err(hearth::testing::federation::client::FederationError::Remote { status, errcode, .. })
            if *status == 404 && errcode == "M_NOT_FOUND"),
        "{missing:?}"
    );

    // Without a signature, nothing.
    let unsigned = https_client(&ca)
        .get(a.federation_url(&format!("/_matrix/federation/v1/media/download/{media_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
}
