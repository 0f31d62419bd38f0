//! Room aliases (`#name:server`): creating, resolving, listing and deleting this server's
//! aliases, and keeping `m.room.canonical_alias` honest — every alias a client newly lists
//! in it must exist and point to the room.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::rooms::build::EventTemplate;
use crate::rooms::directory::is_moderator;
use crate::rooms::pdu::Pdu;
use crate::rooms::send::append;
use crate::store::Store;
use crate::time::now_ms;
use crate::users::{Actor, Session};
use ruma::api::error::ErrorKind;
use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomAliasId, OwnedRoomId, RoomAliasId, RoomId, ServerName, UserId};
use serde_json::{Value, json};

fn room_in_use(alias: &RoomAliasId) -> Error {
    Error::new(ErrorKind::RoomInUse, format!("Room alias {alias} is already taken"))
}

fn bad_alias(alias: &str, why: &str) -> Error {
    Error::new(ErrorKind::BadAlias, format!("The alias {alias} {why}"))
}

fn unknown_alias(alias: &RoomAliasId) -> Error {
    Error::not_found(format!("Room alias {alias} not found"))
}

/// The rules for an alias this server creates, beyond the grammar ruma has checked: it must
/// be on this server, and (as Synapse) its localpart must be non-empty and hold no
/// whitespace. Failures are the spec's "not a valid room alias", `M_INVALID_PARAM`.
fn check_creatable(server_name: &ServerName, alias: &RoomAliasId) -> Result<()> {
    if alias.server_name() != server_name {
        return Err(Error::invalid_param(format!("Room alias {alias} is not on this server ({server_name})")));
    }
    if alias.alias().is_empty() {
        return Err(Error::invalid_param("A room alias needs a name before the ':'"));
    }
    if alias.alias().chars().any(char::is_whitespace) {
        return Err(Error::invalid_param("Room aliases may not contain whitespace"));
    }
    Ok(())
}

/// createRoom's `room_alias_name`: the localpart of an alias on this server.
pub(crate) fn alias_from_name(server_name: &ServerName, name: &str) -> Result<OwnedRoomAliasId> {
    if name.contains(':') {
        // The commonest mistake: passing a whole alias where only its localpart belongs.
        return Err(Error::invalid_param(format!(
            "room_alias_name takes the name only ('tea', not '#tea:{server_name}'); ':' is not allowed"
        )));
    }
    let alias = RoomAliasId::parse(format!("#{name}:{server_name}")).map_err(|error| {
        Error::invalid_param(format!("room_alias_name {name:?} does not make a valid alias: {error}"))
    })?;
    check_creatable(server_name, &alias)?;
    Ok(alias)
}

/// createRoom refuses an alias that is taken before it creates anything (the room's own
/// transaction inserts the alias again, which settles a race).
pub(crate) async fn ensure_free(pool: &Store, alias: &RoomAliasId) -> Result<()> {
    if db::directory::alias(pool, alias.as_str()).await?.is_some() {
        return Err(room_in_use(alias));
    }
    Ok(())
}

/// Stores the alias of a room being created, inside the creation's transaction.
pub(crate) async fn insert_for_new_room(
    conn: &mut sqlx::PgConnection,
    alias: &RoomAliasId,
    room_id: &RoomId,
    creator: &UserId,
) -> Result<()> {
    if !db::directory::insert_alias(&mut *conn, alias.as_str(), room_id.as_str(), creator.as_str(), now_ms()).await? {
        return Err(room_in_use(alias));
    }
    Ok(())
}

/// `PUT /directory/room/{roomAlias}`: a joined member (or a server admin) names a room.
pub(crate) async fn create(
    pool: &Store,
    server_name: &ServerName,
    session: &Session,
    alias: &RoomAliasId,
    room_id: &RoomId,
) -> Result<()> {
    check_creatable(server_name, alias)?;
    if db::rooms::version(pool, room_id.as_str()).await?.is_none() {
        // Synapse's answer; the spec lists no status for it.
        return Err(Error::unknown(format!("Room {room_id} does not exist")));
    }
    if !session.is_admin {
        let membership = db::rooms::membership(pool, room_id.as_str(), session.user_id.as_str()).await?;
        if membership.is_none_or(|m| m.membership != MembershipState::Join) {
            return Err(Error::forbidden("You must be in the room to create an alias for it"));
        }
    }
    let inserted =
        db::directory::insert_alias(pool, alias.as_str(), room_id.as_str(), session.user_id.as_str(), now_ms()).await?;
    if !inserted {
        return Err(Error::Conflict(format!("Room alias {alias} already exists")));
    }
    tracing::info!(%alias, %room_id, user = %session.user_id, "created room alias");
    Ok(())
}

