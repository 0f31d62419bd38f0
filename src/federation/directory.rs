//! Another server's public room directory, asked for by a local client (`/publicRooms?server=`).

use super::client::{FederationClient, FederationError};
use crate::error::Result;
use crate::rooms::directory::{PublicRoomsPage, PublicRoomsQuery};
use ruma::api::federation::directory::get_public_rooms_filtered::v1 as public_rooms;
use ruma::directory::Filter;
use ruma::{ServerName, UInt};

/// The page of `server`'s directory that `query` asks for, fetched with a signed request.
pub async fn remote_public_rooms(
    client: &FederationClient,
    server: &ServerName,
    query: &PublicRoomsQuery<'_>,
) -> Result<PublicRoomsPage> {
    let mut request = public_rooms::Request::new();
    request.limit = query.limit.map(UInt::new_saturating);
    request.since = query.since.map(str::to_owned);
    let mut filter = Filter::new();
    filter.generic_search_term = query.search_term.map(str::to_owned);
    filter.room_types = query.room_types.to_vec();
    request.filter = filter;
    request.room_network = query.network.clone();
    let response = client.send(server, request).await.map_err(|error| match error {
        // The other server's own refusals keep their meaning; one that cannot be reached is a
        // bad gateway (502), not the client's mistake.
        FederationError::Remote { .. } => crate::Error::from(error),
        other => crate::Error::bad_gateway(format!("The room directory of {server} cannot be fetched: {other}")),
    })?;
    Ok(PublicRoomsPage {
        total_room_count_estimate: response.total_room_count_estimate.map_or(response.chunk.len() as u64, u64::from),
        chunk: response.chunk,
        next_batch: response.next_batch,
        prev_batch: response.prev_batch,
    })
}
