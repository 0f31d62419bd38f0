//! Reading the `multipart/mixed` answer of `GET /_matrix/federation/v1/media/{download,thumbnail}`
//! (spec v1.11, server-server API "Content Repository") while it arrives: two parts, a JSON
//! metadata object, then either the file (its own `Content-Type` and `Content-Disposition`) or
//! a `Location` header to fetch it from.
//!
//! ruma's response type holds the whole file in memory; a media answer may be as large as
//! `max_upload_size`, so the file part is handed on as a stream of pieces instead, and only the
//! small head of the body (up to [`MAX_HEAD`] bytes) is ever buffered.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::{BoxStream, Stream, StreamExt};

/// The most bytes read before the file part's own bytes begin (boundary, metadata, headers).
const MAX_HEAD: usize = 64 * 1024;

/// The file part's headers.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PartHeaders {
    pub content_type: Option<String>,
    pub content_disposition: Option<String>,
    pub location: Option<String>,
}

/// The boundary of a `multipart/mixed` `Content-Type`, if that is what it is.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let essence = params.next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        let value = value.trim().trim_matches('"');
        (name.trim().eq_ignore_ascii_case("boundary") && !value.is_empty()).then(|| value.to_owned())
    })
}

/// A multipart body being read: pieces come from `body`, `buffer` holds what was read but
/// not yet handed on.
pub(crate) struct Reader<S> {
    body: S,
    buffer: BytesMut,
    /// `\r\n--{boundary}`: what ends every part.
    delimiter: Vec<u8>,
}

