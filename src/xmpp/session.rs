//! A bound resource: binding opens the resource's Matrix device, then stanzas from the client
//! are answered or mapped onto the domain (`chat`); `live.rs` runs it with the Matrix messages
//! that arrive from `delivery`.

use crate::state::AppState;
use crate::users::{ClientInfo, Session as MatrixSession};
use crate::xmpp::occupancy::Occupancy;
use crate::xmpp::stream::{Stream, StreamError};
use minidom::Element;
use ruma::OwnedUserId;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use xmpp_parsers::bind::{BindQuery, BindResponse};
use xmpp_parsers::disco::{DiscoInfoQuery, DiscoInfoResult, DiscoItemsQuery, DiscoItemsResult, Identity};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::ping::Ping;
use xmpp_parsers::roster::Roster;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

pub(super) const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub(super) const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// Resources become part of a device id; longer or stranger ones are replaced by a generated one.
const MAX_RESOURCE_LENGTH: usize = 64;
/// What the server tells service discovery it supports.
const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "urn:xmpp:ping",
    "urn:xmpp:sid:0",
    "jabber:iq:roster",
    "urn:xmpp:carbons:2",
    "urn:xmpp:blocking",
];

/// What an account (the user's bare JID) supports: its message archive.
const ACCOUNT_FEATURES: [&str; 2] = [xmpp_parsers::ns::DISCO_INFO, xmpp_parsers::ns::MAM];

/// Everything one bound resource needs.
pub(super) struct Session {
    pub matrix: MatrixSession,
    pub jid: FullJid,
    /// The conference domain: stanzas to it are for MUCs.
    pub muc_domain: String,
    /// The MUCs this resource joined.
    pub occupancy: Occupancy,
    /// Whether the client enabled carbons (XEP-0280): copies of what the user sends elsewhere.
    pub carbons: Arc<AtomicBool>,
}

impl Session {
    /// The answers to one stanza from the client.
    pub(super) async fn handle(&self, state: &AppState, element: Element) -> Result<Vec<Element>, StreamError> {
        match element.name() {
            "iq" if element.attr("type") == Some("set") && element.has_child("query", xmpp_parsers::ns::MAM) => {
                let id = element.attr("id").unwrap_or_default().to_owned();
                let to = element.attr("to").and_then(|to| Jid::new(to).ok());
                let Some(query) = element.get_child("query", xmpp_parsers::ns::MAM).cloned() else { return Ok(vec![]) };
                Ok(crate::xmpp::archive::query(state, self, &id, to.as_ref(), query).await)
            }
            "iq" => Ok(self.iq(state, element).await.into_iter().collect()),
            "message" => crate::xmpp::chat::message_from_client(state, self, element).await,
            "presence" => crate::xmpp::chat::presence_from_client(state, self, element).await,
            _ => Err(StreamError::new("unsupported-stanza-type", "")),
        }
    }

    async fn iq(&self, state: &AppState, element: Element) -> Option<Element> {
        let Ok(iq) = Iq::try_from(element) else {
            // No usable id to answer to (RFC 6120 §8.2.3 requires one).
            return None;
        };
        let (header, payload) = iq.split();
        let id = header.id.clone();
        let request = match payload {
            xmpp_parsers::iq::IqPayload::Get(payload) => Request::Get(payload),
            xmpp_parsers::iq::IqPayload::Set(payload) => Request::Set(payload),
            // Answers to nothing we asked.
            _ => return None,
        };
        let from_server = header.to.as_ref().is_none_or(|to| to.as_str() == self.jid.domain().as_str());
        let to_account = header.to.as_ref().is_some_and(|to| to.to_bare() == self.jid.to_bare());
        let answer = match request {
            Request::Get(payload) if payload.is("ping", xmpp_parsers::ns::PING) => {
                Ping::try_from(payload).ok().map(|_| Iq::empty_result(self.jid.clone().into(), id.clone()))
            }
            Request::Get(payload) if payload.is("query", xmpp_parsers::ns::ROSTER) && (from_server || to_account) => {
                match crate::xmpp::chat::roster(state, self).await {
                    Ok(items) => Some(Iq::from_result(id.clone(), Some(Roster { ver: None, items }))),
                    Err(error) => {
                        tracing::error!(%error, "reading the roster failed");
                        Some(iq_error(&id, ErrorType::Wait, DefinedCondition::InternalServerError))
                    }
                }
            }
            Request::Get(payload) if payload.is("query", xmpp_parsers::ns::DISCO_INFO) => {
                DiscoInfoQuery::try_from(payload).ok().map(|_| {
                    let identity = match from_server {
                        true => Identity::new("server", "im", "en", "Hearth"),
                        false => Identity::new_anonymous::<_, _, String, String>("account", "registered"),
                    };
                    let features: BTreeSet<String> = match from_server {
                        true => FEATURES.iter().map(|f| (*f).to_owned()).collect(),
                        false => BTreeSet::from(ACCOUNT_FEATURES.map(str::to_owned)),
                    };
                    let result =
                        DiscoInfoResult { node: None, identities: vec![identity], features, extensions: vec![] };
                    Iq::from_result(id.clone(), Some(result))
                })
            }
            Request::Get(payload) if payload.is("query", xmpp_parsers::ns::DISCO_ITEMS) => {
                DiscoItemsQuery::try_from(payload).ok().map(|_| {
                    let result = DiscoItemsResult { node: None, items: vec![], rsm: None };
                    Iq::from_result(id.clone(), Some(result))
                })
            }
            Request::Get(payload) if payload.is("blocklist", xmpp_parsers::ns::BLOCKING) && from_server => {
                Some(crate::xmpp::blocking::list(state, self, &id).await)
            }
            Request::Set(payload) if payload.ns() == xmpp_parsers::ns::BLOCKING && from_server => {
                Some(crate::xmpp::blocking::change(state, self, &id, payload).await)
            }
            Request::Set(payload) if payload.ns() == xmpp_parsers::ns::CARBONS && from_server => {
                let enable = match payload.name() {
                    "enable" => Some(true),
                    "disable" => Some(false),
                    _ => None,
                };
                enable.map(|enable| {
                    self.carbons.store(enable, Ordering::Relaxed);
                    Iq::empty_result(self.jid.clone().into(), id.clone())
                })
            }
            // Old clients still open a session (RFC 3921); it is a no-op.
            Request::Set(payload) if payload.is("session", NS_SESSION) => {
                Some(Iq::empty_result(self.jid.clone().into(), id.clone()))
            }
            _ => None,
        };
        let answer = answer.unwrap_or_else(|| iq_error(&id, ErrorType::Cancel, DefinedCondition::ServiceUnavailable));
        let answer = match header.to {
            Some(to) => answer.with_from(to),
            None => answer,
        };
        Some(answer.with_to(self.jid.clone().into()).into())
    }
}

