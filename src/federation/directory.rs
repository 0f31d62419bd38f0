//! Other servers' directories, asked for by local clients: a server's public rooms
//! (`/publicRooms?server=`) and the parts of a space that live on other servers (`/hierarchy`).

use super::client::{FederationClient, FederationError};
use crate::error::Result;
use crate::rooms::directory::{PublicRoomsPage, PublicRoomsQuery};
use crate::rooms::hierarchy::{RemoteRooms, RemoteSpace};
use ruma::api::federation::directory::get_public_rooms_filtered::v1 as public_rooms;
use ruma::api::federation::space::get_hierarchy::v1 as space_hierarchy;
use ruma::directory::Filter;
use ruma::{OwnedServerName, RoomId, ServerName, UInt};

/// The page of `server`'s directory that `query` asks for, fetched with a signed request.
pub(crate) async fn remote_public_rooms(
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

/// Asks a room's resident servers about a room of a space this server is not in.
pub(crate) struct RemoteSpaces<'a> {
    pub client: &'a FederationClient,
    /// This server, never asked: it would only answer what it has already told.
    pub own_server: &'a ServerName,
}

impl RemoteRooms for RemoteSpaces<'_> {
    /// The first of `via` that describes the room; one that fails or answers about another
    /// room is passed over (a space's `via` may name servers that have left).
    async fn space(&self, room_id: &RoomId, via: &[OwnedServerName], suggested_only: bool) -> Option<RemoteSpace> {
        for server in via.iter().filter(|server| *server != self.own_server) {
            let mut request = space_hierarchy::Request::new(room_id.to_owned());
            request.suggested_only = suggested_only;
            let response = match self.client.send(server, request).await {
                Ok(response) => response,
                Err(error) => {
                    tracing::debug!(%room_id, %server, %error, "a space's room could not be fetched");
                    continue;
                }
            };
            if response.room.summary.room_id != room_id {
                continue;
            }
            let (Ok(room), Ok(children)) =
                (serde_json::to_value(&response.room), serde_json::to_value(&response.children))
            else {
                continue;
            };
            let children = match children {
                serde_json::Value::Array(children) => children,
                _ => Vec::new(),
            };
            return Some(RemoteSpace { room, children });
        }
        None
    }
}
