//! Room aliases, the public room directory and the user directory.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, Ruma, RumaResponse, RumaRouter};
use crate::rooms::{aliases, directory};
use crate::state::AppState;
use crate::users::Actor;
use crate::users::directory as user_directory;
use axum::Router;
use axum::extract::State;
use ruma::UInt;
use ruma::api::client::alias::{create_alias, delete_alias, get_alias};
use ruma::api::client::directory::{
    get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
};
use ruma::api::client::room::{Visibility, aliases as room_aliases};
use ruma::api::client::user_directory::search_users;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<create_alias::v3::Request, _, _>(create_alias)
        .ruma::<get_alias::v3::Request, _, _>(get_alias)
        .ruma::<delete_alias::v3::Request, _, _>(delete_alias)
        .ruma::<room_aliases::v3::Request, _, _>(local_aliases)
        .ruma::<get_room_visibility::v3::Request, _, _>(get_visibility)
        .ruma::<set_room_visibility::v3::Request, _, _>(set_visibility)
        .ruma::<get_public_rooms::v3::Request, _, _>(public_rooms)
        .ruma_guest::<get_public_rooms_filtered::v3::Request, _, _>(public_rooms_filtered)
        .ruma::<search_users::v3::Request, _, _>(search_users)
}

/// `PUT /_matrix/client/*/directory/room/{roomAlias}`: add an alias to a room.
async fn create_alias(
    State(state): State<AppState>,
    request: Authed<create_alias::v3::Request>,
) -> Result<RumaResponse<create_alias::v3::Response>> {
    let body = &request.body;
    aliases::create(&state.pool, &state.server_name, &request.session, &body.room_alias, &body.room_id).await?;
    Ok(create_alias::v3::Response::new().into())
}

/// `GET /_matrix/client/*/directory/room/{roomAlias}`: resolve a room alias to a room ID.
async fn get_alias(
    State(state): State<AppState>,
    request: Ruma<get_alias::v3::Request>,
) -> Result<RumaResponse<get_alias::v3::Response>> {
    // This server's aliases from its table, other servers' by asking them.
    let (room_id, servers) = crate::federation::query::resolve_alias(state.fed(), &request.body.room_alias).await?;
    Ok(get_alias::v3::Response::new(room_id, servers).into())
}

/// `DELETE /_matrix/client/*/directory/room/{roomAlias}`: remove an alias from a room.
async fn delete_alias(
    State(state): State<AppState>,
    request: Authed<delete_alias::v3::Request>,
) -> Result<RumaResponse<delete_alias::v3::Response>> {
    aliases::delete(state.rooms(), Actor::Device(&request.session), &request.body.room_alias).await?;
    Ok(delete_alias::v3::Response::new().into())
}

/// `GET /_matrix/client/*/rooms/{roomId}/aliases`:
/// get a list of aliases maintained by the local server for the given room.
async fn local_aliases(
    State(state): State<AppState>,
    request: Authed<room_aliases::v3::Request>,
) -> Result<RumaResponse<room_aliases::v3::Response>> {
    let aliases = aliases::local_aliases(&state.pool, &request.session, &request.body.room_id).await?;
    Ok(room_aliases::v3::Response::new(aliases).into())
}

/// `GET /_matrix/client/*/directory/list/room/{roomId}`: get the visibility of a public room on a directory.
async fn get_visibility(
    State(state): State<AppState>,
    request: Ruma<get_room_visibility::v3::Request>,
) -> Result<RumaResponse<get_room_visibility::v3::Response>> {
    let published = directory::is_published(&state.pool, &request.body.room_id).await?;
    let visibility = if published { Visibility::Public } else { Visibility::Private };
    Ok(get_room_visibility::v3::Response::new(visibility).into())
}

/// `PUT /_matrix/client/*/directory/list/room/{roomId}`: set the visibility of a public room on a directory.
async fn set_visibility(
    State(state): State<AppState>,
    request: Authed<set_room_visibility::v3::Request>,
) -> Result<RumaResponse<set_room_visibility::v3::Response>> {
    let body = &request.body;
    let published = match body.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        _ => return Err(Error::invalid_param("visibility must be \"public\" or \"private\"")),
    };
    directory::set_published(&state.pool, Actor::Device(&request.session), &body.room_id, published).await?;
    Ok(set_room_visibility::v3::Response::new().into())
}

fn limit(limit: Option<UInt>) -> Option<u64> {
    limit.map(u64::from)
}

/// `GET /_matrix/client/*/publicRooms`: get the list of rooms in this homeserver's public directory.
async fn public_rooms(
    State(state): State<AppState>,
    request: Ruma<get_public_rooms::v3::Request>,
) -> Result<RumaResponse<get_public_rooms::v3::Response>> {
    let body = &request.body;
    let query = directory::PublicRoomsQuery {
        server: body.server.as_deref(),
        limit: limit(body.limit),
        since: body.since.as_deref(),
        ..Default::default()
    };
    let page = public_rooms_anywhere(&state, &query).await?;
    let mut response = get_public_rooms::v3::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = Some(UInt::try_from(page.total_room_count_estimate).unwrap_or(UInt::MAX));
    Ok(response.into())
}

/// Our directory, or (`server=` another server) that server's, asked for over federation.
async fn public_rooms_anywhere(
    state: &AppState,
    query: &directory::PublicRoomsQuery<'_>,
) -> Result<directory::PublicRoomsPage> {
    match query.server {
        Some(server) if server != state.server_name && state.config.federation.enabled => {
            crate::federation::directory::remote_public_rooms(&state.federation, server, query).await
        }
        _ => directory::public_rooms(&state.pool, &state.server_name, query).await,
    }
}

/// Synapse's default page size for the filtered listing when the client names none.
const DEFAULT_FILTERED_LIMIT: u64 = 100;

/// `POST /_matrix/client/*/publicRooms`: get the list of rooms in this homeserver's public directory.
async fn public_rooms_filtered(
    State(state): State<AppState>,
    request: Authed<get_public_rooms_filtered::v3::Request>,
) -> Result<RumaResponse<get_public_rooms_filtered::v3::Response>> {
    let body = &request.body;
    let query = directory::PublicRoomsQuery {
        server: body.server.as_deref(),
        limit: Some(limit(body.limit).unwrap_or(DEFAULT_FILTERED_LIMIT)),
        since: body.since.as_deref(),
        search_term: body.filter.generic_search_term.as_deref(),
        room_types: &body.filter.room_types,
        network: body.room_network.clone(),
    };
    let page = public_rooms_anywhere(&state, &query).await?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = Some(UInt::try_from(page.total_room_count_estimate).unwrap_or(UInt::MAX));
    Ok(response.into())
}

/// `POST /_matrix/client/*/user_directory/search`: performs a search for users.
async fn search_users(
    State(state): State<AppState>,
    request: Authed<search_users::v3::Request>,
) -> Result<RumaResponse<search_users::v3::Response>> {
    let body = &request.body;
    let found =
        user_directory::search(&state.pool, &request.session.user_id, &body.search_term, u64::from(body.limit)).await?;
    Ok(search_users::v3::Response::new(found.results, found.limited).into())
}