enum Request {
    Get(Element),
    Set(Element),
}

pub(super) fn iq_error(id: &str, type_: ErrorType, condition: DefinedCondition) -> Iq {
    Iq::from_error(id, StanzaError::new(type_, condition, "en", ""))
}

/// Answers a resource binding request (`element`): the bound resource with its device opened,
/// or `None` after refusing something that is no binding request.
pub(super) async fn bind(
    state: &AppState,
    stream: &mut Stream,
    user_id: &OwnedUserId,
    peer: SocketAddr,
    element: Element,
) -> Result<Option<Session>, StreamError> {
    let Ok(iq) = Iq::try_from(element) else {
        return Err(StreamError::new("not-authorized", "bind a resource first"));
    };
    let (header, payload) = iq.split();
    let query = match payload {
        xmpp_parsers::iq::IqPayload::Set(payload) => BindQuery::try_from(payload).ok(),
        _ => None,
    };
    let Some(query) = query else {
        let refusal = iq_error(&header.id, ErrorType::Cancel, DefinedCondition::NotAllowed);
        stream.send_element(&refusal.into()).await?;
        return Ok(None);
    };
    let resource = query
        .resource
        .filter(|r| {
            (1..=MAX_RESOURCE_LENGTH).contains(&r.len())
                && r.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .unwrap_or_else(|| crate::users::tokens::random_alphanumeric(12));
    let matrix = open_device(state, user_id, &resource, peer).await.map_err(StreamError::internal)?;
    let bare = BareJid::new(&format!("{}@{}", user_id.localpart(), stream.domain))
        .map_err(|_| StreamError::new("policy-violation", "this account has no XMPP address"))?;
    let jid = bare.with_resource_str(&resource).map_err(StreamError::internal)?;
    let answer = Iq::from_result(header.id, Some(BindResponse { jid: jid.clone() }));
    stream.send_element(&answer.into()).await?;
    tracing::info!(%jid, device = %matrix.device_id, "XMPP resource bound");
    let muc_domain = crate::xmpp::address::muc_domain(state);
    Ok(Some(Session { matrix, jid, muc_domain, occupancy: Occupancy::default(), carbons: Arc::default() }))
}

/// Each resource is a Matrix device (`XMPP_<resource>`), reused when the resource comes back.
async fn open_device(
    state: &AppState,
    user_id: &OwnedUserId,
    resource: &str,
    peer: SocketAddr,
) -> crate::Result<MatrixSession> {
    let client = ClientInfo { ip: Some(peer.ip().to_string()), user_agent: Some("XMPP".to_owned()) };
    let device_id = format!("XMPP_{resource}");
    let display_name = format!("XMPP ({resource})");
    let mut tx = state.pool.begin().await?;
    let opened = crate::users::sessions::open(&mut tx, user_id, Some(&device_id), Some(&display_name), &client).await?;
    tx.commit().await?;
    // The resource's previous token, if it had one, is revoked.
    crate::users::token_cache::forget_user(&state.pool, user_id.as_str());
    crate::users::sessions::authenticate(&state.pool, &opened.access_token, &client).await
}

/// A JID's local user, if it names one on this server (`alice@domain`, any resource).
pub(super) fn local_user(jid: &Jid, domain: &str, server_name: &ruma::ServerName) -> Option<OwnedUserId> {
    if !jid.domain().as_str().eq_ignore_ascii_case(domain) {
        return None;
    }
    let node = jid.node()?;
    ruma::UserId::parse(format!("@{}:{server_name}", node.as_str())).ok()
}
