//! One-to-one chat mapped onto Matrix: the conversation of `alice@domain` with `bob@domain` is
//! the DM room of the two users — the one `m.direct` (alice's account data) lists for bob, as
//! Matrix clients keep it — created on first use as a client's `createRoom` with `is_direct`
//! would. The roster is the user's DM partners; presence is Matrix presence.

use crate::rooms::build::EventTemplate;
use crate::rooms::create::{CreateRoom, Preset};
use crate::state::AppState;
use crate::users::{Actor, Session as MatrixSession};
use crate::xmpp::session::{Session, local_user};
use crate::xmpp::stream::StreamError;
use minidom::Element;
use ruma::presence::PresenceState;
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::presence::{Presence, Show, Type as PresenceType};
use xmpp_parsers::roster::{Ask, Item, Subscription};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

const DIRECT: &str = "m.direct";

/// The user's DM rooms by partner, from `m.direct` (unparsable entries are skipped, as clients do).
pub(super) async fn direct_rooms(
    state: &AppState,
    user: &MatrixSession,
) -> crate::Result<BTreeMap<OwnedUserId, Vec<OwnedRoomId>>> {
    let content =
        match crate::users::account_data::get(&state.pool, Actor::Device(user), &user.user_id, None, DIRECT).await {
            Ok(content) => content,
            Err(crate::Error::Matrix { kind: ruma::api::error::ErrorKind::NotFound, .. }) => return Ok(BTreeMap::new()),
            Err(error) => return Err(error),
        };
    let mut rooms = BTreeMap::new();
    for (partner, list) in content.as_object().into_iter().flatten() {
        let Ok(partner) = UserId::parse(partner) else { continue };
        let list: Vec<OwnedRoomId> =
            list.as_array().into_iter().flatten().filter_map(|room| room.as_str()?.parse().ok()).collect();
        rooms.insert(partner, list);
    }
    Ok(rooms)
}

pub(super) fn jid_of(user: &UserId, domain: &str) -> Option<BareJid> {
    BareJid::new(&format!("{}@{domain}", user.localpart())).ok()
}

/// `<iq type='get'><query xmlns='jabber:iq:roster'/></iq>`: the DM partners, mutually subscribed.
pub(super) async fn roster(state: &AppState, session: &Session) -> crate::Result<Vec<Item>> {
    let domain = session.jid.domain().as_str().to_owned();
    let partners = direct_rooms(state, &session.matrix).await?;
    Ok(partners
        .keys()
        .filter(|partner| partner.server_name() == state.server_name)
        .filter_map(|partner| jid_of(partner, &domain))
        .map(|jid| Item {
            jid,
            name: None,
            subscription: Subscription::Both,
            ask: Ask::None,
            groups: vec![],
            approved: None,
        })
        .collect())
}

/// The DM room with `partner` the user is joined to, if there is one.
pub(super) async fn existing_dm_room(
    state: &AppState,
    user: &MatrixSession,
    partner: &UserId,
) -> crate::Result<Option<OwnedRoomId>> {
    let direct = direct_rooms(state, user).await?;
    let joined = crate::rooms::read::joined_rooms(&state.pool, &user.user_id).await?;
    let mut rooms = direct.get(partner).into_iter().flatten();
    Ok(rooms.find(|room| joined.iter().any(|j| j == room.as_str())).cloned())
}

/// The DM room with `partner` the user is in, or a new one (the partner invited, `m.direct`
/// updated as a client would).
async fn dm_room(state: &AppState, user: &MatrixSession, partner: &UserId) -> crate::Result<OwnedRoomId> {
    if let Some(room) = existing_dm_room(state, user, partner).await? {
        return Ok(room);
    }
    let create = CreateRoom {
        preset: Some(Preset::TrustedPrivateChat),
        invite: vec![partner.to_owned()],
        is_direct: true,
        ..CreateRoom::default()
    };
    let room =
        crate::rooms::create::create_room(state.rooms(), &state.default_room_version, &user.user_id, create).await?;
    remember_direct(state, user, partner, &room).await?;
    Ok(room)
}

