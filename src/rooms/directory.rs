//! The public room directory: which rooms are published, who may change that, and the
//! listing clients browse (`/publicRooms`), filtered and paginated.

use crate::db;
use crate::db::directory::{PublicRoom, PublicRoomsFilter};
use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use crate::store::Store;
use crate::users::Actor;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ruma::directory::{PublicRoomsChunk, PublicRoomsChunkInit, RoomNetwork, RoomTypeFilter};
use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::events::room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource};
use ruma::room::{JoinRuleKind, RoomType};
use ruma::{OwnedMxcUri, OwnedUserId, RoomAliasId, RoomId, RoomVersionId, ServerName, UInt, UserId};

/// The most rooms one page lists, whatever the client asks for (a `limit` of 0 or none
/// means "no limit" in Synapse; here it means this many, with a `next_batch` if more exist).
pub(crate) const MAX_PAGE: u64 = 500;

/// Whether `user` could send `m.room.canonical_alias` in the room's current state: the
/// power levels' bar for it, with room version 12's creators above every number.
async fn can_send_canonical_alias(pool: &Store, room_id: &RoomId, user: &UserId) -> Result<bool> {
    let internal = |what: &str, error: &dyn std::fmt::Display| Error::internal(format!("{what} of {room_id}: {error}"));
    let version = db::rooms::version(pool, room_id.as_str())
        .await?
        .ok_or_else(|| Error::not_found(format!("Unknown room {room_id}")))?;
    let version = RoomVersionId::try_from(version.as_str()).map_err(|e| internal("room version", &e))?;
    let rules = version.rules().ok_or_else(|| internal("rules", &"unknown room version"))?;
    let create = db::state::current_state_event(pool, room_id.as_str(), "m.room.create", "")
        .await?
        .ok_or_else(|| internal("create event", &"missing"))?;
    let create = Pdu::from_stored(&create.event_id, &create.json)?;
    let mut creators: Vec<OwnedUserId> = vec![create.sender.clone()];
    if rules.authorization.additional_room_creators {
        let content = create.content_value();
        let additional = content["additional_creators"].as_array().into_iter().flatten();
        creators.extend(additional.filter_map(|user| user.as_str().and_then(|user| UserId::parse(user).ok())));
    }
    let source = match db::state::current_state_event(pool, room_id.as_str(), "m.room.power_levels", "").await? {
        Some(entry) => {
            let pdu = Pdu::from_stored(&entry.event_id, &entry.json)?;
            let content: RoomPowerLevelsEventContent =
                serde_json::from_str(pdu.content.get()).map_err(|e| internal("power levels", &e))?;
            RoomPowerLevelsSource::Original(content)
        }
        None => RoomPowerLevelsSource::None,
    };
    let levels = RoomPowerLevels::new(source, &rules.authorization, creators);
    Ok(levels.user_can_send_state(user, StateEventType::RoomCanonicalAlias))
}

/// Synapse's rule for editing a room's directory entry (and for deleting aliases others
/// made): server admins always; otherwise a joined member with the power to send
/// `m.room.canonical_alias` — the room's moderators, and the creators of a v12 room.
pub(crate) async fn is_moderator(pool: &Store, actor: Actor<'_>, room_id: &RoomId) -> Result<bool> {
    let user = match actor.user_id() {
        _ if actor.is_admin() => return Ok(true),
        Some(user) => user,
        None => return Ok(false),
    };
    let membership = db::rooms::membership(pool, room_id.as_str(), user.as_str()).await?;
    if membership.is_none_or(|m| m.membership != MembershipState::Join) {
        return Ok(false);
    }
    can_send_canonical_alias(pool, room_id, user).await
}

/// `GET /directory/list/room/{roomId}`: whether the room is published.
pub(crate) async fn is_published(pool: &Store, room_id: &RoomId) -> Result<bool> {
    db::directory::is_published(pool, room_id.as_str())
        .await?
        .ok_or_else(|| Error::not_found(format!("Unknown room {room_id}")))
}

/// `PUT /directory/list/room/{roomId}`: publishes or unpublishes the room, for its
/// moderators (see [`is_moderator`]).
pub(crate) async fn set_published(pool: &Store, actor: Actor<'_>, room_id: &RoomId, published: bool) -> Result<()> {
    if let Actor::Device(session) = actor
        && session.is_guest
    {
        return Err(Error::forbidden("Guests cannot edit the published room list"));
    }
    is_published(pool, room_id).await?;
    if !is_moderator(pool, actor, room_id).await? {
        return Err(Error::forbidden(
            "Only members with the power to set the room's canonical alias can edit its room directory entry",
        ));
    }
    let mut conn = pool.acquire().await?;
    if !db::directory::set_published(&mut conn, room_id.as_str(), published).await? {
        return Err(Error::not_found(format!("Unknown room {room_id}")));
    }
    tracing::info!(%room_id, actor = actor.describe(), published, "changed room directory visibility");
    Ok(())
}

/// What a client asks of `/publicRooms`.
#[derive(Clone, Debug, Default)]
pub(crate) struct PublicRoomsQuery<'a> {
    /// The server whose directory is wanted; `None` for this one.
    pub server: Option<&'a ServerName>,
    /// `None` or 0: as many as [`MAX_PAGE`].
    pub limit: Option<u64>,
    pub since: Option<&'a str>,
    pub search_term: Option<&'a str>,
    /// Empty: every room type.
    pub room_types: &'a [RoomTypeFilter],
    pub network: RoomNetwork,
}

