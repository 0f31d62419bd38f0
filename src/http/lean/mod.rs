//! The lean path for plain HTTP/1.1 requests without a body (`GET /sync` above all): read the
//! head, answer it, write the answer, holding no buffer in between.
//!
//! hyper gives every HTTP/1 connection an 8 KiB write buffer when it starts and an 8 KiB read
//! buffer at its first read, and keeps both until the connection ends; its requests point into
//! the read buffer, so a handler still holding the request keeps a third. A long-polling
//! `/sync` waits minutes with nothing to read or write, and those buffers were most of what an
//! idle client cost (24.7 KB of 36 KB, measured with heaptrack; issue 24 asks for ≤ 18 KB).
//! Here a head is read into a buffer that is freed once it is parsed, everything the request
//! needs is copied out of it, and the answer is written from its own bytes; while the handler
//! waits, the connection holds its socket and the handler's future, nothing more.
//!
//! Everything else — a request with a body, an upgrade (the WebSocket), HTTP/1.0 or HTTP/2,
//! a head that is malformed or very long, `HEAD` — is hyper's: it serves the connection from
//! that request on, starting with the bytes read so far, exactly as it did before.

mod answer;
mod head;
mod prefixed;

use axum::Router;
use head::Head;
pub(crate) use prefixed::Prefixed;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;

/// Serves `stream`'s lean requests in order; returns the connection when a request comes that
/// hyper must serve (`None` when the connection ended). As with hyper, a head must arrive
/// within `header_timeout` (which also closes a kept-alive connection left idle that long),
/// and once `stop` changes an idle connection closes and one being answered closes after its
/// answer.
pub(crate) async fn serve(
    mut stream: TcpStream,
    app: &Router,
    address: SocketAddr,
    stop: &mut watch::Receiver<bool>,
    header_timeout: Duration,
) -> Option<Prefixed> {
    let mut pending = Vec::new();
    loop {
        let read = tokio::select! {
            read = tokio::time::timeout(header_timeout, head::read(&stream, &mut pending, address)) => read,
            _ = stop.changed() => return None,
        };
        let (request, close, length) = match read {
            Ok(Ok(Head::Lean { request, close, length })) => (request, close, length),
            Ok(Ok(Head::Other)) => return Some(Prefixed::new(pending, stream)),
            Ok(Ok(Head::Closed) | Err(_)) | Err(_) => return None,
        };
        // The head's bytes are not kept through the answer; a request sent behind it is.
        pending.drain(..length);
        if pending.is_empty() {
            pending = Vec::new();
        }
        let answered = tokio::select! {
            answered = app.clone().oneshot(*request) => answered,
            // As hyper does: a client that left is not answered, and its handler is dropped
            // (a long-poll stops waiting).
            () = client_left(&stream), if pending.is_empty() => return None,
        };
        let Ok(response) = answered;
        let close = close || *stop.borrow();
        match Box::pin(answer::write(&mut stream, response, close)).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return None,
        }
    }
}

/// Returns when the client closed the connection (or it failed); never when it sent more (a
/// request behind this one, read once this one is answered).
async fn client_left(stream: &TcpStream) {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}