/// Adds `room` to the user's `m.direct` under `partner`, as a Matrix client does when it
/// creates or accepts a direct chat.
async fn remember_direct(
    state: &AppState,
    user: &MatrixSession,
    partner: &UserId,
    room: &OwnedRoomId,
) -> crate::Result<()> {
    let mut direct = direct_rooms(state, user).await?;
    let rooms = direct.entry(partner.to_owned()).or_default();
    if rooms.contains(room) {
        return Ok(());
    }
    rooms.push(room.clone());
    let content: serde_json::Map<String, Value> =
        direct.into_iter().map(|(partner, rooms)| (partner.to_string(), json!(rooms))).collect();
    let actor = Actor::Device(user);
    crate::users::account_data::set(
        &state.pool,
        &state.streams,
        actor,
        &user.user_id,
        None,
        DIRECT,
        &Value::Object(content),
    )
    .await
}

/// Accepts the direct-chat invites among `memberships` from local users: XMPP has no invite
/// to a one-to-one chat (a conversation simply begins), so the resource joins on the user's
/// behalf and records the room in `m.direct`, as Element does on accepting one. Other invites
/// wait for a Matrix client (or a MUC join).
pub(super) async fn accept_direct_invites(
    state: &AppState,
    user: &MatrixSession,
    memberships: &[crate::db::sync::MembershipRow],
) -> crate::Result<()> {
    for invite in memberships.iter().filter(|row| row.membership == ruma::events::room::member::MembershipState::Invite)
    {
        let Ok(room) = OwnedRoomId::try_from(invite.room_id.as_str()) else { continue };
        let Some(inviter) = crate::rooms::members::direct_inviter(&state.pool, &user.user_id, &room).await? else {
            continue;
        };
        if inviter.server_name() != state.server_name {
            continue;
        }
        crate::rooms::membership::join(state.rooms(), &room, user, None).await?;
        remember_direct(state, user, &inviter, &room).await?;
        tracing::debug!(%room, %inviter, "an XMPP resource accepted a direct chat");
    }
    Ok(())
}

/// A `<message/>` from the client: one to the conference domain goes to a MUC; a chat
/// message to a local user goes into their DM room, with its chat state as typing; a
/// `displayed` marker becomes a read receipt there.
pub(super) async fn message_from_client(
    state: &AppState,
    session: &Session,
    element: Element,
) -> Result<Vec<Element>, StreamError> {
    let Ok(message) = Message::try_from(element) else { return Ok(vec![]) };
    if message.to.as_ref().is_some_and(|to| to.domain().as_str() == session.muc_domain) {
        return crate::xmpp::muc::message_from_client(state, session, message).await;
    }
    if !matches!(message.type_, MessageType::Chat | MessageType::Normal) {
        return Ok(vec![bounce(&message, ErrorType::Cancel, DefinedCondition::FeatureNotImplemented)]);
    }
    let domain = session.jid.domain().as_str().to_owned();
    let Some(partner) = message.to.as_ref().and_then(|to| local_user(to, &domain, &state.server_name)) else {
        return Ok(vec![bounce(&message, ErrorType::Cancel, DefinedCondition::ServiceUnavailable)]);
    };
    match crate::xmpp::blocking::blocked(state, session).await {
        Ok(blocked) if blocked.contains(partner.as_str()) => {
            // Nothing reaches a blocked contact; only a message is told so (XEP-0191 §3.4).
            let answer =
                (!message.bodies.is_empty()).then(|| bounce_with(&message, crate::xmpp::blocking::blocked_error()));
            return Ok(answer.into_iter().collect());
        }
        Ok(_) => {}
        Err(error) => return Ok(vec![refusal(&message, error)]),
    }
    let Some((_, body)) = message.get_best_body_cloned(vec![]) else {
        return without_body(state, session, &message, &partner).await.map_err(StreamError::internal).map(|()| vec![]);
    };
    let sent = async {
        let room = dm_room(state, &session.matrix, &partner).await?;
        let content = crate::xmpp::corrections::content(state, &session.matrix, &room, &message, &body).await?;
        let template = EventTemplate::message("m.room.message", content);
        // The client's message id makes a resent message one event, as a Matrix txn id does.
        let txn_id = message.id.as_ref().map(|id| id.0.clone());
        let (ctx, limits) = (state.rooms(), &state.rate_limits);
        crate::rooms::send::send_message(ctx, limits, &session.matrix, &room, template, txn_id.as_deref()).await?;
        // A message ends typing (XEP-0085 §5.1: it carries `active`); Matrix clients say so.
        if crate::xmpp::markers::chat_state(&message).is_some() {
            crate::xmpp::markers::typing_from_client(state, &session.matrix, &room, "active").await?;
        }
        Ok(())
    };
    Ok(sent.await.err().map(|error| refusal(&message, error)).into_iter().collect())
}

