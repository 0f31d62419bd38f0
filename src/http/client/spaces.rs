//! Space hierarchies and room upgrades.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::rooms::hierarchy::{HierarchyRequest, hierarchy};
use crate::rooms::upgrade::upgrade;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::client::room::upgrade_room;
use ruma::api::client::space::{SpaceHierarchyRoomsChunk, get_hierarchy};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<get_hierarchy::v1::Request, _, _>(space_hierarchy)
        .ruma::<upgrade_room::v3::Request, _, _>(upgrade_a_room)
}

async fn space_hierarchy(
    State(state): State<AppState>,
    request: Authed<get_hierarchy::v1::Request>,
) -> Result<RumaResponse<get_hierarchy::v1::Response>> {
    let body = &request.body;
    let to_usize = |n: Option<ruma::UInt>| n.map(|n| usize::try_from(u64::from(n)).unwrap_or(usize::MAX));
    let page = hierarchy(
        &state.pool,
        &request.session.user_id,
        &body.room_id,
        HierarchyRequest {
            from: body.from.as_deref(),
            limit: to_usize(body.limit),
            max_depth: to_usize(body.max_depth),
            suggested_only: body.suggested_only,
        },
    )
    .await?;
    let rooms = page
        .rooms
        .into_iter()
        .map(serde_json::from_value::<SpaceHierarchyRoomsChunk>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Error::internal(format!("a room summary does not fit the spec's schema: {error}")))?;
    let mut response = get_hierarchy::v1::Response::new();
    response.rooms = rooms;
    response.next_batch = page.next_batch;
    Ok(response.into())
}

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
