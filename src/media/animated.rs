//! Animated thumbnails (spec v1.11: `animated=true` on a thumbnail request): an animated GIF or
//! WebP gets an animated GIF thumbnail of the requested size; anything else, a still one.
//!
//! An animation multiplies what a decoder does by its frame count, so besides the canvas's
//! pixel limit (the still path's [`MAX_PIXELS`]) the frames are decoded one at a time (each is
//! resized and encoded before the next is read, so memory holds one canvas and the output)
//! and at most [`MAX_FRAMES`] frames or [`MAX_ANIMATION_PIXELS`] decoded pixels are taken;
//! beyond either, the animation gets a still thumbnail of its first frame instead.

use super::thumbnail::{MAX_DECODE_ALLOC, MAX_PIXELS, Rendered, Size, Unthumbnailable, resize};
use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, DynamicImage, Frame, Frames, ImageDecoder, Limits};
use std::io::Cursor;

/// The most frames an animated thumbnail is made from.
pub const MAX_FRAMES: usize = 500;

/// The most pixels decoded over all frames (canvas × frames) for one animated thumbnail.
pub const MAX_ANIMATION_PIXELS: u64 = 256 * 1024 * 1024;

/// Content types that may be animated.
pub fn can_animate(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    matches!(essence.as_str(), "image/gif" | "image/webp")
}

/// An animated GIF thumbnail of `size`, or `None` if the file is not an animation (one frame)
/// or is over the limits: then a still thumbnail is the answer.
pub fn render(bytes: &[u8], content_type: &str, size: Size) -> Result<Option<Rendered>, Unthumbnailable> {
    let Some((frames, canvas_pixels)) = open(bytes, content_type)? else { return Ok(None) };
    let mut out = Vec::new();
    let mut encoder = GifEncoder::new_with_speed(&mut out, 10);
    encoder.set_repeat(Repeat::Infinite).map_err(undecodable)?;
    let (mut count, mut decoded, mut dimensions) = (0usize, 0u64, (0, 0));
    for frame in frames {
        let frame = frame.map_err(undecodable)?;
        count += 1;
        decoded = decoded.saturating_add(canvas_pixels);
        if count > MAX_FRAMES || decoded > MAX_ANIMATION_PIXELS {
            tracing::info!(count, decoded, "animation over the limits: a still thumbnail instead");
            return Ok(None);
        }
        let delay = frame.delay();
        let thumbnail = resize(&DynamicImage::ImageRgba8(frame.into_buffer()), size).to_rgba8();
        dimensions = thumbnail.dimensions();
        encoder.encode_frame(Frame::from_parts(thumbnail, 0, 0, delay)).map_err(undecodable)?;
    }
    drop(encoder);
    if count < 2 {
        return Ok(None);
    }
    Ok(Some(Rendered { size, width: dimensions.0, height: dimensions.1, content_type: "image/gif", bytes: out }))
}

/// The frames of an animated GIF or WebP and its canvas's pixel count, once its header has
/// passed the pixel limit; `None` for other types and for a WebP without animation.
fn open<'a>(bytes: &'a [u8], content_type: &str) -> Result<Option<(Frames<'a>, u64)>, Unthumbnailable> {
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let (frames, (width, height)) = match essence.as_str() {
        "image/gif" => {
            let mut decoder = GifDecoder::new(Cursor::new(bytes)).map_err(undecodable)?;
            decoder.set_limits(limits).map_err(undecodable)?;
            let dimensions = decoder.dimensions();
            (decoder.into_frames(), dimensions)
        }
        "image/webp" => {
            let mut decoder = WebPDecoder::new(Cursor::new(bytes)).map_err(undecodable)?;
            if !decoder.has_animation() {
                return Ok(None);
            }
            decoder.set_limits(limits).map_err(undecodable)?;
            let dimensions = decoder.dimensions();
            (decoder.into_frames(), dimensions)
        }
        _ => return Ok(None),
    };
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS {
        return Err(Unthumbnailable::TooManyPixels(pixels));
    }
    Ok(Some((frames, pixels)))
}

fn undecodable(error: image::ImageError) -> Unthumbnailable {
    Unthumbnailable::Undecodable(error.to_string())
}
