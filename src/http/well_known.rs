//! `/.well-known/matrix/server`: where other servers reach this one. When federation is served
//! on the client listener, the delegation points at the public base URL's host and port; when
//! it has a listener of its own (`federation.listen`), at the server name's host and that
//! listener's port; when it is off, there is nothing to point at.

use crate::error::Result;
use crate::http::ruma::{Ruma, RumaResponse, RumaRouter};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::federation::discovery::discover_homeserver;

pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma::<discover_homeserver::Request, _, _>(well_known_server)
}

/// `GET /.well-known/matrix/server`: where other servers reach this one.
async fn well_known_server(
    State(state): State<AppState>,
    _request: Ruma<discover_homeserver::Request>,
) -> Result<RumaResponse<discover_homeserver::Response>> {
    let federation = &state.config.federation;
    if !federation.enabled {
        return Err(crate::Error::not_found("This server does not federate"));
    }
    if let Some((_, port)) = federation.listen.first().and_then(|address| crate::config::parse_host_port(address)) {
        let server = format!("{}:{port}", state.server_name.host());
        let server = ruma::OwnedServerName::try_from(server.as_str())
            .map_err(|error| crate::Error::internal(format!("server_name yields no server name: {error}")))?;
        return Ok(discover_homeserver::Response::new(server).into());
    }
    let base = state.config.public_baseurl();
    let (https, rest) = match base.split_once("://") {
        Some((scheme, rest)) => (scheme == "https", rest),
        None => (false, base.as_str()),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let has_port = authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    let server = if has_port { authority.to_owned() } else { format!("{authority}:{}", if https { 443 } else { 80 }) };
    let server = ruma::OwnedServerName::try_from(server.as_str())
        .map_err(|error| crate::Error::internal(format!("public_baseurl yields no server name: {error}")))?;
    Ok(discover_homeserver::Response::new(server).into())
}
