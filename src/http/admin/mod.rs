//! The Synapse-compatible admin API (`/_synapse/admin/...`). Today: shared-secret
//! registration, which test suites and provisioning tools rely on.

mod register;

use crate::state::AppState;
use axum::Router;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    register::routes(router)
}
