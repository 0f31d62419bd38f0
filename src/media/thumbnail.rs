//! Thumbnails: the spec's recommended sizes are made right after an image is uploaded, any
//! other size when first asked for; all are kept (per content, so identical uploads share
//! them).
//!
//! Decoding hostile files is where a media repository gets hurt, so: the pixel count is read
//! from the header and refused above [`MAX_PIXELS`] before anything is decoded (a 16,000 ×
//! 16,000 PNG of a few KiB would otherwise want 1 GiB), the decoder's allocations are capped
//! too, a truncated or corrupt file is an error like any other, and at most
//! [`CONCURRENT_RENDERS`] decodes run at once so many uploads cannot multiply that memory.

use super::download::{Found, Lookup};
use super::storage::{ByteStream, Storage, content_key, thumbnail_key};
use super::{MediaRepo, animated};
use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::time::now_ms;
use anyhow::Context;
use bytes::Bytes;
use futures_util::TryStreamExt;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use ruma::ServerName;
use std::io::Cursor;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The most pixels an image may have to be thumbnailed (Synapse's `max_image_pixels`).
pub(crate) const MAX_PIXELS: u64 = 32 * 1024 * 1024;

/// The most bytes a decoder may allocate.
pub(crate) const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;

/// The largest thumbnail made on demand, per side; larger requests get this.
pub(crate) const MAX_SIDE: u32 = 1600;

/// Decodes running at once in this process.
pub(crate) const CONCURRENT_RENDERS: usize = 2;

/// How a thumbnail fits the requested box (spec: `method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Exactly the box's size (cropping what sticks out), or the largest box of its shape the
    /// image covers.
    Crop,
    /// The image's shape, as large as fits in the box.
    Scale,
}

impl Fit {
    pub fn as_str(self) -> &'static str {
        match self {
            Fit::Crop => "crop",
            Fit::Scale => "scale",
        }
    }
}

/// A thumbnail size: a box and a fit, and whether an animation stays animated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
    pub fit: Fit,
    /// Asked for with `animated=true`, of content that may be animated ([`animated`]).
    pub animated: bool,
}

impl Size {
    /// The thumbnail's method as stored (its row and storage key): the fit, and whether it is
    /// the animated one.
    pub fn method(self) -> &'static str {
        match (self.fit, self.animated) {
            (Fit::Crop, false) => "crop",
            (Fit::Scale, false) => "scale",
            (Fit::Crop, true) => "crop-animated",
            (Fit::Scale, true) => "scale-animated",
        }
    }
}

/// The sizes the spec recommends servers make ("Thumbnails").
pub(crate) const RECOMMENDED: [Size; 5] = [
    Size { width: 32, height: 32, fit: Fit::Crop, animated: false },
    Size { width: 96, height: 96, fit: Fit::Crop, animated: false },
    Size { width: 320, height: 240, fit: Fit::Scale, animated: false },
    Size { width: 640, height: 480, fit: Fit::Scale, animated: false },
    Size { width: 800, height: 600, fit: Fit::Scale, animated: false },
];

/// Content types Hearth can decode.
pub(crate) fn can_thumbnail(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    matches!(essence.as_str(), "image/jpeg" | "image/jpg" | "image/png" | "image/gif" | "image/webp")
}

/// The size to serve for a request: the smallest recommended one that is at least as large
/// and of the same shape (so that thumbnails are shared and made ahead), else the request
/// itself, within [`MAX_SIDE`].
pub(crate) fn choose(requested: Size) -> Size {
    let recommended = RECOMMENDED.iter().find(|size| {
        size.fit == requested.fit
            && size.width >= requested.width
            && size.height >= requested.height
            // A crop has the box's shape: only a box of the same shape will do.
            && (requested.fit == Fit::Scale
                || u64::from(size.width) * u64::from(requested.height)
                    == u64::from(size.height) * u64::from(requested.width))
    });
    let chosen = recommended.copied().unwrap_or(Size {
        width: requested.width.clamp(1, MAX_SIDE),
        height: requested.height.clamp(1, MAX_SIDE),
        fit: requested.fit,
        animated: false,
    });
    Size { animated: requested.animated, ..chosen }
}

