//! What the media tests share: uploading, downloading, and images made on the spot.
#![allow(dead_code)] // each test binary uses part of it

use crate::common::*;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::io::Cursor;

pub mod s3;

/// Uploads `bytes` through `POST /_matrix/media/v3/upload`; returns the status and the answer.
pub async fn upload(
    server: &TestServer,
    token: &str,
    bytes: Vec<u8>,
    content_type: &str,
    filename: Option<&str>,
) -> (StatusCode, Value) {
    let query = filename.map(|name| format!("?filename={}", encode(name))).unwrap_or_default();
    let response = server
        .http
        .post(server.url(&format!("/_matrix/media/v3/upload{query}")))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .expect("upload reaches the server");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Uploads and returns the `server/media_id` part of the mxc URI.
pub async fn uploaded(server: &TestServer, token: &str, bytes: Vec<u8>, content_type: &str) -> String {
    let (status, body) = upload(server, token, bytes, content_type, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    mxc_path(&body["content_uri"])
}

pub fn mxc_path(uri: &Value) -> String {
    uri.as_str().and_then(|uri| uri.strip_prefix("mxc://")).expect("an mxc URI").to_owned()
}

/// A GET with an optional token; returns status, headers and bytes.
pub async fn fetch(server: &TestServer, path: &str, token: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
    fetch_with(server, path, token, &[]).await
}

pub async fn fetch_with(
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut request = server.http.get(server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request reaches the server");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.expect("body").to_vec())
}

pub fn errcode(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v["errcode"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A picture with a gradient (so resizing and cropping show), encoded as `format`.
pub fn picture(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width.max(1)) as u8, (y * 255 / height.max(1)) as u8, 128])
    });
    let mut out = Cursor::new(Vec::new());
    match format {
        image::ImageFormat::WebP => {
            let rgba = image::DynamicImage::ImageRgb8(image).to_rgba8();
            image::codecs::webp::WebPEncoder::new_lossless(&mut out)
                .encode(rgba.as_raw(), width, height, image::ExtendedColorType::Rgba8)
                .expect("encode WebP");
        }
        format => image::DynamicImage::ImageRgb8(image).write_to(&mut out, format).expect("encode"),
    }
    out.into_inner()
}

/// The size of an encoded image.
pub fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let image = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().expect("format").decode();
    let image = image.expect("the answer is an image");
    (image.width(), image.height())
}

/// A JPEG whose EXIF says "rotate 90° clockwise to show" (orientation 6).
pub fn jpeg_rotated(width: u32, height: u32) -> Vec<u8> {
    let jpeg = picture(width, height, image::ImageFormat::Jpeg);
    // TIFF (big endian), one IFD entry: Orientation (0x0112), SHORT, 1 value: 6.
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01".to_vec();
    tiff.extend_from_slice(b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00\x00\x00\x00\x00");
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend_from_slice(&tiff);
    let length = u16::try_from(payload.len() + 2).unwrap();
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A tiny PNG whose header claims `width` × `height`: a decompression bomb's calling card.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = picture(1, 1, image::ImageFormat::Png);
    // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), 5 more bytes, CRC (4).
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
