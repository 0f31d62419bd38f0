//! This server's public room directory, for other servers (spec: "Public Room Directory").

use crate::error::Result;
use crate::http::federation::auth::Federated;
use crate::http::ruma::{RumaResponse, RumaRouter};
use crate::rooms::directory::{self, PublicRoomsPage, PublicRoomsQuery};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::UInt;
use ruma::api::federation::directory::{get_public_rooms, get_public_rooms_filtered};

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<get_public_rooms::v1::Request, _, _>(public_rooms)
        .ruma::<get_public_rooms_filtered::v1::Request, _, _>(public_rooms_filtered)
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
