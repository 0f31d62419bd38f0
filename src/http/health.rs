//! `GET /health`: 200 when the server can read and write its database, 503 otherwise.

use crate::health::Health;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::StatusCode;

pub(crate) fn routes(router: axum::Router<AppState>) -> Router<AppState> {
    crate::http::ruma::record_route(http::Method::GET, "/health", crate::http::ruma::BodyFormat::Json);
    router.route("/health", get(health))
}

/// `GET /health`: 200 when the database can be read and written, 503 otherwise.
async fn health(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match crate::health::check(&state.pool, &state.streams).await {
        Health::Serving => (StatusCode::OK, "OK"),
        Health::DatabaseUnreachable(error) => {
            tracing::warn!(%error, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
        Health::CannotWrite(error) => {
            tracing::warn!(%error, "health check: the database does not take writes");
            (StatusCode::SERVICE_UNAVAILABLE, "database does not take writes")
        }
    }
}