impl<S, E> Reader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send + 'static,
    E: std::fmt::Display,
{
    pub(crate) fn new(body: S, boundary: &str) -> Self {
        // The body starts with `--boundary` (RFC 2046) or, as some servers write it, with
        // `\r\n--boundary`: a CRLF in front makes both the delimiter searched for.
        let mut buffer = BytesMut::from(&b"\r\n"[..]);
        buffer.reserve(8 * 1024);
        Reader { body, buffer, delimiter: format!("\r\n--{boundary}").into_bytes() }
    }

    /// Reads past the metadata part to the file part's headers; the reader then stands at the
    /// file's first byte.
    pub(crate) async fn file_headers(&mut self) -> Result<PartHeaders, String> {
        // Skip the preamble and the first delimiter, then the metadata part (its JSON object
        // is empty today, and nothing in it is used).
        self.skip_part().await?;
        self.skip_part().await?;
        let end = self.find_in_head(b"\r\n\r\n").await?;
        let head = self.buffer.split_to(end + 4);
        let text = std::str::from_utf8(&head[..end]).map_err(|_| "the file part's headers are not UTF-8".to_owned())?;
        let mut headers = PartHeaders::default();
        // The first line is the rest of the delimiter's line (transport padding).
        for line in text.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = Some(value.trim().to_owned());
            match name.trim().to_ascii_lowercase().as_str() {
                "content-type" => headers.content_type = value,
                "content-disposition" => headers.content_disposition = value,
                "location" => headers.location = value,
                _ => {}
            }
        }
        Ok(headers)
    }

    /// The file part's bytes, up to the delimiter that ends it; an error if the body ends
    /// before that (a truncated answer must not be kept as the file).
    pub(crate) fn into_file(self) -> BoxStream<'static, Result<Bytes, String>> {
        let keep = self.delimiter.len().saturating_sub(1);
        futures_util::stream::unfold(Some(self), move |reader| async move {
            let mut reader = reader?;
            loop {
                if let Some(at) = find(&reader.buffer, &reader.delimiter) {
                    let last = reader.buffer.split_to(at).freeze();
                    return Some((Ok(last), None));
                }
                // Everything but a tail that may be the start of the delimiter can go.
                if reader.buffer.len() > keep {
                    let ready = reader.buffer.split_to(reader.buffer.len() - keep).freeze();
                    if !ready.is_empty() {
                        return Some((Ok(ready), Some(reader)));
                    }
                }
                match reader.body.next().await {
                    Some(Ok(piece)) => reader.buffer.extend_from_slice(&piece),
                    Some(Err(error)) => return Some((Err(error.to_string()), None)),
                    None => return Some((Err("the answer ended inside the file part".to_owned()), None)),
                }
            }
        })
        .boxed()
    }

    /// Drops everything up to and including the next delimiter.
    async fn skip_part(&mut self) -> Result<(), String> {
        let delimiter = self.delimiter.clone();
        let at = self.find_in_head(&delimiter).await?;
        self.buffer.advance(at + delimiter.len());
        Ok(())
    }

    /// Where `needle` first is in the buffer, reading more as needed within [`MAX_HEAD`].
    async fn find_in_head(&mut self, needle: &[u8]) -> Result<usize, String> {
        loop {
            if let Some(at) = find(&self.buffer, needle) {
                return Ok(at);
            }
            if self.buffer.len() > MAX_HEAD {
                return Err(format!("no file part within the first {MAX_HEAD} bytes"));
            }
            match self.body.next().await {
                Some(Ok(piece)) => self.buffer.extend_from_slice(&piece),
                Some(Err(error)) => return Err(error.to_string()),
                None => return Err("the answer ended before its file part".to_owned()),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly
    use super::*;
    use futures_util::TryStreamExt;

    /// Feeds `body` in pieces of `piece` bytes, to cross every boundary at every offset.
    async fn read(body: &[u8], piece: usize) -> (PartHeaders, Result<Vec<u8>, String>) {
        let pieces: Vec<Result<Bytes, String>> =
            body.chunks(piece).map(|chunk| Ok(Bytes::copy_from_slice(chunk))).collect();
        let mut reader = Reader::new(futures_util::stream::iter(pieces), "xyz");
        let headers = reader.file_headers().await.unwrap();
        let file = reader
            .into_file()
            .try_fold(Vec::new(), |mut file, piece| async move {
                file.extend_from_slice(&piece);
                Ok(file)
            })
            .await;
        (headers, file)
    }

    #[tokio::test]
    async fn reads_the_file_part_in_any_piece_size_with_either_framing() {
        let file: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        for start in [&b"--xyz\r\n"[..], b"\r\n--xyz\r\n"] {
            let mut body = start.to_vec();
            body.extend_from_slice(b"Content-Type: application/json\r\n\r\n{}\r\n--xyz\r\n");
            body.extend_from_slice(b"Content-Type: image/png\r\ncontent-disposition: inline; filename=a.png\r\n\r\n");
            body.extend_from_slice(&file);
            body.extend_from_slice(b"\r\n--xyz--\r\n");
            for piece in [1, 2, 3, 7, 64, 4096, body.len()] {
                let (headers, got) = read(&body, piece).await;
                assert_eq!(headers.content_type.as_deref(), Some("image/png"));
                assert_eq!(headers.content_disposition.as_deref(), Some("inline; filename=a.png"));
                assert_eq!(got.unwrap(), file, "piece size {piece}");
            }
        }
    }

    #[tokio::test]
    async fn a_location_part_and_a_truncated_file() {
        let body =
            b"--xyz\r\nContent-Type: application/json\r\n\r\n{}\r\n--xyz\r\nLocation: https://cdn/x\r\n\r\n\r\n--xyz--";
        let (headers, _) = read(body, 5).await;
        assert_eq!(headers.location.as_deref(), Some("https://cdn/x"));

        let truncated =
            b"--xyz\r\nContent-Type: application/json\r\n\r\n{}\r\n--xyz\r\nContent-Type: text/plain\r\n\r\nhalf a fi";
        let (_, got) = read(truncated, 4).await;
        assert!(got.is_err(), "a file without its closing delimiter is refused");
    }

    #[test]
    fn boundaries() {
        assert_eq!(boundary("multipart/mixed; boundary=abc").as_deref(), Some("abc"));
        assert_eq!(boundary("Multipart/Mixed;boundary=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(boundary("multipart/form-data; boundary=abc"), None);
        assert_eq!(boundary("multipart/mixed"), None);
    }
}
