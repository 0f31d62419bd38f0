//! This server's public room directory and its spaces, for other servers (spec: "Public Room
//! Directory", "Spaces").

use crate::error::{Error, Result};
use crate::http::federation::auth::Federated;
use crate::http::ruma::{RumaResponse, RumaRouter};
use crate::rooms::directory::{self, PublicRoomsPage, PublicRoomsQuery};
use crate::rooms::hierarchy_served;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::UInt;
use ruma::api::federation::directory::{get_public_rooms, get_public_rooms_filtered};
use ruma::api::federation::space::get_hierarchy;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<get_public_rooms::v1::Request, _, _>(public_rooms)
        .ruma::<get_public_rooms_filtered::v1::Request, _, _>(public_rooms_filtered)
        .ruma::<get_hierarchy::v1::Request, _, _>(space_hierarchy)
}

/// `GET /_matrix/federation/v1/hierarchy/{roomId}`.
async fn space_hierarchy(
    State(state): State<AppState>,
    request: Federated<get_hierarchy::v1::Request>,
) -> Result<RumaResponse<get_hierarchy::v1::Response>> {
    let body = &request.body;
    let space =
        hierarchy_served::space_for_server(&state.pool, &request.origin, &body.room_id, body.suggested_only).await?;
    let schema = |error: serde_json::Error| Error::internal(format!("a room summary does not fit the spec: {error}"));
    let mut response = get_hierarchy::v1::Response::new(serde_json::from_value(space.room).map_err(schema)?);
    response.children = space
        .children
        .into_iter()
        .map(serde_json::from_value)
        .collect::<std::result::Result<_, _>>()
        .map_err(schema)?;
    response.inaccessible_children = space.inaccessible_children;
    Ok(response.into())
}

/// `GET /_matrix/federation/v1/publicRooms`.
async fn public_rooms(
    State(state): State<AppState>,
    request: Federated<get_public_rooms::v1::Request>,
) -> Result<RumaResponse<get_public_rooms::v1::Response>> {
    let body = &request.body;
    let query = PublicRoomsQuery {
        limit: body.limit.map(u64::from),
        since: body.since.as_deref(),
        network: body.room_network.clone(),
        ..Default::default()
    };
    let page = directory::public_rooms(&state.pool, &state.server_name, &query).await?;
    let mut response = get_public_rooms::v1::Response::new();
    (response.chunk, response.next_batch, response.prev_batch, response.total_room_count_estimate) = parts(page);
    Ok(response.into())
}

/// `POST /_matrix/federation/v1/publicRooms`.
async fn public_rooms_filtered(
    State(state): State<AppState>,
    request: Federated<get_public_rooms_filtered::v1::Request>,
) -> Result<RumaResponse<get_public_rooms_filtered::v1::Response>> {
    let body = &request.body;
    let query = PublicRoomsQuery {
        server: None,
        limit: body.limit.map(u64::from),
        since: body.since.as_deref(),
        search_term: body.filter.generic_search_term.as_deref(),
        room_types: &body.filter.room_types,
        network: body.room_network.clone(),
    };
    let page = directory::public_rooms(&state.pool, &state.server_name, &query).await?;
    let mut response = get_public_rooms_filtered::v1::Response::new();
    (response.chunk, response.next_batch, response.prev_batch, response.total_room_count_estimate) = parts(page);
    Ok(response.into())
}

type PageParts = (Vec<ruma::directory::PublicRoomsChunk>, Option<String>, Option<String>, Option<UInt>);

fn parts(page: PublicRoomsPage) -> PageParts {
    let estimate = UInt::try_from(page.total_room_count_estimate).unwrap_or(UInt::MAX);
    (page.chunk, page.next_batch, page.prev_batch, Some(estimate))
}
