//! Client-server API handlers: each parses a ruma request, calls the domain, and returns a
//! ruma response.

mod account;
mod account_data;
mod devices;
mod discovery;
mod filters;
mod membership;
mod profile;
mod register;
mod rooms;
mod session;

use crate::server::AppState;
use axum::Router;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = discovery::routes(router);
    let router = register::routes(router);
    let router = session::routes(router);
    let router = account::routes(router);
    let router = devices::routes(router);
    let router = profile::routes(router);
    let router = account_data::routes(router);
    let router = rooms::routes(router);
    let router = membership::routes(router);
    filters::routes(router)
}
