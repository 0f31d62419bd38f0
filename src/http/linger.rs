//! Reading what a client is still sending after Hearth has answered.
//!
//! Hearth often answers before it has read the whole request body: 413 `M_TOO_LARGE` as soon
//! as `Content-Length` exceeds the limit or a chunked body grows past it, 401 before reading
//! the body of an unauthenticated request, 404 and 405 without reading it at all. hyper then
//! closes the connection with the rest of the body unread, and the kernel answers the data
//! the client keeps sending with a TCP reset: a client still writing (Node's `fetch` with a
//! streamed body, a reverse proxy forwarding the upload) fails with `EPIPE` or "connection
//! reset" and never reads the answer that waits for it. So, as nginx's lingering close does,
//! the unread rest of a body is read and thrown away after the answer has been sent, within
//! a budget of bytes and time so that nobody can hold a connection open with it.

use axum::body::Body;
use axum::extract::Request;
use bytes::{Buf, Bytes};
use http::header::EXPECT;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

/// At most this much of an unread body is read and thrown away; a client sending more than
/// this beyond the limit gets its connection closed. Throwing bytes away costs no memory.
pub(crate) const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// At most this long is spent on it: a client trickling its body cannot hold the connection.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(30);

/// A request's body lent to the application: once the answer is ready, [`Lending::take_back`]
/// discards in the background whatever the application left unread.
pub(crate) struct Lending {
    lent: Arc<Mutex<Lent>>,
    awaits_continue: bool,
}

/// Lends the request's body to the application.
pub(crate) fn lend(request: Request) -> (Request, Lending) {
    // A client that asked `Expect: 100-continue` sends its body only once told to, and hyper
    // tells it so only when the body is first read: if the application never read it, there is
    // nothing to drain, and asking for it would make the client send it for nothing.
    let awaits_continue =
        request.headers().get(EXPECT).is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = request.into_parts();
    let lent = Arc::new(Mutex::new(Lent { body: Some(body), polled: false }));
    let request = Request::from_parts(parts, Body::new(LentBody(Arc::clone(&lent))));
    (request, Lending { lent, awaits_continue })
}

impl Lending {
    pub(crate) fn take_back(self) {
        // If the application handed the body to a task that still reads it, it is still in use.
        if let Ok(lent) = Arc::try_unwrap(self.lent) {
            let lent = lent.into_inner().unwrap_or_else(PoisonError::into_inner);
            if let Some(body) = lent.body
                && !http_body::Body::is_end_stream(&body)
                && (lent.polled || !self.awaits_continue)
            {
                tokio::spawn(discard(body));
            }
        }
    }
}

struct Lent {
    body: Option<Body>,
    /// Whether the application asked for any of the body.
    polled: bool,
}

/// The application's view of a lent body.
struct LentBody(Arc<Mutex<Lent>>);

impl http_body::Body for LentBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut lent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lent.polled = true;
        match lent.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        let lent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lent.body.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let lent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lent.body.as_ref().map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

/// A client that sends nothing for this long has stopped sending (nginx's `lingering_timeout`):
/// a stalled body is not waited for until [`LINGER_TIME`].
pub(crate) const LINGER_PAUSE: Duration = Duration::from_secs(5);

/// Reads `body` to its end and throws it away, within [`LINGER_BYTES`] and [`LINGER_TIME`],
/// and as long as it does not pause for [`LINGER_PAUSE`].
async fn discard(mut body: Body) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut discarded = 0usize;
    while discarded <= LINGER_BYTES {
        let next = deadline.min(tokio::time::Instant::now() + LINGER_PAUSE);
        match tokio::time::timeout_at(next, body.frame()).await {
            Ok(Some(Ok(frame))) => discarded += frame.data_ref().map_or(0, Buf::remaining),
            // The end, a broken connection, or out of time: dropping the body lets hyper
            // finish the connection either way.
            _ => break,
        }
    }
}
