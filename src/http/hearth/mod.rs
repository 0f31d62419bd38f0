//! Hearth's own client API (`/_hearth/client/v1/...`, documented in docs/API.md): what
//! Matrix lacks for creator communities (thin handlers over `crate::creators`), and the
//! WebSocket transport (`ws`).

mod block;
mod broadcast;
mod extract;
mod tips;
mod ws;

use crate::state::AppState;
use axum::Router;

pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = tips::routes(router);
    let router = ws::routes(router);
    let router = block::routes(router);
    broadcast::routes(router)
}
