//! Client-server API handlers: each parses a ruma request, calls the domain, and returns a
//! ruma response.

mod account;
mod account_data;
mod devices;
mod directory;
mod discovery;
mod filters;
mod keys;
mod members;
mod membership;
mod notifications;
mod presence;
mod profile;
mod push_rules;
mod pushers;
pub(crate) mod receipts;
mod register;
mod relations;
mod room_keys;
pub(crate) mod rooms;
mod session;
mod sliding_sync;
mod spaces;
mod sync;
mod threepids;
mod to_device;
mod voip;

use crate::state::AppState;
use axum::Router;

pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = discovery::routes(router);
    let router = register::routes(router);
    let router = session::routes(router);
    let router = account::routes(router);
    let router = devices::routes(router);
    let router = profile::routes(router);
    let router = receipts::routes(router);
    let router = push_rules::routes(router);
    let router = notifications::routes(router);
    let router = account_data::routes(router);
    let router = rooms::routes(router);
    let router = membership::routes(router);
    let router = directory::routes(router);
    let router = relations::routes(router);
    let router = members::routes(router);
    let router = spaces::routes(router);
    let router = sync::routes(router);
    let router = sliding_sync::routes(router);
    let router = to_device::routes(router);
    let router = presence::routes(router);
    let router = pushers::routes(router);
    let router = keys::routes(router);
    let router = room_keys::routes(router);
    let router = threepids::routes(router);
    let router = voip::routes(router);
    filters::routes(router)
}