/// The room a local alias points to, if any.
async fn lookup(pool: &Store, alias: &RoomAliasId) -> Result<Option<OwnedRoomId>> {
    let Some(row) = db::directory::alias(pool, alias.as_str()).await? else { return Ok(None) };
    let room_id =
        RoomId::parse(&row.room_id).map_err(|e| Error::internal(format!("stored room id {:?}: {e}", row.room_id)))?;
    Ok(Some(room_id))
}

/// `GET /directory/room/{roomAlias}` and joins by alias: the room an alias names. Other
/// servers' aliases would be asked of them over federation, which is not implemented yet.
pub(crate) async fn resolve(pool: &Store, server_name: &ServerName, alias: &RoomAliasId) -> Result<OwnedRoomId> {
    if alias.server_name() != server_name {
        return Err(Error::not_found(format!(
            "Room alias {alias} is on another server, and federation is not implemented yet"
        )));
    }
    lookup(pool, alias).await?.ok_or_else(|| unknown_alias(alias))
}

/// `DELETE /directory/room/{roomAlias}`. Synapse's rule: the alias's creator, a server
/// admin, or a room member with the power to send `m.room.canonical_alias`. Afterwards the
/// alias is taken out of the room's `m.room.canonical_alias`, as far as the deleter's power
/// allows; the deletion stands either way (the spec's recommendation).
pub(crate) async fn delete(ctx: RoomCtx<'_>, actor: Actor<'_>, alias: &RoomAliasId) -> Result<()> {
    let row = db::directory::alias(ctx.pool, alias.as_str()).await?.ok_or_else(|| unknown_alias(alias))?;
    let room_id =
        RoomId::parse(&row.room_id).map_err(|e| Error::internal(format!("stored room id {:?}: {e}", row.room_id)))?;
    let is_creator = actor.user_id().is_some_and(|user| row.creator == user.as_str());
    let allowed = is_creator || is_moderator(ctx.pool, actor, &room_id).await?;
    if !allowed {
        return Err(Error::forbidden("You don't have permission to delete the alias"));
    }
    if db::directory::delete_alias(ctx.pool, alias.as_str()).await?.is_none() {
        // Someone else deleted it between the checks and now.
        return Err(unknown_alias(alias));
    }
    tracing::info!(%alias, %room_id, actor = actor.describe(), "deleted room alias");
    // An operator is no member: the canonical alias event, if it lists the alias, stays.
    if let Some(user) = actor.user_id()
        && let Err(error) = forget_in_canonical_alias(ctx, user, &room_id, alias).await
    {
        tracing::info!(%alias, %room_id, %error, "could not take the deleted alias out of m.room.canonical_alias");
    }
    Ok(())
}

/// Sends a new `m.room.canonical_alias` without `alias` if the current one lists it.
async fn forget_in_canonical_alias(
    ctx: RoomCtx<'_>,
    user: &UserId,
    room_id: &RoomId,
    alias: &RoomAliasId,
) -> Result<()> {
    let Some(entry) = db::state::current_state_event(ctx.pool, room_id.as_str(), "m.room.canonical_alias", "").await?
    else {
        return Ok(());
    };
    let mut content = Pdu::from_stored(&entry.event_id, &entry.json)?.content_value();
    let Some(object) = content.as_object_mut() else { return Ok(()) };
    let mut changed = false;
    if object.get("alias").and_then(Value::as_str) == Some(alias.as_str()) {
        object.remove("alias");
        changed = true;
    }
    if let Some(Value::Array(alt_aliases)) = object.get_mut("alt_aliases")
        && alt_aliases.iter().any(|entry| entry.as_str() == Some(alias.as_str()))
    {
        alt_aliases.retain(|entry| entry.as_str() != Some(alias.as_str()));
        if alt_aliases.is_empty() {
            object.remove("alt_aliases");
        }
        changed = true;
    }
    if changed {
        append(ctx, room_id, user, EventTemplate::state(StateEventType::RoomCanonicalAlias, "", content), None).await?;
    }
    Ok(())
}

