//! What the server is and can do: `/versions`, `/capabilities`, `/.well-known/matrix/client`.

use crate::error::Result;
use crate::http::ruma::{Authed, Ruma, RumaResponse, RumaRouter};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::client::discovery::{discover_homeserver, get_capabilities, get_supported_versions};

/// Spec versions whose client-server semantics Hearth follows for everything it serves.
/// Endpoints of later issues (rooms, sync, media…) are added as they land; none of the
/// unstable features is claimed.
const SPEC_VERSIONS: &[&str] = &[
    "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
    "v1.11", "v1.12",
];

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<get_supported_versions::Request, _, _>(versions)
        .ruma_guest::<get_capabilities::v3::Request, _, _>(capabilities)
        .ruma::<discover_homeserver::Request, _, _>(well_known_client)
}

async fn versions(
    _request: Ruma<get_supported_versions::Request>,
) -> Result<RumaResponse<get_supported_versions::Response>> {
    let response = get_supported_versions::Response::new(SPEC_VERSIONS.iter().map(|v| (*v).to_owned()).collect());
    Ok(response.into())
}

async fn capabilities(
    State(state): State<AppState>,
    _request: Authed<get_capabilities::v3::Request>,
) -> Result<RumaResponse<get_capabilities::v3::Response>> {
    let mut capabilities = get_capabilities::v3::Capabilities::new();
    let available = crate::rooms::SUPPORTED_VERSIONS
        .iter()
        .map(|version| (version.clone(), get_capabilities::v3::RoomVersionStability::Stable))
        .collect();
    capabilities.room_versions =
        get_capabilities::v3::RoomVersionsCapability::new(state.default_room_version.clone(), available);
    capabilities.change_password.enabled = true;
    capabilities.thirdparty_id_changes.enabled = false;
    capabilities.get_login_token.enabled = false;
    Ok(get_capabilities::v3::Response::new(capabilities).into())
}

async fn well_known_client(
    State(state): State<AppState>,
    _request: Ruma<discover_homeserver::Request>,
) -> Result<RumaResponse<discover_homeserver::Response>> {
    let homeserver = discover_homeserver::HomeserverInfo::new(state.config.public_baseurl());
    Ok(discover_homeserver::Response::new(homeserver).into())
}