pub(crate) struct PublicRoomsPage {
    pub chunk: Vec<PublicRoomsChunk>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total_room_count_estimate: u64,
}

/// A position in the directory's order, and which way the page it starts goes. Opaque to
/// clients: base64 of `f|b`, the joined-member count and the room id of the room it is
/// next to.
struct Batch {
    forwards: bool,
    joined_members: i64,
    room_id: String,
}

impl Batch {
    fn token(forwards: bool, room: &PublicRoom) -> String {
        let direction = if forwards { 'f' } else { 'b' };
        URL_SAFE_NO_PAD.encode(format!("{direction}|{}|{}", room.joined_members, room.room_id))
    }

    fn parse(token: &str) -> Result<Batch> {
        let invalid = || Error::invalid_param(format!("Invalid pagination token {token:?}"));
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.splitn(3, '|');
        let forwards = match parts.next() {
            Some("f") => true,
            Some("b") => false,
            _ => return Err(invalid()),
        };
        let joined_members = parts.next().and_then(|n| n.parse::<i64>().ok()).ok_or_else(invalid)?;
        let room_id = parts.next().filter(|id| RoomId::parse(id).is_ok()).ok_or_else(invalid)?.to_owned();
        Ok(Batch { forwards, joined_members, room_id })
    }
}

/// `GET`/`POST /publicRooms`: the published rooms anyone may join or read, most joined
/// members first, with what their current state says about them.
pub(crate) async fn public_rooms(
    pool: &Store,
    our_server: &ServerName,
    query: &PublicRoomsQuery<'_>,
) -> Result<PublicRoomsPage> {
    if let Some(server) = query.server
        && server != our_server
    {
        return Err(Error::not_found(format!(
            "The room directory of {server} cannot be fetched: federation is not implemented yet"
        )));
    }
    if matches!(query.network, RoomNetwork::ThirdParty(_)) {
        // Third-party networks are bridged by application services, none of which has
        // published a room here.
        return Ok(PublicRoomsPage {
            chunk: Vec::new(),
            next_batch: None,
            prev_batch: None,
            total_room_count_estimate: 0,
        });
    }
    let limit = match query.limit {
        None | Some(0) => MAX_PAGE,
        Some(limit) => limit.min(MAX_PAGE),
    } as usize;
    let batch = query.since.map(Batch::parse).transpose()?;
    let type_names: Vec<String> = query.room_types.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect();
    let untyped = query.room_types.iter().any(|t| t.as_str().is_none());
    let filter = PublicRoomsFilter {
        search_term: query.search_term.filter(|term| !term.trim().is_empty()),
        room_types: (!query.room_types.is_empty()).then_some((type_names.as_slice(), untyped)),
    };

    let forwards = batch.as_ref().is_none_or(|batch| batch.forwards);
    let bound = batch.as_ref().map(|batch| (batch.joined_members, batch.room_id.as_str()));
    // One more than wanted tells whether another page follows.
    let mut rooms = db::directory::public_rooms(pool, &filter, bound, forwards, limit as i64 + 1).await?;
    let more = rooms.len() > limit;
    if more {
        if forwards {
            rooms.truncate(limit);
        } else {
            // A backwards page is the `limit` rooms just before the bound.
            rooms.drain(..rooms.len() - limit);
        }
    }

    let (mut next_batch, mut prev_batch) = (None, None);
    if let (Some(first), Some(last)) = (rooms.first(), rooms.last()) {
        // Coming from a token means there are rooms on the side we came from.
        let (more_after, more_before) = if forwards { (more, batch.is_some()) } else { (batch.is_some(), more) };
        if more_after {
            next_batch = Some(Batch::token(true, last));
        }
        if more_before {
            prev_batch = Some(Batch::token(false, first));
        }
    }
    let total = db::directory::count_public_rooms(pool, &filter).await?;
    let chunk = rooms.into_iter().map(chunk).collect::<Result<Vec<_>>>()?;
    Ok(PublicRoomsPage { chunk, next_batch, prev_batch, total_room_count_estimate: u64::try_from(total).unwrap_or(0) })
}

fn chunk(room: PublicRoom) -> Result<PublicRoomsChunk> {
    let room_id =
        RoomId::parse(&room.room_id).map_err(|e| Error::internal(format!("stored room id {:?}: {e}", room.room_id)))?;
    let mut chunk = PublicRoomsChunk::from(PublicRoomsChunkInit {
        num_joined_members: UInt::try_from(room.joined_members).unwrap_or_default(),
        room_id,
        world_readable: room.history_visibility.as_deref() == Some("world_readable"),
        guest_can_join: room.guest_access.as_deref() == Some("can_join"),
    });
    chunk.name = room.name.filter(|name| !name.is_empty());
    chunk.topic = room.topic.filter(|topic| !topic.is_empty());
    // State content is whatever its sender wrote: an alias that does not parse is left out.
    chunk.canonical_alias = room.canonical_alias.and_then(|alias| RoomAliasId::parse(alias).ok());
    chunk.avatar_url = room.avatar_url.filter(|url| !url.is_empty()).map(OwnedMxcUri::from);
    chunk.join_rule = room.join_rule.as_deref().map(JoinRuleKind::from).unwrap_or_default();
    chunk.room_type = room.room_type.as_deref().map(RoomType::from);
    Ok(chunk)
}
