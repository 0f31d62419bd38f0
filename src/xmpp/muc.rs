//! Group chat (XEP-0045): a Matrix room is a MUC on the conference domain. Joining (presence
//! to `room@conference/nick`) joins the Matrix room and sets the user's display name there to
//! the nick; the client then gets the occupants (joined members by display name), its own
//! presence (status 110), the recent history and the subject (the topic). A groupchat message
//! is an `m.room.message`, a subject change an `m.room.topic`, and leaving leaves the room.
//! What happens in the room afterwards reaches the client from `delivery` (see `muc_live`).

use crate::rooms::build::EventTemplate;
use crate::rooms::read::HistoryRequest;
use crate::state::AppState;
use crate::xmpp::chat::{bounce, refusal};
use crate::xmpp::muc_live::{self, Occupant, Room};
use crate::xmpp::occupancy::JoinedRoom;
use crate::xmpp::session::Session;
use crate::xmpp::stream::StreamError;
use minidom::Element;
use ruma::events::StateEventType;
use ruma::{OwnedRoomId, UserId};
use serde_json::{Value, json};
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

const NS_MUC: &str = "http://jabber.org/protocol/muc";
/// History sent on join when the client does not say (`<history maxstanzas/>`).
const DEFAULT_HISTORY: usize = 20;
/// The most history a join gets; more is MAM's to page through.
const MAX_HISTORY: usize = 100;

/// Presence to a room: joining (available) or leaving (unavailable).
pub(super) async fn presence_from_client(
    state: &AppState,
    session: &Session,
    presence: Presence,
) -> Result<Vec<Element>, StreamError> {
    let Some(to) = presence.to.clone() else { return Ok(vec![]) };
    let room_jid = to.to_bare();
    match presence.type_ {
        PresenceType::None => {
            // Presence updates to a room already joined (status changes) have no Matrix meaning.
            if session.occupancy.by_jid(&room_jid).is_some() {
                return Ok(vec![]);
            }
            let Some(nick) = to.resource().map(|nick| nick.as_str().to_owned()) else {
                return Ok(vec![presence_error(&to, ErrorType::Modify, DefinedCondition::JidMalformed)]);
            };
            let history = requested_history(&presence);
            match join(state, session, room_jid, &nick, history).await {
                Ok(stanzas) => Ok(stanzas),
                Err(crate::Error::Matrix { kind, message }) => {
                    tracing::debug!(?kind, %message, "an XMPP room join was refused");
                    let condition = match kind {
                        ruma::api::error::ErrorKind::NotFound => DefinedCondition::ItemNotFound,
                        _ => DefinedCondition::Forbidden,
                    };
                    Ok(vec![presence_error(&to, ErrorType::Auth, condition)])
                }
                Err(error) => Err(StreamError::internal(error)),
            }
        }
        PresenceType::Unavailable => leave(state, session, &room_jid).await.map_err(StreamError::internal),
        _ => Ok(vec![]),
    }
}

/// `<x xmlns='…muc'><history maxstanzas='N'/></x>` in the join presence.
fn requested_history(presence: &Presence) -> usize {
    let muc = presence.payloads.iter().find(|payload| payload.is("x", NS_MUC));
    let history = muc.and_then(|muc| muc.get_child("history", NS_MUC));
    let max = history.and_then(|history| history.attr("maxstanzas")?.parse::<usize>().ok());
    max.unwrap_or(DEFAULT_HISTORY).min(MAX_HISTORY)
}

fn presence_error(from: &Jid, type_: ErrorType, condition: DefinedCondition) -> Element {
    let mut error = Presence::error().with_from(from.clone());
    error.payloads.push(StanzaError::new(type_, condition, "en", "").into());
    error.into()
}

async fn join(
    state: &AppState,
    session: &Session,
    room_jid: BareJid,
    nick: &str,
    history: usize,
) -> crate::Result<Vec<Element>> {
    let room_id = crate::xmpp::address::room_of(state, &room_jid).await?;
    let user = &session.matrix;
    crate::rooms::membership::join(state.rooms(), &room_id, user, None).await?;
    set_nick(state, &user.user_id, &room_id, nick).await?;
    // Everything up to here is told by the join's own stanzas; live delivery goes on after it.
    let since = state.streams.position_bounds(&state.pool).await?.readable;
    let room = Room::read(state, user, &room_jid, &room_id).await?;
    let to = &session.jid;
    let mut stanzas = Vec::new();
    for occupant in room.occupants.values().filter(|occupant| occupant.user_id != user.user_id) {
        stanzas.push(muc_live::occupant_presence(&room, occupant, to, true, false));
    }
    let own = Occupant { user_id: user.user_id.clone(), nick: nick.to_owned() };
    stanzas.push(muc_live::occupant_presence(&room, &own, to, true, true));
    stanzas.extend(history_messages(state, session, &room, since, history).await?);
    let topic = crate::rooms::read::state_event(&state.pool, &user.user_id, &room_id, "m.room.topic", "").await;
    let topic = topic.ok().and_then(|content| content["topic"].as_str().map(str::to_owned)).unwrap_or_default();
    stanzas.push(muc_live::subject_message(&room_jid, &topic, to));
    let nicks = room.occupants.into_values().map(|occupant| (occupant.user_id.to_string(), occupant.nick)).collect();
    session.occupancy.insert(JoinedRoom { room_id, jid: room_jid, nick: nick.to_owned(), since, nicks });
    Ok(stanzas)
}

