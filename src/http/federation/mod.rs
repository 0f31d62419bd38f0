//! The server-server API's edge: `X-Matrix` authentication ([`auth::Federated`]), keys and the
//! notary, and each part of federation's handlers. Served on `listen`, or on a listener of its
//! own (`federation.listen`), when `federation.enabled`.

pub(crate) mod auth;
mod dag;
mod directory;
mod keys;
mod media;
mod membership;
mod query;
mod transactions;
mod user_keys;

use crate::state::AppState;
use axum::Router;

/// Every federation route. Each part adds its module above and one line here.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = keys::routes(router);
    let router = directory::routes(router);
    let router = membership::routes(router);
    let router = query::routes(router);
    let router = media::routes(router);
    let router = transactions::routes(router);
    let router = user_keys::routes(router);
    dag::routes(router)
}
