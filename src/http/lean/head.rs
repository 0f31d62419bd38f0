//! Reading a request head with a buffer that lives only as long as the head is being read, and
//! deciding whether the lean path can answer it.

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use http::{HeaderName, HeaderValue, Method, Uri, Version};
use std::io;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// A head longer than this goes to hyper with what was read (it knows every limit's answer).
const MAX_HEAD: usize = 16 * 1024;
/// Room made for each read of a head: most heads of a long-polling client fit at once.
const READ_CHUNK: usize = 1024;
/// Headers a lean head may have; more go to hyper.
const MAX_HEADERS: usize = 48;

/// What the next request on the connection is.
pub(super) enum Head {
    /// A request without a body that the lean path answers: the request, whether the client
    /// asked to close the connection after it, and how many bytes of the buffer it took.
    /// (Boxed: only while the head is read does this exist, and the others carry nothing.)
    Lean { request: Box<Request>, close: bool, length: usize },
    /// Anything else (a body, an upgrade, HTTP/1.0 or 2, a malformed or very long head): hyper
    /// serves the connection from here on, starting with the bytes read so far.
    Other,
    /// The client closed the connection between requests.
    Closed,
}

/// Reads until `pending` holds a whole head (or shows it is not a lean one).
pub(super) async fn read(stream: &TcpStream, pending: &mut Vec<u8>, address: SocketAddr) -> io::Result<Head> {
    loop {
        if !pending.is_empty() {
            match parse(pending, address) {
                Parsed::Complete(head) => return Ok(head),
                Parsed::Partial if pending.len() < MAX_HEAD => {}
                Parsed::Partial | Parsed::Other => return Ok(Head::Other),
            }
        }
        stream.readable().await?;
        pending.reserve(READ_CHUNK);
        match stream.try_read_buf(pending) {
            // A client closing between requests is done; one closing halfway through a head
            // gets no answer from hyper either.
            Ok(0) => return Ok(Head::Closed),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
}

enum Parsed {
    Complete(Head),
    Partial,
    Other,
}

fn parse(buffer: &[u8], address: SocketAddr) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let length = match head.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        // Including too many headers: hyper answers those as it always has.
        Err(_) => return Parsed::Other,
    };
    match lean_request(&head, address) {
        Some((request, close)) => Parsed::Complete(Head::Lean { request: Box::new(request), close, length }),
        None => Parsed::Other,
    }
}

/// The request, when it is one the lean path answers: HTTP/1.1, a path, no body, no upgrade,
/// nothing to confirm before a body. Everything is copied out of the read buffer, so the
/// buffer is freed as soon as the head is parsed (hyper's requests hold on to its buffer).
fn lean_request(head: &httparse::Request<'_, '_>, address: SocketAddr) -> Option<(Request, bool)> {
    if head.version != Some(1) {
        return None;
    }
    let method = Method::from_bytes(head.method?.as_bytes()).ok()?;
    // HEAD's answer has a body's headers and no body; CONNECT takes the connection over.
    if method == Method::HEAD || method == Method::CONNECT {
        return None;
    }
    let path = head.path?;
    if !path.starts_with('/') {
        return None;
    }
    let uri = Uri::try_from(path).ok()?;
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    let mut close = false;
    let headers = request.headers_mut();
    headers.reserve(head.headers.len());
    for header in head.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(header.value).ok()?;
        if name == http::header::CONTENT_LENGTH {
            if value.as_bytes().trim_ascii() != b"0" {
                return None;
            }
        } else if name == http::header::TRANSFER_ENCODING
            || name == http::header::UPGRADE
            || name == http::header::EXPECT
        {
            return None;
        } else if name == http::header::CONNECTION {
            for token in value.as_bytes().split(|byte| *byte == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return None;
                }
            }
        }
        headers.append(name, value);
    }
    request.extensions_mut().insert(ConnectInfo(address));
    Some((request, close))
}