/// The nick is the user's display name in the room: a different one is set on the member
/// event, as Matrix clients set a per-room name.
async fn set_nick(state: &AppState, user: &UserId, room_id: &OwnedRoomId, nick: &str) -> crate::Result<()> {
    let mut member =
        crate::rooms::read::state_event(&state.pool, user, room_id, "m.room.member", user.as_str()).await?;
    if member["displayname"].as_str() == Some(nick) {
        return Ok(());
    }
    member["displayname"] = json!(nick);
    let member_type = StateEventType::RoomMember;
    crate::rooms::state_event::send_state_event(state.rooms(), room_id, user, &member_type, user.as_str(), member)
        .await?;
    Ok(())
}

/// The last `limit` messages up to `upto`, oldest first, marked as delayed (XEP-0203).
async fn history_messages(
    state: &AppState,
    session: &Session,
    room: &Room,
    upto: i64,
    limit: usize,
) -> crate::Result<Vec<Element>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let filter = crate::xmpp::muc_live::messages_only();
    let from = crate::rooms::pagination::page_token(upto);
    let request = HistoryRequest { from: Some(&from), to: None, backwards: true, limit, filter: &filter };
    let page = crate::rooms::read::messages(&state.pool, &session.matrix.user_id, &room.room_id, request).await?;
    let events: Vec<Value> = page.chunk.into_iter().rev().collect();
    let ids = event_ids(&events);
    let client_ids = crate::xmpp::markers::client_ids(state, &session.matrix, &ids).await?;
    Ok(events.iter().filter_map(|event| muc_live::history_message(room, event, &client_ids, &session.jid)).collect())
}

pub(super) fn event_ids(events: &[Value]) -> Vec<String> {
    events.iter().filter_map(|event| event["event_id"].as_str().map(str::to_owned)).collect()
}

/// Leaving the room on XMPP leaves the Matrix room; the client hears its own departure.
async fn leave(state: &AppState, session: &Session, room_jid: &BareJid) -> crate::Result<Vec<Element>> {
    let Some(room) = session.occupancy.by_jid(room_jid) else { return Ok(vec![]) };
    session.occupancy.remove(&room.room_id);
    crate::rooms::membership::leave(state.rooms(), &room.room_id, &session.matrix.user_id, None).await?;
    Ok(vec![muc_live::own_departure(&room, &session.jid)])
}

/// A message to a room: a groupchat message (or subject change) in a room the resource is in.
pub(super) async fn message_from_client(
    state: &AppState,
    session: &Session,
    message: Message,
) -> Result<Vec<Element>, StreamError> {
    let Some(room) = message.to.as_ref().and_then(|to| session.occupancy.by_jid(&to.to_bare())) else {
        return Ok(vec![bounce(&message, ErrorType::Cancel, DefinedCondition::NotAcceptable)]);
    };
    if message.type_ != MessageType::Groupchat {
        // Private messages to an occupant would need a DM room of their own: not mapped.
        return Ok(vec![bounce(&message, ErrorType::Cancel, DefinedCondition::FeatureNotImplemented)]);
    }
    let user = &session.matrix;
    let sent = async {
        if let Some((_, body)) = message.get_best_body_cloned(vec![]) {
            let content = crate::xmpp::corrections::content(state, user, &room.room_id, &message, &body).await?;
            let template = EventTemplate::message("m.room.message", content);
            let txn_id = message.id.as_ref().map(|id| id.0.clone());
            let (ctx, limits) = (state.rooms(), &state.rate_limits);
            crate::rooms::send::send_message(ctx, limits, user, &room.room_id, template, txn_id.as_deref()).await?;
        } else if let Some((_, subject)) = message.get_best_subject_cloned(vec![]) {
            let topic = StateEventType::RoomTopic;
            let content = json!({ "topic": subject });
            crate::rooms::state_event::send_state_event(
                state.rooms(),
                &room.room_id,
                &user.user_id,
                &topic,
                "",
                content,
            )
            .await?;
        }
        Ok(())
    };
    // Success is answered by the reflection that live delivery sends every occupant.
    Ok(sent.await.err().map(|error| refusal(&message, error)).into_iter().collect())
}
