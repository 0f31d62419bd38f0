//! Thumbnails of JPEG, PNG, GIF and WebP at the sizes asked for, upright by their EXIF
//! orientation, never upscaled; and hostile images (a decompression bomb, a truncated file)
//! refused without harm to the server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::media_support;

use common::*;
use image::ImageFormat;
use media_support::*;
use reqwest::StatusCode;

const PASSWORD: &str = "correct horse battery";

async fn thumbnail(server: &TestServer, token: &str, media: &str, query: &str) -> (StatusCode, String, Vec<u8>) {
    let (status, headers, body) =
        fetch(server, &format!("/_matrix/client/v1/media/thumbnail/{media}?{query}"), Some(token)).await;
    let content_type = headers.get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, content_type, body)
}

#[tokio::test]
async fn thumbnails_have_the_sizes_asked_for_in_every_format() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let token = alice.access_token.as_str();
    for (format, content_type, thumbnail_type) in [
        (ImageFormat::Jpeg, "image/jpeg", "image/jpeg"),
        (ImageFormat::Png, "image/png", "image/png"),
        (ImageFormat::Gif, "image/gif", "image/png"),
        (ImageFormat::WebP, "image/webp", "image/png"),
    ] {
        let media = uploaded(&server, token, picture(640, 480, format), content_type).await;
        for (query, expected) in [
            // The spec's recommended sizes.
            ("width=32&height=32&method=crop", (32, 32)),
            ("width=96&height=96&method=crop", (96, 96)),
            ("width=320&height=240&method=scale", (320, 240)),
            ("width=640&height=480&method=scale", (640, 480)),
            // Never upscaled.
            ("width=800&height=600&method=scale", (640, 480)),
            ("width=2000&height=2000&method=crop", (480, 480)),
            // Other sizes: made on demand, served from the smallest made size that covers them.
            ("width=50&height=50&method=crop", (96, 96)),
            ("width=100&height=50&method=crop", (100, 50)),
            ("width=200&height=200", (320, 240)),
        ] {
            let (status, got_type, body) = thumbnail(&server, token, &media, query).await;
            assert_eq!(status, StatusCode::OK, "{content_type} {query}: {}", String::from_utf8_lossy(&body));
            assert_eq!(got_type, thumbnail_type, "{content_type} {query}");
            assert_eq!(dimensions(&body), expected, "{content_type} {query}");
        }
        // Asked again: the same bytes (made once, kept).
        let (_, _, first) = thumbnail(&server, token, &media, "width=100&height=50&method=crop").await;
        let (_, _, again) = thumbnail(&server, token, &media, "width=100&height=50&method=crop").await;
        assert_eq!(first, again);
    }
    let made: i64 = server.count("SELECT count(*) FROM media_thumbnails").await;
    assert!(made >= 4 * 6, "recommended and on-demand thumbnails are kept: {made}");
}

#[tokio::test]
async fn exif_orientation_turns_thumbnails_upright() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    // Stored 200 wide and 100 high; shown (rotated) 100 wide and 200 high.
    let media = uploaded(&server, &alice.access_token, jpeg_rotated(200, 100), "image/jpeg").await;
    let (status, _, body) = thumbnail(&server, &alice.access_token, &media, "width=640&height=480&method=scale").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dimensions(&body), (100, 200));
    // Larger: stored 1200 × 600, upright 600 × 1200, scaled into 640 × 480.
    let media = uploaded(&server, &alice.access_token, jpeg_rotated(1200, 600), "image/jpeg").await;
    let (_, _, body) = thumbnail(&server, &alice.access_token, &media, "width=640&height=480&method=scale").await;
    assert_eq!(dimensions(&body), (240, 480));
}

