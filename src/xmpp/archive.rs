//! Message archives (XEP-0313, MAM) served from the room timelines: the one-to-one archive
//! with a partner is their DM room, a MUC's archive is its room, and each page is the page
//! `/messages` serves (same visibility, same events). Archive ids are event ids, as the
//! stanza ids of live messages are; RSM (XEP-0059) pages by them: `<before/>` for the latest
//! page, `<before>id</before>` and `<after>id</after>` from a known message, nothing for the
//! oldest. Not mapped yet: the `start`/`end` date fields and an archive across all partners
//! without `with`.

use crate::rooms::read::HistoryRequest;
use crate::state::AppState;
use crate::xmpp::chat::jid_of;
use crate::xmpp::session::Session;
use minidom::Element;
use ruma::{OwnedRoomId, UserId};
use serde_json::Value;
use std::collections::HashMap;
use xmpp_parsers::date::DateTime;
use xmpp_parsers::delay::Delay;
use xmpp_parsers::forwarding::Forwarded;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::mam::{Fin, Query, Result_};
use xmpp_parsers::message::{Id, Lang, Message, MessageType};
use xmpp_parsers::rsm::{First, SetQuery, SetResult};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

/// Results per page when the client names no `max`, and the most it may ask for.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 100;

/// Whose archive a query reads.
enum Archive {
    /// The DM room with `partner`.
    Direct { room_id: OwnedRoomId, partner: BareJid },
    /// A room, by the address the client used.
    Muc { room_id: OwnedRoomId, jid: BareJid },
}

impl Archive {
    fn room_id(&self) -> &OwnedRoomId {
        match self {
            Archive::Direct { room_id, .. } | Archive::Muc { room_id, .. } => room_id,
        }
    }
}

/// Answers `<iq type='set'><query xmlns='urn:xmpp:mam:2'/></iq>`: the result messages, then
/// the `fin` result (or one error).
pub(super) async fn query(
    state: &AppState,
    session: &Session,
    id: &str,
    to: Option<&Jid>,
    payload: Element,
) -> Vec<Element> {
    let Ok(query) = Query::try_from(payload) else {
        return vec![error(id, ErrorType::Modify, DefinedCondition::BadRequest)];
    };
    match answer(state, session, id, to, query).await {
        Ok(stanzas) => stanzas,
        Err(Refusal(type_, condition)) => vec![error(id, type_, condition)],
    }
}

struct Refusal(ErrorType, DefinedCondition);

impl From<crate::Error> for Refusal {
    fn from(error: crate::Error) -> Refusal {
        match error {
            crate::Error::Matrix { kind: ruma::api::error::ErrorKind::NotFound, .. } => {
                Refusal(ErrorType::Cancel, DefinedCondition::ItemNotFound)
            }
            crate::Error::Matrix { .. } => Refusal(ErrorType::Auth, DefinedCondition::Forbidden),
            error => {
                tracing::error!(%error, "reading an XMPP archive failed");
                Refusal(ErrorType::Wait, DefinedCondition::InternalServerError)
            }
        }
    }
}

fn error(id: &str, type_: ErrorType, condition: DefinedCondition) -> Element {
    crate::xmpp::session::iq_error(id, type_, condition).into()
}

async fn answer(
    state: &AppState,
    session: &Session,
    id: &str,
    to: Option<&Jid>,
    query: Query,
) -> Result<Vec<Element>, Refusal> {
    let archive = archive_of(state, session, to, &query).await?;
    let room_id = archive.room_id().clone();
    let set = query.set.unwrap_or(SetQuery { max: None, after: None, before: None, index: None });
    let limit = set.max.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    // (page start, backwards): `/messages` tokens are inclusive backwards, exclusive forwards.
    let (from, backwards) = match (set.before.as_deref(), set.after.as_deref()) {
        (Some(""), _) => (None, true),
        (Some(before), _) => {
            let position = crate::rooms::read::event_position(&state.pool, &room_id, before).await?;
            (Some(position - 1), true)
        }
        (None, Some(after)) => (Some(crate::rooms::read::event_position(&state.pool, &room_id, after).await?), false),
        (None, None) => (None, false),
    };
    let filter = crate::xmpp::muc_live::messages_only();
    let from = from.map(crate::rooms::pagination::page_token);
    let request = HistoryRequest { from: from.as_deref(), to: None, backwards, limit, filter: &filter };
    let page = crate::rooms::read::messages(&state.pool, &session.matrix.user_id, &room_id, request).await?;
    let complete = page.end.is_none();
    let mut events = page.chunk;
    if backwards {
        events.reverse();
    }
    let ids = crate::xmpp::muc::event_ids(&events);
    let client_ids = crate::xmpp::markers::client_ids(state, &session.matrix, &ids).await?;
    let nicks = match &archive {
        Archive::Muc { jid, .. } => {
            let room = crate::xmpp::muc_live::Room::read(state, &session.matrix, jid, &room_id).await?;
            room.occupants.into_iter().map(|(user, occupant)| (user, occupant.nick)).collect()
        }
        Archive::Direct { .. } => HashMap::new(),
    };
    let mut stanzas = Vec::new();
    for event in &events {
        let Some(forwarded) = forwarded(session, &archive, event, &client_ids, &nicks) else { continue };
        let Some(event_id) = event["event_id"].as_str() else { continue };
        let result = Result_ { id: event_id.to_owned(), queryid: query.queryid.clone(), forwarded };
        let mut message = Message::new(Some(Jid::from(session.jid.clone()))).with_payload(result);
        message.from = to.map(|to| to.to_bare().into());
        stanzas.push(message.into());
    }
    let first = ids.first().map(|item| First { index: None, item: item.clone() });
    let set = SetResult { first, last: ids.last().cloned(), count: None };
    let fin = Fin { complete, set };
    stanzas.push(Iq::from_result(id, Some(fin)).with_to(session.jid.clone().into()).into());
    Ok(stanzas)
}

