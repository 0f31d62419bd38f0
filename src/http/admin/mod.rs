//! The Synapse-compatible admin API (`/_synapse/admin/...`): thin handlers over `crate::admin`,
//! answering in Synapse's shapes so that synapse-admin, moderation bots and scripts work
//! unchanged. Every route but shared-secret registration and the server version takes an admin's access token
//! ([`extract::Admin`]), checked before anything else of the request is read.

mod extract;
mod history;
mod media;
mod paging;
mod register;
mod rooms;
mod server;
mod sessions;
mod users;

use crate::http::plain::route;
use crate::state::AppState;
use axum::Router;

pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = register::routes(router);
    let router = users::routes(router);
    let router = rooms::routes(router);
    let router = history::routes(router);
    let router = server::routes(router);
    let router = media::routes(router);
    sessions::routes(router)
}
