//! The HTTP edge: routing, middleware (request ids, tracing, CORS) and thin handlers.

pub(crate) mod admin;
pub(crate) mod body_defaults;
pub(crate) mod client;
pub(crate) mod cors;
mod edges;
pub(crate) mod error;
pub(crate) mod fallback;
pub(crate) mod federation;
pub(crate) mod health;
pub(crate) mod hearth;
pub(crate) mod json_body;
mod lean;
pub(crate) mod linger;
pub(crate) mod media;
pub(crate) mod plain;
pub mod ruma;
pub mod serve;
pub(crate) mod well_known;

use crate::state::AppState;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use http::HeaderName;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route the application serves, as registered: the list a test walks to check them all.
pub fn route_table() -> Vec<ruma::Route> {
    ruma::recording(|| drop(routes(true)))
}

fn routes(with_federation: bool) -> Router<AppState> {
    let router = Router::new();
    let router = client::routes(router);
    let router = media::routes(router);
    let router = admin::routes(router);
    let router = hearth::routes(router);
    let router = well_known::routes(router);
    let router = health::routes(router);
    if with_federation { federation::routes(router) } else { router }
}

/// The application on `listen`: everything, the federation API included unless it is off or
/// has a listener of its own.
pub(crate) fn router(state: AppState) -> Router {
    let federation = &state.config.federation;
    let with_federation = federation.enabled && federation.listen.is_empty();
    finish(routes(with_federation), state)
}

/// The application on `federation.listen`: the federation API alone.
pub(crate) fn federation_router(state: AppState) -> Router {
    finish(federation::routes(health::routes(Router::new())), state)
}

/// Fallbacks and middleware every listener's routes get.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(fallback::not_found)
        .method_not_allowed_fallback(fallback::method_not_allowed)
        // A bug that panics a handler costs that request a 500, never the connection or the
        // process; inside the trace layer, so the failure is logged with the request's id.
        .layer(CatchPanicLayer::custom(error::panic_response))
        // Outside the panic guard, so a panicking handler counts as the 500 it answered.
        .layer(axum::middleware::from_fn(edges::around))
        // Body size is enforced where bodies are read (the ruma extractor), with a Matrix
        // error; axum's own default limit would answer in plain text.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request| {
                            // Borrowed, not copied: a span that is not recorded (the default
                            // level is `warn`) costs a request no allocation.
                            let route = request
                                .extensions()
                                .get::<MatchedPath>()
                                .map_or_else(|| request.uri().path(), |path| path.as_str());
                            let request_id =
                                request.headers().get(REQUEST_ID).and_then(|value| value.to_str().ok()).unwrap_or("-");
                            tracing::info_span!(
                                "request",
                                method = %request.method(),
                                route = %route,
                                request_id = %request_id,
                                user = tracing::field::Empty,
                            )
                        })
                        .on_request(())
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        )
        .with_state(state)
}