/// The archive a query names: a room's (to a room address) or the DM with `with`.
async fn archive_of(state: &AppState, session: &Session, to: Option<&Jid>, query: &Query) -> Result<Archive, Refusal> {
    if let Some(to) = to.filter(|to| to.domain().as_str() == session.muc_domain) {
        let jid = to.to_bare();
        let room_id = crate::xmpp::address::room_of(state, &jid).await?;
        return Ok(Archive::Muc { room_id, jid });
    }
    if to.is_some_and(|to| to.to_bare() != session.jid.to_bare()) {
        return Err(Refusal(ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
    }
    let with = query.form.iter().flat_map(|form| &form.fields).find(|field| field.var.as_deref() == Some("with"));
    let Some(with) = with.and_then(|field| field.values.first()) else {
        return Err(Refusal(ErrorType::Cancel, DefinedCondition::FeatureNotImplemented));
    };
    let domain = session.jid.domain().as_str().to_owned();
    let partner =
        Jid::new(with).ok().and_then(|with| crate::xmpp::session::local_user(&with, &domain, &state.server_name));
    let Some(partner) = partner else { return Err(Refusal(ErrorType::Cancel, DefinedCondition::ItemNotFound)) };
    let room_id = crate::xmpp::chat::existing_dm_room(state, &session.matrix, &partner).await?;
    let Some(room_id) = room_id else { return Err(Refusal(ErrorType::Cancel, DefinedCondition::ItemNotFound)) };
    let partner = jid_of(&partner, &domain).ok_or(Refusal(ErrorType::Cancel, DefinedCondition::ItemNotFound))?;
    Ok(Archive::Direct { room_id, partner })
}

/// One archived message as it was exchanged, with when it was sent.
fn forwarded(
    session: &Session,
    archive: &Archive,
    event: &Value,
    client_ids: &HashMap<String, String>,
    nicks: &HashMap<String, String>,
) -> Option<Forwarded> {
    let event_id = event["event_id"].as_str()?;
    let body = event["content"]["body"].as_str()?;
    let sender = UserId::parse(event["sender"].as_str()?).ok()?;
    let own = sender == session.matrix.user_id;
    let (type_, from, to): (MessageType, Jid, Jid) = match archive {
        Archive::Direct { partner, .. } => {
            let own_jid = Jid::from(session.jid.to_bare());
            match own {
                true => (MessageType::Chat, own_jid, partner.clone().into()),
                false => (MessageType::Chat, partner.clone().into(), own_jid),
            }
        }
        Archive::Muc { jid, .. } => {
            let nick = nicks.get(sender.as_str()).cloned().unwrap_or_else(|| sender.localpart().to_owned());
            let from = jid.with_resource_str(&nick).ok()?.into();
            (MessageType::Groupchat, from, session.jid.to_bare().into())
        }
    };
    let mut message = Message::new_with_type(type_, Some(to)).with_body(Lang::new(), body.to_owned());
    message.from = Some(from);
    message.id = Some(Id(client_ids.get(event_id).cloned().unwrap_or_else(|| event_id.to_owned())));
    let stamp = chrono::DateTime::from_timestamp_millis(event["origin_server_ts"].as_i64()?)?;
    let delay = Delay { from: None, stamp: DateTime(stamp.fixed_offset()), data: None };
    Some(Forwarded { delay: Some(delay), message })
}