/// Why a file cannot be thumbnailed; the client's problem, never the server's.
#[derive(Debug, thiserror::Error)]
pub enum Unthumbnailable {
    #[error("the image has {0} pixels, more than the {MAX_PIXELS} allowed")]
    TooManyPixels(u64),
    #[error("the image cannot be decoded: {0}")]
    Undecodable(String),
}

impl From<Unthumbnailable> for Error {
    fn from(why: Unthumbnailable) -> Error {
        // The spec's answer (400) and example errcode for content it cannot thumbnail.
        Error::unknown(format!("Cannot generate a thumbnail of this content: {why}"))
    }
}

/// A made thumbnail.
pub struct Rendered {
    pub size: Size,
    pub width: u32,
    pub height: u32,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// Decodes an image (checking its size first) and turns it upright by its EXIF orientation.
pub(crate) fn decode(bytes: &[u8]) -> Result<DynamicImage, Unthumbnailable> {
    let undecodable = |error: &dyn std::fmt::Display| Unthumbnailable::Undecodable(error.to_string());
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| undecodable(&e))?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| undecodable(&e))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS {
        return Err(Unthumbnailable::TooManyPixels(pixels));
    }
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| undecodable(&e))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Makes a thumbnail of `size` from a decoded image, never larger than the image.
pub(crate) fn resize(image: &DynamicImage, size: Size) -> DynamicImage {
    let (width, height) = (image.width().max(1), image.height().max(1));
    match size.fit {
        Fit::Scale => {
            if width <= size.width && height <= size.height {
                image.clone()
            } else {
                image.resize(size.width, size.height, FilterType::Triangle)
            }
        }
        Fit::Crop => {
            // Shrink the box, keeping its shape, until the image covers it: no upscaling.
            let factor =
                (f64::from(width) / f64::from(size.width)).min(f64::from(height) / f64::from(size.height)).min(1.0);
            let box_width = ((f64::from(size.width) * factor).round() as u32).clamp(1, width);
            let box_height = ((f64::from(size.height) * factor).round() as u32).clamp(1, height);
            image.resize_to_fill(box_width, box_height, FilterType::Triangle)
        }
    }
}

/// Makes every size asked for, decoding a still image once. JPEG stays JPEG (photos);
/// everything else becomes PNG (keeps transparency; the first frame of an animation), but an
/// animated size of an animation becomes an animated GIF ([`animated`]).
pub(crate) fn render(bytes: &[u8], content_type: &str, sizes: &[Size]) -> Result<Vec<Rendered>, Unthumbnailable> {
    let jpeg = content_type.to_ascii_lowercase().starts_with("image/jp");
    let mut still: Option<DynamicImage> = None;
    let mut made = Vec::with_capacity(sizes.len());
    for &size in sizes {
        if size.animated
            && let Some(rendered) = animated::render(bytes, content_type, size)?
        {
            made.push(rendered);
            continue;
        }
        let image = match still.take() {
            Some(image) => image,
            None => decode(bytes)?,
        };
        made.push(render_still(&image, size, jpeg)?);
        still = Some(image);
    }
    Ok(made)
}

fn render_still(image: &DynamicImage, size: Size, jpeg: bool) -> Result<Rendered, Unthumbnailable> {
    let thumbnail = resize(image, size);
    let mut out = Cursor::new(Vec::new());
    let encoded = if jpeg {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80);
        DynamicImage::ImageRgb8(thumbnail.to_rgb8()).write_with_encoder(encoder)
    } else {
        thumbnail.write_to(&mut out, image::ImageFormat::Png)
    };
    encoded.map_err(|error| Unthumbnailable::Undecodable(error.to_string()))?;
    Ok(Rendered {
        size,
        width: thumbnail.width(),
        height: thumbnail.height(),
        content_type: if jpeg { "image/jpeg" } else { "image/png" },
        bytes: out.into_inner(),
    })
}

