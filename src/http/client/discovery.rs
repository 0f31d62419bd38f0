//! What the server is and can do: `/versions`, `/capabilities`, `/.well-known/matrix/client`.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, Ruma, RumaResponse, RumaRouter};
use crate::state::AppState;
use axum::extract::State;
use axum::{Json, Router};
use ruma::api::client::discovery::{discover_homeserver, get_capabilities, get_supported_versions};
use serde_json::{Value, json};

/// Spec versions whose client-server semantics Hearth follows for everything it serves.
/// Endpoints of later issues (rooms, sync, media…) are added as they land.
const SPEC_VERSIONS: &[&str] = &[
    "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
    "v1.11", "v1.12",
];

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<get_supported_versions::Request, _, _>(versions)
        .ruma_guest::<get_capabilities::v3::Request, _, _>(capabilities)
        .ruma::<discover_homeserver::Request, _, _>(well_known_client)
}

/// Unstable feature flags for what Hearth serves, under the names Synapse advertises them, since
/// clients decide by these flags rather than by spec versions: Element bootstraps cross-signing
/// at first login only when `org.matrix.e2e_cross_signing` is there, and Element X and
/// matrix-rust-sdk's room list need simplified sliding sync (MSC4186).
const UNSTABLE_FEATURES: &[&str] = &[
    // Cross-signing keys (`/keys/device_signing/upload`, `/keys/signatures/upload`).
    "org.matrix.e2e_cross_signing",
    // Private read receipts (`m.read.private`), stable since v1.4.
    "org.matrix.msc2285.stable",
    // Threads (`/threads`, `m.thread` relations), stable since v1.4.
    "org.matrix.msc3440.stable",
    // Threaded read receipts and per-thread unread counts in /sync.
    "org.matrix.msc3771",
    "org.matrix.msc3773",
    // The `room_types` filter of `/publicRooms`.
    "org.matrix.msc3827.stable",
    // Authenticated media (`/_matrix/client/v1/media/...`).
    "org.matrix.msc3916.stable",
    // `recurse` on `/relations`.
    "org.matrix.msc3981",
    // Simplified sliding sync.
    "org.matrix.simplified_msc3575",
];

/// `GET /_matrix/client/versions`: the spec versions and unstable features Hearth implements.
async fn versions(
    _request: Ruma<get_supported_versions::Request>,
) -> Result<RumaResponse<get_supported_versions::Response>> {
    let mut response = get_supported_versions::Response::new(SPEC_VERSIONS.iter().map(|v| (*v).to_owned()).collect());
    response.unstable_features = UNSTABLE_FEATURES.iter().map(|feature| ((*feature).to_owned(), true)).collect();
    Ok(response.into())
}

/// `GET /_matrix/client/*/capabilities`:
/// get information about the server's supported feature set and other relevant capabilities
// `m.set_displayname` and `m.set_avatar_url` are deprecated since spec v1.16 in favour of
// `m.profile_fields`, but still defined, and clients of earlier versions read only them.
/// `GET /_matrix/client/v3/capabilities`: what this server lets the user do (room versions, changes).
#[allow(deprecated)]
async fn capabilities(
    State(state): State<AppState>,
    _request: Authed<get_capabilities::v3::Request>,
) -> Result<Json<Value>> {
    let mut capabilities = get_capabilities::v3::Capabilities::new();
    let available = crate::rooms::SUPPORTED_VERSIONS
        .iter()
        .map(|version| (version.clone(), get_capabilities::v3::RoomVersionStability::Stable))
        .collect();
    capabilities.room_versions =
        get_capabilities::v3::RoomVersionsCapability::new(state.default_room_version.clone(), available);
    capabilities.change_password.enabled = true;
    capabilities.set_displayname.enabled = true;
    capabilities.set_avatar_url.enabled = true;
    capabilities.thirdparty_id_changes.enabled = false;
    capabilities.get_login_token.enabled = false;
    // Every profile field may be set (users::profile), the extended ones of v1.16 included.
    capabilities.profile_fields = Some(get_capabilities::v3::ProfileFieldsCapability::new(true));
    // ruma leaves out a capability whose value is the spec's default; clients may assume the
    // default, but the spec lists them and clients and conformance suites read them, so every
    // one the spec defines is stated.
    let stated = [
        ("m.change_password", capabilities.change_password.enabled),
        ("m.set_displayname", capabilities.set_displayname.enabled),
        ("m.set_avatar_url", capabilities.set_avatar_url.enabled),
        ("m.3pid_changes", capabilities.thirdparty_id_changes.enabled),
        ("m.get_login_token", capabilities.get_login_token.enabled),
    ];
    let mut listed = serde_json::to_value(capabilities)
        .map_err(|error| Error::internal(format!("serializing capabilities: {error}")))?;
    if let Some(listed) = listed.as_object_mut() {
        for (name, enabled) in stated {
            listed.entry(name).or_insert_with(|| json!({ "enabled": enabled }));
        }
    }
    Ok(Json(json!({ "capabilities": listed })))
}

/// `GET /.well-known/matrix/client`: where clients find this homeserver (`public_baseurl`).
async fn well_known_client(
    State(state): State<AppState>,
    _request: Ruma<discover_homeserver::Request>,
) -> Result<RumaResponse<discover_homeserver::Response>> {
    let homeserver = discover_homeserver::HomeserverInfo::new(state.config.public_baseurl());
    Ok(discover_homeserver::Response::new(homeserver).into())
}