#[tokio::test]
async fn hostile_images_are_refused_without_harm() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let token = alice.access_token.as_str();

    // A few bytes claiming 16,000 × 16,000 pixels (1 GiB decoded): stored as a file, but not
    // decoded.
    let bomb = png_claiming(16_000, 16_000);
    assert!(bomb.len() < 200);
    let media = uploaded(&server, token, bomb, "image/png").await;
    let (status, _, body) = thumbnail(&server, token, &media, "width=96&height=96&method=crop").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));
    assert_eq!(errcode(&body), "M_UNKNOWN");
    assert!(String::from_utf8_lossy(&body).contains("pixels"), "{}", String::from_utf8_lossy(&body));

    // A truncated PNG.
    let whole = picture(640, 480, ImageFormat::Png);
    let media = uploaded(&server, token, whole[..whole.len() / 2].to_vec(), "image/png").await;
    let (status, _, body) = thumbnail(&server, token, &media, "width=96&height=96&method=crop").await;
    assert_eq!((status, errcode(&body).as_str()), (StatusCode::BAD_REQUEST, "M_UNKNOWN"));

    // Not an image at all, and a zero size.
    let media = uploaded(&server, token, b"plain text".to_vec(), "text/plain").await;
    let (status, _, body) = thumbnail(&server, token, &media, "width=96&height=96").await;
    assert_eq!((status, errcode(&body).as_str()), (StatusCode::BAD_REQUEST, "M_UNKNOWN"));
    let media = uploaded(&server, token, picture(64, 64, ImageFormat::Png), "image/png").await;
    let (status, _, body) = thumbnail(&server, token, &media, "width=0&height=96").await;
    assert_eq!((status, errcode(&body).as_str()), (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"));
    let (status, _, body) = thumbnail(&server, token, &media, "width=96&height=96&method=stretch").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&body));

    // The server is still fine.
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", alice.token()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn legacy_thumbnails_follow_the_freeze() {
    let server = TestServer::start_with(|config| config.media.legacy_unauthenticated = true).await;
    let alice = server.register("alice", PASSWORD).await;
    let media = uploaded(&server, &alice.access_token, picture(320, 240, ImageFormat::Png), "image/png").await;
    let (status, _, body) =
        fetch(&server, &format!("/_matrix/media/v3/thumbnail/{media}?width=32&height=32&method=crop"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(dimensions(&body), (32, 32));

    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let media = uploaded(&server, &alice.access_token, picture(320, 240, ImageFormat::Png), "image/png").await;
    let (status, _, body) =
        fetch(&server, &format!("/_matrix/media/v3/thumbnail/{media}?width=32&height=32&method=crop"), None).await;
    assert_eq!((status, errcode(&body).as_str()), (StatusCode::NOT_FOUND, "M_NOT_FOUND"));
}

/// An animated GIF of `frames` frames of `width` × `height`, each a different colour.
fn animated_gif(width: u32, height: u32, frames: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut out);
        encoder.set_repeat(image::codecs::gif::Repeat::Infinite).unwrap();
        for index in 0..frames {
            let shade = (index * 255 / frames.max(1)) as u8;
            let buffer =
                image::RgbaImage::from_fn(width, height, |x, _| image::Rgba([shade, (x % 256) as u8, 64, 255]));
            let delay = image::Delay::from_numer_denom_ms(100, 1);
            encoder.encode_frame(image::Frame::from_parts(buffer, 0, 0, delay)).unwrap();
        }
    }
    out
}

/// The frame count and size of a GIF.
fn gif_frames(bytes: &[u8]) -> (usize, (u32, u32)) {
    use image::AnimationDecoder;
    let decoder = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes)).unwrap();
    let frames = decoder.into_frames().collect_frames().unwrap();
    (frames.len(), frames[0].buffer().dimensions())
}

#[tokio::test]
async fn an_animation_asked_for_animated_gets_an_animated_thumbnail_and_otherwise_its_first_frame() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let token = alice.access_token.as_str();
    let media = uploaded(&server, token, animated_gif(400, 200, 4), "image/gif").await;

    // 64x64 is served from the recommended 320x240 (as still thumbnails are).
    let (status, content_type, body) = thumbnail(&server, token, &media, "width=64&height=64&animated=true").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/gif"));
    assert_eq!(gif_frames(&body), (4, (320, 160)), "every frame, scaled into the box");
    let (status, content_type, body) =
        thumbnail(&server, token, &media, "width=32&height=32&method=crop&animated=true").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/gif"));
    assert_eq!(gif_frames(&body), (4, (32, 32)));

    // Not asked (or asked not to): the first frame, still.
    for query in ["width=64&height=64", "width=64&height=64&animated=false"] {
        let (status, content_type, body) = thumbnail(&server, token, &media, query).await;
        assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/png"), "{query}");
        assert_eq!(dimensions(&body), (320, 160), "{query}");
    }

    // A still image asked for animated is still.
    let still = uploaded(&server, token, picture(100, 100, ImageFormat::Png), "image/png").await;
    let (status, content_type, _) = thumbnail(&server, token, &still, "width=64&height=64&animated=true").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/png"));
}

#[tokio::test]
async fn an_animation_over_the_frame_limit_gets_a_still_thumbnail() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let token = alice.access_token.as_str();
    let frames = u32::try_from(hearth::testing::media::animated::MAX_FRAMES).unwrap() + 1;
    let media = uploaded(&server, token, animated_gif(4, 4, frames), "image/gif").await;
    let (status, content_type, body) = thumbnail(&server, token, &media, "width=32&height=32&animated=true").await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/png"), "the first frame instead");
    assert_eq!(dimensions(&body), (4, 4));
    // The server is fine.
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", Some(token)).await;
    assert_eq!(status, StatusCode::OK);
}
