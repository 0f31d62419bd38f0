//! Queries between servers (server-server API, "Querying for information"): room aliases
//! (`/query/directory`) and profiles (`/query/profile`), both ways — answered for other servers
//! from what this server holds, and asked of the server an alias or user belongs to.

use crate::db;
use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::federation::client::FederationError;
use crate::store::Store;
use ruma::api::federation::query::{get_profile_information, get_room_information};
use ruma::{OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, ServerName, UserId};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Servers one alias answer names at most: enough to find a resident server to join through.
const MAX_SERVERS: usize = 20;

/// The room an alias of this server names, and servers in it (this server first).
pub(crate) async fn local_alias(
    pool: &Store,
    server_name: &ServerName,
    alias: &RoomAliasId,
) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
    if alias.server_name() != server_name {
        return Err(Error::not_found(format!("Room alias {alias} is not on this server")));
    }
    let row = db::directory::alias(pool, alias.as_str())
        .await?
        .ok_or_else(|| Error::not_found(format!("Room alias {alias} not found")))?;
    let room_id =
        RoomId::parse(&row.room_id).map_err(|e| Error::internal(format!("stored room id {:?}: {e}", row.room_id)))?;
    let servers = servers_in_room(pool, server_name, &room_id).await?;
    Ok((room_id, servers))
}

/// `first` (this server, which answers) and the servers of the room's joined members — and,
/// while the room's state is partial, the servers the resident named as in it.
pub(crate) async fn servers_in_room(
    pool: &Store,
    first: &ServerName,
    room_id: &RoomId,
) -> Result<Vec<OwnedServerName>> {
    let mut others: BTreeSet<OwnedServerName> = db::rooms::joined_members(pool, room_id.as_str())
        .await?
        .iter()
        .filter_map(|member| UserId::parse(member.as_str()).ok())
        .map(|member| member.server_name().to_owned())
        .collect();
    if let Some(partial) = db::partial_state::get(pool, room_id.as_str()).await? {
        others.extend(
            partial.servers_in_room.iter().filter_map(|server| OwnedServerName::try_from(server.as_str()).ok()),
        );
    }
    let mut servers = vec![first.to_owned()];
    servers.extend(others.into_iter().filter(|server| server != first));
    servers.truncate(MAX_SERVERS);
    Ok(servers)
}

/// Resolves any alias: this server's from its table, another's by asking that server.
pub(crate) async fn resolve_alias(ctx: FedCtx<'_>, alias: &RoomAliasId) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
    if alias.server_name() == ctx.rooms.server_name {
        return local_alias(ctx.rooms.pool, ctx.rooms.server_name, alias).await;
    }
    let request = get_room_information::v1::Request::new(alias.to_owned());
    // What the alias's server answers keeps its meaning (its 404 is the client's); a server
    // that cannot be reached, or fails, is a bad gateway (502, as Synapse answers).
    let response = ctx.client.send(alias.server_name(), request).await.map_err(|error| match error {
        FederationError::Remote { .. } => Error::from(error),
        unreachable => Error::bad_gateway(format!("Room alias {alias} could not be resolved: {unreachable}")),
    })?;
    let mut servers = response.servers;
    // The alias's server may leave itself out; it knows the room, so it can be asked too.
    if !servers.iter().any(|server| server == alias.server_name()) {
        servers.push(alias.server_name().to_owned());
    }
    Ok((response.room_id, servers))
}

/// A local user's profile as another server may see it: all of it, or the one `field`.
pub(crate) async fn local_profile(
    pool: &Store,
    server_name: &ServerName,
    user: &UserId,
    field: Option<&str>,
) -> Result<Map<String, Value>> {
    if user.server_name() != server_name {
        return Err(Error::not_found(format!("{user} is not a user of this server")));
    }
    let mut profile = crate::users::profile::get(pool, user).await?;
    if let Some(field) = field {
        profile.retain(|key, _| key == field);
        if profile.is_empty() {
            return Err(Error::not_found(format!("The profile has no {field:?} field")));
        }
    }
    Ok(profile)
}

/// Any user's profile: a local one from the database, a remote one from their server.
pub(crate) async fn profile(ctx: FedCtx<'_>, user: &UserId) -> Result<Map<String, Value>> {
    if user.server_name() == ctx.rooms.server_name {
        return crate::users::profile::get(ctx.rooms.pool, user).await;
    }
    let request = get_profile_information::v1::Request::new(user.to_owned());
    let response = ctx.client.send(user.server_name(), request).await?;
    Ok(response.iter().map(|(key, value)| (key.clone(), value.clone())).collect())
}