/// A message without a body: its chat state and `displayed` marker, in the existing DM room
/// (neither is a reason to create one). Refusals are not answered: these are notifications.
async fn without_body(state: &AppState, session: &Session, message: &Message, partner: &UserId) -> crate::Result<()> {
    let Some(room) = existing_dm_room(state, &session.matrix, partner).await? else { return Ok(()) };
    let outcome = async {
        if let Some(chat_state) = crate::xmpp::markers::chat_state(message) {
            crate::xmpp::markers::typing_from_client(state, &session.matrix, &room, chat_state).await?;
        }
        if let Some(id) = crate::xmpp::markers::displayed(message) {
            crate::xmpp::markers::displayed_from_client(state, &session.matrix, &room, id).await?;
        }
        Ok(())
    };
    match outcome.await {
        Err(crate::Error::Matrix { kind, message: why }) => {
            tracing::debug!(?kind, %why, "an XMPP chat state or marker was refused");
            Ok(())
        }
        other => other,
    }
}

/// A domain refusal of what a message asked, as the error stanza that answers it.
pub(super) fn refusal(message: &Message, error: crate::Error) -> Element {
    match error {
        crate::Error::Matrix { kind: ruma::api::error::ErrorKind::LimitExceeded(_), .. } => {
            bounce(message, ErrorType::Wait, DefinedCondition::ResourceConstraint)
        }
        crate::Error::Matrix { kind, message: why } => {
            tracing::debug!(?kind, %why, "an XMPP message was refused");
            bounce(message, ErrorType::Cancel, DefinedCondition::Forbidden)
        }
        error => {
            tracing::error!(%error, "sending an XMPP message failed");
            bounce(message, ErrorType::Wait, DefinedCondition::InternalServerError)
        }
    }
}

/// The message back to its sender as an error (RFC 6120 §8.3).
pub(super) fn bounce(message: &Message, type_: ErrorType, condition: DefinedCondition) -> Element {
    bounce_with(message, StanzaError::new(type_, condition, "en", ""))
}

/// The message back to its sender with `error`.
pub(super) fn bounce_with(message: &Message, error: StanzaError) -> Element {
    let mut answer = Message::error(None::<Jid>);
    answer.from = message.to.clone();
    answer.id = message.id.clone();
    answer.payloads.push(error.into());
    answer.into()
}

/// A `<presence/>` from the client: its own availability becomes Matrix presence; presence
/// aimed at a contact (subscriptions, probes) is answered by the roster's fixed subscriptions.
pub(super) async fn presence_from_client(
    state: &AppState,
    session: &Session,
    element: Element,
) -> Result<Vec<Element>, StreamError> {
    let Ok(presence) = Presence::try_from(element) else { return Ok(vec![]) };
    if presence.to.as_ref().is_some_and(|to| to.domain().as_str() == session.muc_domain) {
        return crate::xmpp::muc::presence_from_client(state, session, presence).await;
    }
    if presence.to.is_some() {
        return Ok(vec![]);
    }
    let matrix = match presence.type_ {
        PresenceType::None => Some(match presence.show {
            None | Some(Show::Chat) => PresenceState::Online,
            Some(Show::Away | Show::Xa | Show::Dnd) => PresenceState::Unavailable,
        }),
        PresenceType::Unavailable => None,
        _ => return Ok(vec![]),
    };
    let status = presence.statuses.values().next().cloned();
    set_presence(state, &session.matrix, matrix.map(|state| (state, status))).await.map_err(StreamError::internal)?;
    Ok(vec![])
}

/// Sets Matrix presence; `None` is offline.
pub(super) async fn set_presence(
    state: &AppState,
    user: &MatrixSession,
    presence: Option<(PresenceState, Option<String>)>,
) -> crate::Result<()> {
    let (matrix, status) = presence.unwrap_or((PresenceState::Offline, None));
    crate::users::presence::set(&state.pool, &state.streams, user, &user.user_id, &matrix, status.as_deref()).await
}
