//! Writing a response on the lean path: the head, then the body framed by its length when it
//! is known and in chunks when it is not, as hyper frames them.

use axum::response::Response;
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderValue, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::io::{self, Write as _};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A piece of body up to this size is copied behind the head, so that both leave in one write.
const COPY_AT_MOST: usize = 16 * 1024;

/// Writes `response`; `Ok(true)` when the connection may serve another request.
pub(super) async fn write(stream: &mut TcpStream, response: Response, close: bool) -> io::Result<bool> {
    let (mut parts, mut body) = response.into_parts();
    let status = parts.status;
    let headers = &mut parts.headers;
    let close = close
        || headers.get(CONNECTION).is_some_and(|value| {
            value.as_bytes().split(|byte| *byte == b',').any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
        });
    if close && !headers.contains_key(CONNECTION) {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if !headers.contains_key(DATE) {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        if let Ok(date) = HeaderValue::from_str(&date) {
            headers.insert(DATE, date);
        }
    }
    let bodiless = status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let chunked = if bodiless {
        headers.remove(TRANSFER_ENCODING);
        false
    } else if headers.contains_key(CONTENT_LENGTH) {
        false
    } else if let Some(length) = body.size_hint().exact() {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        false
    } else {
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        true
    };

    let mut out = Vec::with_capacity(256);
    let reason = status.canonical_reason().unwrap_or("");
    write!(out, "HTTP/1.1 {} {reason}\r\n", status.as_u16())?;
    for (name, value) in headers.iter() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    drop(parts);
    if bodiless {
        stream.write_all(&out).await?;
        return Ok(!close);
    }
    // The head leaves with the first piece of the body: one write, one packet, for the usual
    // answer whose body is one small piece.
    loop {
        let data = match body.frame().await {
            None => None,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => Some(data),
                // Trailers are not sent (nothing here has any).
                Err(_) => continue,
            },
            Some(Err(error)) => {
                // Half an answer: the client can only tell by the connection closing.
                let _ = stream.write_all(&out).await;
                return Err(io::Error::other(error));
            }
        };
        let end = data.is_none() || body.is_end_stream();
        if let Some(data) = data.filter(|data| !data.is_empty()) {
            put(stream, &mut out, data, chunked).await?;
        }
        if end && chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        // What is ready leaves before the next piece is awaited: a body may be slow to come.
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if end {
            return Ok(!close);
        }
    }
}

/// Adds one piece of the body to `out`, framed; a large piece is written as it is rather than
/// copied (after what `out` held before it).
async fn put(stream: &mut TcpStream, out: &mut Vec<u8>, data: Bytes, chunked: bool) -> io::Result<()> {
    if chunked {
        // Writing a number into a Vec cannot fail.
        let _ = write!(out, "{:x}\r\n", data.len());
    }
    if out.len() + data.len() <= COPY_AT_MOST {
        out.extend_from_slice(&data);
    } else {
        stream.write_all(out).await?;
        out.clear();
        stream.write_all(&data).await?;
    }
    if chunked {
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}