/// `GET /rooms/{roomId}/aliases`: for joined members, anyone if the room is world-readable,
/// and server admins (as Synapse).
pub(crate) async fn local_aliases(pool: &Store, session: &Session, room_id: &RoomId) -> Result<Vec<OwnedRoomAliasId>> {
    let joined = db::rooms::membership(pool, room_id.as_str(), session.user_id.as_str())
        .await?
        .is_some_and(|m| m.membership == MembershipState::Join);
    if !joined && !session.is_admin && !crate::rooms::visibility::world_readable(pool, room_id).await? {
        return Err(Error::forbidden("You are not a member of this room"));
    }
    let aliases = db::directory::aliases_for_room(pool, room_id.as_str()).await?;
    Ok(aliases.into_iter().filter_map(|alias| RoomAliasId::parse(alias).ok()).collect())
}

/// The aliases an `m.room.canonical_alias` content lists: `alias` (if any) and
/// `alt_aliases`, syntax-checked (`M_INVALID_PARAM`, as the spec has it).
fn listed_aliases(content: &Value) -> Result<(Option<OwnedRoomAliasId>, Vec<OwnedRoomAliasId>)> {
    let parse = |value: &Value| -> Result<OwnedRoomAliasId> {
        let text = value.as_str().ok_or_else(|| Error::invalid_param(format!("{value} is not a room alias")))?;
        RoomAliasId::parse(text)
            .map_err(|error| Error::invalid_param(format!("{text:?} is not a valid room alias: {error}")))
    };
    let alias = match content.get("alias") {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse(value)?),
    };
    let alt_aliases = match content.get("alt_aliases") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values.iter().map(parse).collect::<Result<_>>()?,
        Some(_) => return Err(Error::invalid_param("alt_aliases must be a list")),
    };
    Ok((alias, alt_aliases))
}

/// A client sets `m.room.canonical_alias`: every alias it newly lists (not already in the
/// current event, which the spec leaves alone) must be valid and point to this room;
/// otherwise `M_BAD_ALIAS`. Other servers' aliases cannot be checked without federation,
/// so they are refused too.
pub(crate) async fn validate_canonical_alias(
    pool: &Store,
    server_name: &ServerName,
    room_id: &RoomId,
    state_key: &str,
    content: &Value,
) -> Result<()> {
    let (alias, alt_aliases) = listed_aliases(content)?;
    let current =
        match db::state::current_state_event(pool, room_id.as_str(), "m.room.canonical_alias", state_key).await? {
            Some(entry) => Pdu::from_stored(&entry.event_id, &entry.json)?.content_value(),
            None => Value::Null,
        };
    let current_alias = current.get("alias").and_then(Value::as_str);
    let current_alt: Vec<&str> =
        current.get("alt_aliases").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();

    let new_alias = alias.iter().filter(|alias| current_alias != Some(alias.as_str()));
    let new_alt = alt_aliases.iter().filter(|alias| !current_alt.contains(&alias.as_str()));
    for alias in new_alias.chain(new_alt) {
        if alias.server_name() != server_name {
            return Err(bad_alias(
                alias.as_str(),
                "is on another server and cannot be checked (federation is not implemented yet)",
            ));
        }
        if lookup(pool, alias).await?.as_deref() != Some(room_id) {
            return Err(bad_alias(alias.as_str(), "does not point to this room"));
        }
    }
    Ok(())
}

/// createRoom's `initial_state` may hold `m.room.canonical_alias`; the only alias that can
/// point to a room not yet created is its own `room_alias_name`.
pub(crate) fn validate_initial_canonical_alias(content: &Value, own: Option<&RoomAliasId>) -> Result<()> {
    let (alias, alt_aliases) = listed_aliases(content)?;
    for alias in alias.iter().chain(alt_aliases.iter()) {
        if Some(alias.as_ref()) != own {
            return Err(bad_alias(alias.as_str(), "does not point to this room"));
        }
    }
    Ok(())
}

/// The content createRoom sends for its `room_alias_name`.
pub(crate) fn canonical_alias_content(alias: &RoomAliasId) -> Value {
    json!({ "alias": alias })
}
