//! `GET /health`: 200 when the server can reach its database, 503 otherwise.

use crate::server::AppState;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::StatusCode;

pub fn routes(router: axum::Router<AppState>) -> Router<AppState> {
    crate::http::ruma::record_route(http::Method::GET, "/health", crate::http::ruma::BodyFormat::Json);
    router.route("/health", get(health))
}

async fn health(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match crate::db::ping(&state.pool).await {
        Ok(()) => (StatusCode::OK, "OK"),
        Err(error) => {
            tracing::warn!(%error, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
