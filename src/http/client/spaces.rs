//! Space hierarchies and room upgrades.

use crate::error::Result;
use crate::federation::directory::RemoteSpaces;
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::rooms::hierarchy::{HierarchyRequest, LocalOnly, hierarchy};
use crate::rooms::upgrade::upgrade;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::client::room::upgrade_room;
use ruma::api::client::space::{SpaceHierarchyRoomsChunk, get_hierarchy};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<get_hierarchy::v1::Request, _, _>(space_hierarchy)
        .ruma::<upgrade_room::v3::Request, _, _>(upgrade_a_room)
}

/// `GET /_matrix/client/*/rooms/{roomId}/hierarchy`:
/// paginates over the space tree in a depth-first manner to locate child rooms of a given space.
async fn space_hierarchy(
    State(state): State<AppState>,
    request: Authed<get_hierarchy::v1::Request>,
) -> Result<RumaResponse<get_hierarchy::v1::Response>> {
    let body = &request.body;
    // Rooms of the space on other servers are asked of those servers, if this one federates.
    let remote = RemoteSpaces { client: &state.federation, own_server: &state.server_name };
    let page = if state.config.federation.enabled {
        hierarchy(&state.pool, &remote, &request.session.user_id, &body.room_id, hierarchy_request(body)).await?
    } else {
        hierarchy(&state.pool, &LocalOnly, &request.session.user_id, &body.room_id, hierarchy_request(body)).await?
    };
    // A summary that does not fit the spec's schema (another server's, say) is left out
    // rather than failing the whole listing.
    let rooms = page
        .rooms
        .into_iter()
        .filter_map(|room| {
            serde_json::from_value::<SpaceHierarchyRoomsChunk>(room)
                .inspect_err(|error| tracing::warn!(%error, "a room summary does not fit the spec's schema"))
                .ok()
        })
        .collect();
    let mut response = get_hierarchy::v1::Response::new();
    response.rooms = rooms;
    response.next_batch = page.next_batch;
    Ok(response.into())
}

fn hierarchy_request(body: &get_hierarchy::v1::Request) -> HierarchyRequest<'_> {
    let to_usize = |n: Option<ruma::UInt>| n.map(|n| usize::try_from(u64::from(n)).unwrap_or(usize::MAX));
    HierarchyRequest {
        from: body.from.as_deref(),
        limit: to_usize(body.limit),
        max_depth: to_usize(body.max_depth),
        suggested_only: body.suggested_only,
    }
}

/// `POST /_matrix/client/*/rooms/{roomId}/upgrade`: upgrades a room to a particular version.
async fn upgrade_a_room(
    State(state): State<AppState>,
    request: Authed<upgrade_room::v3::Request>,
) -> Result<RumaResponse<upgrade_room::v3::Response>> {
    let body = &request.body;
    let replacement =
        upgrade(state.rooms(), &body.room_id, &request.session.user_id, &body.new_version, &body.additional_creators)
            .await?;
    Ok(upgrade_room::v3::Response::new(replacement).into())
}
