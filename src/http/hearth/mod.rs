//! Hearth's own client API (`/_hearth/client/v1/...`, documented in docs/API.md): what
//! Matrix lacks for creator communities. Thin handlers over `crate::creators`.

mod block;
mod broadcast;
mod extract;
mod tips;

use crate::state::AppState;
use axum::Router;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = tips::routes(router);
    let router = block::routes(router);
    broadcast::routes(router)
}