/// Makes, stores and records thumbnails of `sizes` for a content.
async fn make(
    storage: &dyn Storage,
    renders: &Semaphore,
    pool: &Store,
    found: &Found,
    content_type: &str,
    sizes: Vec<Size>,
) -> Result<Vec<db::media::Thumbnail>> {
    let _permit = renders.acquire().await.context("thumbnail semaphore")?;
    let stream = storage
        .get(&content_key(&found.sha256), None)
        .await?
        .ok_or_else(|| Error::internal(format!("the bytes of media {} are missing", found.media_id)))?;
    let mut original = Vec::with_capacity(usize::try_from(found.size).unwrap_or_default());
    let mut stream = stream;
    while let Some(piece) = stream.try_next().await.context("read media for a thumbnail")? {
        original.extend_from_slice(&piece);
    }
    let content_type_owned = content_type.to_owned();
    let rendered = tokio::task::spawn_blocking(move || render(&original, &content_type_owned, &sizes))
        .await
        .context("thumbnail task")??;
    let mut made = Vec::with_capacity(rendered.len());
    for rendered in rendered {
        let method = rendered.size.method();
        let (requested_width, requested_height) = (side(rendered.size.width), side(rendered.size.height));
        let key = thumbnail_key(&found.sha256, requested_width, requested_height, method);
        let size = i64::try_from(rendered.bytes.len()).unwrap_or(i64::MAX);
        let thumbnail = db::media::Thumbnail {
            sha256: found.sha256.clone(),
            requested_width,
            requested_height,
            method: method.to_owned(),
            width: side(rendered.width),
            height: side(rendered.height),
            content_type: rendered.content_type.to_owned(),
            size,
        };
        // Under the content's lock: a deletion of the content's last media id either comes
        // after this (and finds the thumbnail to delete) or before (and this stores nothing).
        let mut tx = pool.begin().await?;
        db::media::lock_content(&mut *tx, &found.sha256).await?;
        if !db::media::content_referenced(&mut *tx, &found.sha256).await? {
            return Err(Error::not_found("No such media"));
        }
        storage.put_bytes(&key, Bytes::from(rendered.bytes)).await?;
        db::media::insert_thumbnail(&mut *tx, &thumbnail, now_ms()).await?;
        tx.commit().await?;
        made.push(thumbnail);
    }
    Ok(made)
}

fn side(pixels: u32) -> i32 {
    i32::try_from(pixels).unwrap_or(i32::MAX)
}

/// Makes the recommended sizes of a fresh upload in the background; failures (a file that is
/// not really an image) only mean there are none until asked for.
pub(crate) fn spawn_pregeneration(
    storage: Arc<dyn Storage>,
    renders: Arc<Semaphore>,
    pool: Store,
    sha256: String,
    content_type: String,
    size: u64,
) {
    tokio::spawn(async move {
        let found = Found { media_id: String::new(), content_type: None, filename: None, size, sha256 };
        if let Err(error) = make(&*storage, &renders, &pool, &found, &content_type, RECOMMENDED.to_vec()).await {
            tracing::info!(sha256 = %found.sha256, %error, "no thumbnails made on upload");
        }
    });
}

impl MediaRepo {
    /// A thumbnail of the media, made now if it was not made before.
    pub async fn thumbnail(
        &self,
        pool: &Store,
        own_server: &ServerName,
        lookup: Lookup<'_>,
        requested: Size,
    ) -> Result<(db::media::Thumbnail, ByteStream)> {
        if requested.width == 0 || requested.height == 0 {
            return Err(Error::invalid_param("Thumbnail width and height must be at least 1"));
        }
        let found = self.find(pool, own_server, lookup).await?;
        let content_type = found.content_type.clone().unwrap_or_default();
        if !can_thumbnail(&content_type) {
            return Err(Error::unknown("Cannot generate a thumbnail of this type of content"));
        }
        // Only what may be animated has an animated thumbnail; the rest shares the still one.
        let requested = Size { animated: requested.animated && animated::can_animate(&content_type), ..requested };
        let size = choose(requested);
        let (width, height, method) = (side(size.width), side(size.height), size.method());
        let known = db::media::get_thumbnail(pool, &found.sha256, width, height, method).await?;
        let thumbnail = match known {
            Some(thumbnail) => thumbnail,
            None => make(&*self.storage, &self.renders, pool, &found, &content_type, vec![size])
                .await?
                .pop()
                .ok_or_else(|| Error::internal("no thumbnail was made"))?,
        };
        let key = thumbnail_key(&found.sha256, width, height, method);
        let bytes = self
            .storage
            .get(&key, None)
            .await?
            .ok_or_else(|| Error::internal(format!("thumbnail {key} is missing from storage")))?;
        Ok((thumbnail, bytes))
    }
}
