//! What every request gets around its handler, in one middleware: it is counted and timed
//! (`telemetry`), browsers may read its answer (`cors`), and the body the handler left unread
//! is drained after the answer (`linger`).
//!
//! One layer rather than three: each `from_fn` layer boxes a future per request and adds a
//! level to every poll of it, and a long-poll is polled at each of its wakes. In a 1,000-member
//! fan-out, the middleware futures' own plumbing was a fifth of Hearth's CPU (session 16's
//! frame-pointer profile, docs/PERFORMANCE.md).

use crate::http::{cors, linger};
use crate::telemetry::RequestTimer;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

pub(crate) async fn around(request: Request, next: Next) -> Response {
    let timer = RequestTimer::start(&request);
    let mut response = if cors::is_preflight(&request) {
        cors::preflight()
    } else {
        let (request, lending) = linger::lend(request);
        let response = next.run(request).await;
        lending.take_back();
        response
    };
    cors::allow(&mut response);
    timer.finish(&response);
    response
}
