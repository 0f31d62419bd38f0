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
pub async fn direct_rooms(
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

pub fn jid_of(user: &UserId, domain: &str) -> Option<BareJid> {
    BareJid::new(&format!("{}@{domain}", user.localpart())).ok()
}

/// `<iq type='get'><query xmlns='jabber:iq:roster'/></iq>`: the DM partners, mutually subscribed.
pub async fn roster(state: &AppState, session: &Session) -> crate::Result<Vec<Item>> {
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

/// The DM room with `partner` the user is in, or a new one (the partner invited, `m.direct`
/// updated as a client would).
async fn dm_room(state: &AppState, user: &MatrixSession, partner: &UserId) -> crate::Result<OwnedRoomId> {
    let mut direct = direct_rooms(state, user).await?;
    let joined = crate::rooms::read::joined_rooms(&state.pool, &user.user_id).await?;
    if let Some(room) = direct.get(partner).into_iter().flatten().find(|room| joined.iter().any(|j| j == room.as_str()))
    {
        return Ok(room.clone());
    }
    let create = CreateRoom {
        preset: Some(Preset::TrustedPrivateChat),
        invite: vec![partner.to_owned()],
        is_direct: true,
        ..CreateRoom::default()
    };
    let room =
        crate::rooms::create::create_room(state.rooms(), &state.default_room_version, &user.user_id, create).await?;
    direct.entry(partner.to_owned()).or_default().push(room.clone());
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
    .await?;
    Ok(room)
}

/// A `<message/>` from the client: a chat message to a local user goes into their DM room.
pub async fn message_from_client(
    state: &AppState,
    session: &Session,
    element: Element,
) -> Result<Vec<Element>, StreamError> {
    let Ok(message) = Message::try_from(element) else { return Ok(vec![]) };
    let Some((_, body)) = message.get_best_body_cloned(vec![]) else {
        // Chat states and markers without a body are not mapped yet.
        return Ok(vec![]);
    };
    if !matches!(message.type_, MessageType::Chat | MessageType::Normal) {
        return Ok(vec![bounce(&message, ErrorType::Cancel, DefinedCondition::FeatureNotImplemented)]);
    }
    let domain = session.jid.domain().as_str().to_owned();
    let Some(partner) = message.to.as_ref().and_then(|to| local_user(to, &domain, &state.server_name)) else {
        return Ok(vec![bounce(&message, ErrorType::Cancel, DefinedCondition::ServiceUnavailable)]);
    };
    let sent = async {
        let room = dm_room(state, &session.matrix, &partner).await?;
        let template = EventTemplate::message("m.room.message", json!({ "msgtype": "m.text", "body": body }));
        // The client's message id makes a resent message one event, as a Matrix txn id does.
        let txn_id = message.id.as_ref().map(|id| id.0.clone());
        let (ctx, limits) = (state.rooms(), &state.rate_limits);
        crate::rooms::send::send_message(ctx, limits, &session.matrix, &room, template, txn_id.as_deref()).await
    };
    match sent.await {
        Ok(_) => Ok(vec![]),
        Err(crate::Error::Matrix { kind: ruma::api::error::ErrorKind::LimitExceeded(_), .. }) => {
            Ok(vec![bounce(&message, ErrorType::Wait, DefinedCondition::ResourceConstraint)])
        }
        Err(crate::Error::Matrix { kind, message: why }) => {
            tracing::debug!(?kind, %why, "an XMPP message was refused");
            Ok(vec![bounce(&message, ErrorType::Cancel, DefinedCondition::Forbidden)])
        }
        Err(error) => {
            tracing::error!(%error, "sending an XMPP message failed");
            Ok(vec![bounce(&message, ErrorType::Wait, DefinedCondition::InternalServerError)])
        }
    }
}

/// The message back to its sender as an error (RFC 6120 §8.3).
fn bounce(message: &Message, type_: ErrorType, condition: DefinedCondition) -> Element {
    let mut error = Message::error(None::<Jid>);
    error.from = message.to.clone();
    error.id = message.id.clone();
    error.payloads.push(StanzaError::new(type_, condition, "en", "").into());
    error.into()
}

/// A `<presence/>` from the client: its own availability becomes Matrix presence; presence
/// aimed at a contact (subscriptions, probes) is answered by the roster's fixed subscriptions.
pub async fn presence_from_client(
    state: &AppState,
    session: &Session,
    element: Element,
) -> Result<Vec<Element>, StreamError> {
    let Ok(presence) = Presence::try_from(element) else { return Ok(vec![]) };
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
pub async fn set_presence(
    state: &AppState,
    user: &MatrixSession,
    presence: Option<(PresenceState, Option<String>)>,
) -> crate::Result<()> {
    let (matrix, status) = presence.unwrap_or((PresenceState::Offline, None));
    crate::users::presence::set(&state.pool, &state.streams, user, &user.user_id, &matrix, status.as_deref()).await
}
