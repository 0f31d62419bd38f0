//! The media repository through its HTTP API: uploads (plain and asynchronous), downloads
//! through the authenticated and the legacy endpoints, the spec's freeze, ranges, the headers
//! that keep browsers safe, the upload limit, and deletion through the admin hooks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::media_support;

use common::*;
use media_support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";

/// A server whose media lives in its own directory (kept alive by the returned guard).
async fn media_server(adjust: impl FnOnce(&mut hearth::config::Config)) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("data dir");
    let path = dir.path().to_owned();
    let server = TestServer::start_with(|config| {
        config.data_dir = path;
        adjust(config);
    })
    .await;
    (server, dir)
}

fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries.flatten().map(|entry| if entry.path().is_dir() { files_under(&entry.path()) } else { 1 }).sum()
    })
}

#[tokio::test]
async fn an_upload_comes_back_through_the_authenticated_api_with_safe_headers() {
    let (server, _dir) = media_server(|_| {}).await;
    let alice = server.register("alice", PASSWORD).await;
    let bytes = b"hello, media".repeat(1000);
    let (status, body) = upload(&server, &alice.access_token, bytes.clone(), "text/plain", Some("notes ü.txt")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uri = body["content_uri"].as_str().unwrap();
    assert!(uri.starts_with("mxc://hearth.test/"), "{uri}");
    let media = mxc_path(&body["content_uri"]);

    let (status, headers, got) =
        fetch(&server, &format!("/_matrix/client/v1/media/download/{media}"), alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, bytes);
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["content-length"], bytes.len().to_string().as_str());
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("inline"), "{disposition}");
    assert!(disposition.contains("notes%20%C3%BC.txt"), "the filename, encoded: {disposition}");
    assert!(headers["content-security-policy"].to_str().unwrap().starts_with("sandbox; default-src 'none'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cross-origin-resource-policy"], "cross-origin");
    assert_eq!(headers["access-control-allow-origin"], "*");

    // A name in the path wins over the uploaded one.
    let (status, headers, got) =
        fetch(&server, &format!("/_matrix/client/v1/media/download/{media}/other.txt"), alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, bytes);
    assert!(headers["content-disposition"].to_str().unwrap().contains("other.txt"));

    // Without a token the authenticated endpoint refuses; another user may download.
    let (status, _, body) = fetch(&server, &format!("/_matrix/client/v1/media/download/{media}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(errcode(&body), "M_MISSING_TOKEN");
    let bob = server.register("bob", PASSWORD).await;
    let (status, _, got) = fetch(&server, &format!("/_matrix/client/v1/media/download/{media}"), bob.token()).await;
    assert_eq!((status, got.len()), (StatusCode::OK, bytes.len()));

    // Unknown media, and media of a server that cannot be reached.
    let (status, _, body) =
        fetch(&server, "/_matrix/client/v1/media/download/hearth.test/nosuchmedia", alice.token()).await;
    assert_eq!((status, errcode(&body).as_str()), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    // A server that cannot be reached is a gateway failure, not missing media (Synapse: 502).
    let (status, _, body) = fetch(&server, "/_matrix/client/v1/media/download/other.test/abc", alice.token()).await;
    assert_eq!((status, errcode(&body).as_str()), (StatusCode::BAD_GATEWAY, "M_UNKNOWN"));

    // The config tells clients the limit, on both paths.
    for path in ["/_matrix/client/v1/media/config", "/_matrix/media/v3/config"] {
        let (status, body) = server.get(path, alice.token()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["m.upload.size"], 50 * 1024 * 1024);
    }
}

#[tokio::test]
async fn html_is_an_attachment_and_ranges_are_served() {
    let (server, _dir) = media_server(|_| {}).await;
    let alice = server.register("alice", PASSWORD).await;
    let media = uploaded(&server, &alice.access_token, b"<script>alert(1)</script>".to_vec(), "text/html").await;
    let path = format!("/_matrix/client/v1/media/download/{media}");
    let (status, headers, _) = fetch(&server, &path, alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment"));

    let (status, headers, got) = fetch_with(&server, &path, alice.token(), &[("range", "bytes=1-6")]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(got, b"script");
    assert_eq!(headers["content-range"], "bytes 1-6/25");
    let (status, _, got) = fetch_with(&server, &path, alice.token(), &[("range", "bytes=-9")]).await;
    assert_eq!((status, got.as_slice()), (StatusCode::PARTIAL_CONTENT, b"</script>".as_slice()));
    let (status, headers, _) = fetch_with(&server, &path, alice.token(), &[("range", "bytes=100-")]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers["content-range"], "bytes */25");
}

#[tokio::test]
async fn the_legacy_endpoints_follow_the_freeze() {
    // Default: media uploaded now is not served without authentication.
    let (server, _dir) = media_server(|_| {}).await;
    let alice = server.register("alice", PASSWORD).await;
    let media = uploaded(&server, &alice.access_token, b"frozen".to_vec(), "text/plain").await;
    for token in [None, alice.token()] {
        let (status, _, body) = fetch(&server, &format!("/_matrix/media/v3/download/{media}"), token).await;
        assert_eq!((status, errcode(&body).as_str()), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
    }
    let (status, _, got) = fetch(&server, &format!("/_matrix/client/v1/media/download/{media}"), alice.token()).await;
    assert_eq!((status, got.as_slice()), (StatusCode::OK, b"frozen".as_slice()));

    // Allowed: media uploaded while allowed is served both ways, r0 paths too.
    let (server, _dir) = media_server(|config| config.media.legacy_unauthenticated = true).await;
    let alice = server.register("alice", PASSWORD).await;
    let media = uploaded(&server, &alice.access_token, b"open".to_vec(), "text/plain").await;
    for path in [
        format!("/_matrix/media/v3/download/{media}"),
        format!("/_matrix/media/r0/download/{media}"),
        format!("/_matrix/media/v3/download/{media}/name.txt"),
    ] {
        let (status, _, got) = fetch(&server, &path, None).await;
        assert_eq!((status, got.as_slice()), (StatusCode::OK, b"open".as_slice()), "{path}");
    }
}

#[tokio::test]
async fn identical_uploads_are_stored_once_and_deleted_with_their_last_name() {
    let (server, dir) = media_server(|_| {}).await;
    let alice = server.register("alice", PASSWORD).await;
    let picture = picture(640, 480, image::ImageFormat::Png);
    let first = uploaded(&server, &alice.access_token, picture.clone(), "image/png").await;
    let second = uploaded(&server, &alice.access_token, picture.clone(), "image/png").await;
    assert_ne!(first, second, "each upload has its own id");
    let content = dir.path().join("media/content");
    assert_eq!(files_under(&content), 1, "the bytes are stored once");
    // A thumbnail, so there is one to delete.
    let (status, _, _) = fetch(
        &server,
        &format!("/_matrix/client/v1/media/thumbnail/{first}?width=96&height=96&method=crop"),
        alice.token(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let thumbnails = dir.path().join("media/thumbnail");
    assert!(files_under(&thumbnails) >= 1);

    // Ownership hooks: who uploaded what.
    let user = ruma::UserId::parse(alice.user_id.as_str()).unwrap();
    let uploads = server.state.media.uploads_of(&server.state.pool, &user, 10).await.unwrap();
    assert_eq!(uploads.len(), 2);
    assert!(uploads.iter().all(|media| media.size == Some(picture.len() as i64)));

    let origin = ruma::ServerName::parse("hearth.test").unwrap();
    let id = |path: &str| path.rsplit('/').next().unwrap().to_owned();
    // Quarantined media is served to nobody.
    assert!(server.state.media.set_quarantined(&server.state.pool, &origin, &id(&first), true).await.unwrap());
    let (status, _, _) = fetch(&server, &format!("/_matrix/client/v1/media/download/{first}"), alice.token()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert!(server.state.media.delete(&server.state.pool, &origin, &id(&first)).await.unwrap());
    assert_eq!(files_under(&content), 1, "the other id still names the bytes");
    let (status, _, got) = fetch(&server, &format!("/_matrix/client/v1/media/download/{second}"), alice.token()).await;
    assert_eq!((status, got.len()), (StatusCode::OK, picture.len()));

    assert!(server.state.media.delete(&server.state.pool, &origin, &id(&second)).await.unwrap());
    assert_eq!(files_under(&content), 0, "the bytes went with their last name");
    assert_eq!(files_under(&thumbnails), 0, "and their thumbnails");
    let (status, _, _) = fetch(&server, &format!("/_matrix/client/v1/media/download/{second}"), alice.token()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!server.state.media.delete(&server.state.pool, &origin, &id(&second)).await.unwrap());
}

#[tokio::test]
async fn asynchronous_upload_creates_then_fills_an_id() {
    let (server, _dir) = media_server(|config| config.media.max_pending_uploads = 2).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let (status, body) = server.post("/_matrix/media/v1/create", alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["unused_expires_at"].as_i64().unwrap() > 0);
    let media = mxc_path(&body["content_uri"]);

    // Not uploaded yet: a short wait ends in 504 M_NOT_YET_UPLOADED.
    let (status, _, got) =
        fetch(&server, &format!("/_matrix/client/v1/media/download/{media}?timeout_ms=200"), alice.token()).await;
    assert_eq!((status, errcode(&got).as_str()), (StatusCode::GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED"));

    // A download waiting for the upload gets it as soon as it lands.
    let waiting = {
        let url = server.url(&format!("/_matrix/client/v1/media/download/{media}?timeout_ms=20000"));
        let request = server.http.get(url).bearer_auth(&bob.access_token);
        tokio::spawn(async move {
            let started = Instant::now();
            let response = request.send().await.unwrap();
            (response.status(), response.bytes().await.unwrap().to_vec(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let put = |token: String, bytes: &'static [u8]| {
        server
            .http
            .put(server.url(&format!("/_matrix/media/v3/upload/{media}?filename=later.txt")))
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body(bytes)
            .send()
    };
    // Only its creator may fill it.
    let response = put(bob.access_token.clone(), b"not yours").await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = put(alice.access_token.clone(), b"later").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({}));
    let (status, got, waited) = waiting.await.unwrap();
    assert_eq!((status, got.as_slice()), (StatusCode::OK, b"later".as_slice()));
    assert!(waited < Duration::from_secs(10), "woken by the upload, not the timeout: {waited:?}");

    // Once filled, it cannot be overwritten.
    let response = put(alice.access_token.clone(), b"again").await.unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(response.json::<Value>().await.unwrap()["errcode"], "M_CANNOT_OVERWRITE_MEDIA");

    // A user may hold only so many unfilled ids.
    for _ in 0..2 {
        let (status, body) = server.post("/_matrix/media/v1/create", alice.token(), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let response = server.post("/_matrix/media/v1/create", alice.token(), json!({})).await;
    assert_error(&response, StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");

    // Ids expire unused: then they cannot be filled, and no longer count.
    let (_, expiring) = server.post("/_matrix/media/v1/create", bob.token(), json!({})).await;
    let expiring = mxc_path(&expiring["content_uri"]);
    server.count("WITH expired AS (UPDATE media SET unused_expires_at = 1 WHERE uploaded_at IS NULL RETURNING 1) SELECT count(*) FROM expired").await;
    let response = server
        .http
        .put(server.url(&format!("/_matrix/media/v3/upload/{expiring}")))
        .bearer_auth(&bob.access_token)
        .body("too late")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let (status, body) = server.post("/_matrix/media/v1/create", alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        server.count("SELECT count(*) FROM media WHERE uploaded_at IS NULL").await,
        1,
        "expired ids are forgotten"
    );

    // An unknown id cannot be filled.
    let response = server
        .http
        .put(server.url("/_matrix/media/v3/upload/hearth.test/nosuchid"))
        .bearer_auth(&alice.access_token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_upload_over_the_limit_is_answered_413_that_the_client_reads() {
    let (server, dir) = media_server(|config| config.media.max_upload_size = 64 * 1024).await;
    let alice = server.register("alice", PASSWORD).await;
    // Declared too large: refused before the body is read.
    let (status, body) =
        upload(&server, &alice.access_token, vec![7u8; 1024 * 1024], "application/octet-stream", None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["errcode"], "M_TOO_LARGE");

    // Chunked, no length: refused when it grows past the limit.
    let chunks = futures_util::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![1u8; 16 * 1024])));
    let response = server
        .http
        .post(server.url("/_matrix/media/v3/upload"))
        .bearer_auth(&alice.access_token)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("the client reads the answer");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.json::<Value>().await.unwrap()["errcode"], "M_TOO_LARGE");
    assert_eq!(files_under(&dir.path().join("media/staging")), 0, "nothing is left behind");
    assert_eq!(files_under(&dir.path().join("media/content")), 0);

    // Exactly the limit is fine; so is an empty file.
    let (status, body) =
        upload(&server, &alice.access_token, vec![3u8; 64 * 1024], "application/octet-stream", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = upload(&server, &alice.access_token, Vec::new(), "text/plain", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, got) =
        fetch(&server, &format!("/_matrix/client/v1/media/download/{}", mxc_path(&body["content_uri"])), alice.token())
            .await;
    assert_eq!((status, got.len()), (StatusCode::OK, 0));
}

#[tokio::test]
async fn uploads_are_rate_limited_per_user() {
    let (server, _dir) = media_server(|config| {
        config.rate_limits.enabled = true;
        config.rate_limits.media_upload_per_second = 0.01;
        config.rate_limits.media_upload_burst = 2;
    })
    .await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    for _ in 0..2 {
        let (status, body) = upload(&server, &alice.access_token, b"x".to_vec(), "text/plain", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = upload(&server, &alice.access_token, b"x".to_vec(), "text/plain", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED");
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0);
    // Another user has a budget of their own.
    let (status, body) = upload(&server, &bob.access_token, b"x".to_vec(), "text/plain", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A web page with OpenGraph tags and an image, on loopback; records the paths asked for.
async fn test_site() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::routing::get;
    let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = |hits: &std::sync::Arc<std::sync::Mutex<Vec<String>>>, path: &str| {
        hits.lock().unwrap().push(path.to_owned());
    };
    let (page_hits, image_hits, moved_hits) = (hits.clone(), hits.clone(), hits.clone());
    let app = axum::Router::new()
        .route(
            "/page",
            get(move || async move {
                record(&page_hits, "/page");
                (
                    [("content-type", "text/html; charset=utf-8")],
                    "<html><head><title>Fallback</title>\
                     <meta property=\"og:title\" content=\"Tea &amp; cake\">\
                     <meta name=\"description\" content=\"A page about tea\">\
                     <meta property=\"og:image\" content=\"/cat.png\"></head><body>hi</body></html>",
                )
            }),
        )
        .route(
            "/cat.png",
            get(move || async move {
                record(&image_hits, "/cat.png");
                ([("content-type", "image/png")], picture(64, 48, image::ImageFormat::Png))
            }),
        )
        .route(
            "/moved",
            get(move || async move {
                record(&moved_hits, "/moved");
                (StatusCode::FOUND, [("location", "/page")])
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, hits)
}

#[tokio::test]
async fn a_link_preview_reads_the_page_and_keeps_its_image() {
    let (server, _dir) = media_server(|config| {
        config.media.url_previews = true;
        config.network.allow_private_destinations = true;
    })
    .await;
    let alice = server.register("alice", PASSWORD).await;
    let (site, hits) = test_site().await;
    let path = format!("/_matrix/client/v1/media/preview_url?url={}", encode(&format!("{site}/moved")));
    let (status, preview) = server.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["og:title"], "Tea & cake");
    assert_eq!(preview["og:description"], "A page about tea");
    let image = mxc_path(&preview["og:image"]);
    let (status, _, body) = fetch(&server, &format!("/_matrix/client/v1/media/download/{image}"), alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dimensions(&body), (64, 48));
    assert_eq!(*hits.lock().unwrap(), ["/moved", "/page", "/cat.png"], "the redirect was followed");

    // Asked again: answered from the cache, the site is not asked again.
    let (status, again) = server.get(&path, alice.token()).await;
    assert_eq!((status, &again), (StatusCode::OK, &preview));
    assert_eq!(hits.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_link_preview_of_a_private_address_is_refused() {
    let (server, _dir) = media_server(|config| config.media.url_previews = true).await;
    let alice = server.register("alice", PASSWORD).await;
    let (site, hits) = test_site().await;
    for url in [format!("{site}/page"), site.replace("127.0.0.1", "localhost") + "/page"] {
        let path = format!("/_matrix/client/v1/media/preview_url?url={}", encode(&url));
        let response = server.get(&path, alice.token()).await;
        assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    assert!(hits.lock().unwrap().is_empty(), "nothing reached the private site");
}

#[tokio::test]
async fn url_previews_are_off_by_default() {
    let (server, _dir) = media_server(|_| {}).await;
    let alice = server.register("alice", PASSWORD).await;
    let response =
        server.get("/_matrix/client/v1/media/preview_url?url=https%3A%2F%2Fexample.org", alice.token()).await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

#[test]
fn media_configuration_is_read_and_checked() {
    let mut config = test_config();
    config.media.backend = "ftp".to_owned();
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("media.backend"), "{error}");
    config.media.backend = "s3".to_owned();
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("media.s3.bucket"), "{error}");

    // From the environment; text keys keep what looks like a number, the secret is masked.
    // (No other test in this binary reads the environment's configuration.)
    let env = [
        ("HEARTH_MEDIA__BACKEND", "s3"),
        ("HEARTH_MEDIA__S3__BUCKET", "0123"),
        ("HEARTH_MEDIA__S3__ENDPOINT", "http://127.0.0.1:9000"),
        ("HEARTH_MEDIA__S3__SECRET_ACCESS_KEY", "true"),
        ("HEARTH_MEDIA__MAX_UPLOAD_SIZE", "1000"),
        ("HEARTH_MEDIA__LEGACY_UNAUTHENTICATED", "true"),
    ];
    for (key, value) in env {
        // SAFETY: set before anything in this test reads the environment; no other thread of
        // this binary's tests reads these variables.
        unsafe { std::env::set_var(key, value) };
    }
    let loaded = hearth::config::Config::load(None);
    for (key, _) in env {
        unsafe { std::env::remove_var(key) };
    }
    let loaded = loaded.expect("the media keys load");
    assert_eq!(loaded.media.backend, "s3");
    assert_eq!(loaded.media.s3.bucket, "0123");
    assert_eq!(loaded.media.s3.secret_access_key.as_deref(), Some("true"));
    assert_eq!(loaded.media.max_upload_size, 1000);
    assert!(loaded.media.legacy_unauthenticated);
    let masked = loaded.to_masked_toml();
    assert!(masked.contains("secret_access_key = \"********\""), "{masked}");
}
