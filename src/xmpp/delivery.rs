//! Matrix news for an XMPP resource, found the way `/sync` finds it — woken by the notifier
//! for the user's rooms (never polling), reading what committed after the last look: the DM
//! partners' presence, messages, typing and read receipts in the user's DM rooms, and what
//! happens in the MUCs the resource joined (`muc_live`). Direct-chat invites are accepted on
//! the way (`chat::accept_direct_invites`).

use crate::state::AppState;
use crate::sync::wait::ChangeWatch;
use crate::users::Session as MatrixSession;
use crate::xmpp::chat::{direct_rooms, jid_of};
use crate::xmpp::corrections::text_of;
use crate::xmpp::markers::NS_MARKERS;
use crate::xmpp::occupancy::Occupancy;
use minidom::Element;
use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;
use tokio::time::Instant;
use xmpp_parsers::forwarding::Forwarded;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::{Id, Lang, Message};
use xmpp_parsers::presence::{Presence, Show};
use xmpp_parsers::stanza_id::StanzaId;

/// How long one wait lasts before the loop looks again anyway (a wait ends early on any change).
const WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// The resource news goes to.
pub(super) struct Resource {
    pub matrix: MatrixSession,
    pub jid: FullJid,
    pub occupancy: Occupancy,
    /// Carbons enabled: the user's own messages from elsewhere are copied here.
    pub carbons: Arc<AtomicBool>,
}

pub(super) async fn run(state: AppState, resource: Resource, outgoing: mpsc::Sender<Element>) {
    if let Err(error) = deliver(&state, &resource, &outgoing).await {
        tracing::error!(%error, user = %resource.matrix.user_id, "delivering Matrix news to XMPP stopped");
    }
}

/// Sends stanzas until the client is gone (`false`).
async fn send_all(outgoing: &mpsc::Sender<Element>, stanzas: Vec<Element>) -> bool {
    for stanza in stanzas {
        if outgoing.send(stanza).await.is_err() {
            return false;
        }
    }
    true
}

async fn deliver(state: &AppState, resource: &Resource, outgoing: &mpsc::Sender<Element>) -> crate::Result<()> {
    let user = &resource.matrix;
    let mut change = ChangeWatch::new(&state.streams);
    // Only what happens from now on: history is MAM's and the MUC join's.
    let mut since = None;
    loop {
        let sample = change.sample(&state.pool, &user.user_id).await?;
        if let Err(error) = crate::xmpp::chat::accept_direct_invites(state, user, &sample.memberships).await {
            tracing::warn!(%error, "accepting a direct-chat invite for XMPP failed");
        }
        let mut direct = direct_rooms(state, user).await?;
        // Nothing from a blocked partner (XEP-0191 §3.4, Matrix's ignore list): no message,
        // typing, receipt or presence.
        let blocked = crate::users::ignore::ignored_users(&state.pool, &user.user_id).await?;
        direct.retain(|partner, _| !blocked.contains(partner.as_str()));
        if !send_all(outgoing, presence(state, resource, &direct, since, sample.upto).await?).await {
            return Ok(());
        }
        if let Some(since) = since {
            let stanzas = direct_news(state, resource, &direct, since, sample.upto).await?;
            if !send_all(outgoing, stanzas).await {
                return Ok(());
            }
            let occupancy = &resource.occupancy;
            let live =
                crate::xmpp::muc_live::deliver(state, user, &resource.jid, occupancy, since, sample.upto, outgoing);
            if !live.await? {
                return Ok(());
            }
        }
        since = Some(sample.upto);
        let deadline = Instant::now() + WAIT;
        tokio::select! {
            _ = change.wait_for_change(sample, deadline) => {}
            () = outgoing.closed() => return Ok(()),
            () = state.streams.stopped() => return Ok(()),
        }
    }
}

/// The partners' presence: all of it at the start (RFC 6121 §4.2.2), then changes.
async fn presence(
    state: &AppState,
    resource: &Resource,
    direct: &BTreeMap<OwnedUserId, Vec<OwnedRoomId>>,
    since: Option<i64>,
    upto: i64,
) -> crate::Result<Vec<Element>> {
    let domain = resource.jid.domain().as_str();
    let mut stanzas = Vec::new();
    for row in crate::users::presence::visible_changes(&state.pool, &resource.matrix.user_id, since, upto).await? {
        let Ok(partner) = ruma::UserId::parse(&row.user_id) else { continue };
        let Some(from) = direct.contains_key(&partner).then(|| jid_of(&partner, domain)).flatten() else {
            continue;
        };
        if since.is_none() && row.state == "offline" {
            continue;
        }
        stanzas.push(presence_of(&row.state, row.status_msg).with_from(from).with_to(resource.jid.clone()).into());
    }
    Ok(stanzas)
}

/// Messages, typing and read receipts of the DM partners in their DM rooms, in `(since, upto]`.
async fn direct_news(
    state: &AppState,
    resource: &Resource,
    direct: &BTreeMap<OwnedUserId, Vec<OwnedRoomId>>,
    since: i64,
    upto: i64,
) -> crate::Result<Vec<Element>> {
    let domain = resource.jid.domain().as_str();
    let rooms: Vec<String> = direct.values().flatten().map(ToString::to_string).collect();
    // The partner a room is the DM with, as an XMPP address: only they are heard there.
    let partner_in = |room_id: &str, sender: &str| -> Option<Jid> {
        let sender = ruma::UserId::parse(sender).ok()?;
        let rooms = direct.get(&sender)?;
        rooms.iter().any(|room| room.as_str() == room_id).then(|| jid_of(&sender, domain).map(Jid::from))?
    };
    let user = &resource.matrix;
    let types = &["m.room.message"];
    let events = crate::rooms::read::timeline_between(&state.pool, &rooms, types, since, upto).await?;
    let events: Vec<(String, String, Value)> = events
        .into_iter()
        .filter_map(|event| Some((event.event_id, event.room_id, serde_json::from_str(&event.json).ok()?)))
        .collect();
    // The ids the client knows the messages and the corrected ones by.
    let mut known: Vec<String> = events.iter().map(|(event_id, ..)| event_id.clone()).collect();
    known.extend(events.iter().filter_map(|(_, _, pdu)| Some(text_of(&pdu["content"])?.1?.to_owned())));
    let client_ids = crate::xmpp::markers::client_ids(state, user, &known).await?;
    let partner_of_room: HashMap<&str, &OwnedUserId> =
        direct.iter().flat_map(|(partner, rooms)| rooms.iter().map(move |room| (room.as_str(), partner))).collect();
    let carbons = resource.carbons.load(Ordering::Relaxed);
    let mut stanzas = Vec::new();
    for (event_id, room_id, pdu) in &events {
        let Some((body, corrected)) = text_of(&pdu["content"]) else { continue };
        let Some(sender) = pdu["sender"].as_str() else { continue };
        let mut message = Message::chat(None).with_body(Lang::new(), body.to_owned());
        message.id = Some(Id(event_id.clone()));
        if let Some(id) = corrected.and_then(|corrected| client_ids.get(corrected)) {
            message.payloads.push(crate::xmpp::corrections::replace(id));
        }
        if sender == user.user_id.as_str() {
            // The user's own message, sent elsewhere (not by this resource): a carbon copy.
            let by_this_resource = client_ids.get(event_id).is_some_and(|id| id != event_id);
            let partner = partner_of_room.get(room_id.as_str()).and_then(|partner| jid_of(partner, domain));
            let Some(partner) = partner.filter(|_| carbons && !by_this_resource) else { continue };
            message.from = Some(resource.jid.to_bare().into());
            message.to = Some(partner.into());
            stanzas.push(carbon(resource, message));
            continue;
        }
        let Some(from) = partner_in(room_id, sender) else { continue };
        message.from = Some(from);
        message.to = Some(resource.jid.clone().into());
        let stanza_id = StanzaId { id: event_id.clone(), by: resource.jid.to_bare().into() };
        let mut message = message.with_payload(stanza_id);
        // Asks for `displayed` markers, which become the user's read receipts.
        message.payloads.push(Element::builder("markable", NS_MARKERS).build());
        stanzas.push(message.into());
    }
    for (room, typist, typing) in crate::rooms::typing::changes_between(&state.pool, &rooms, since, upto).await? {
        if let Some(from) = partner_in(&room, &typist) {
            stanzas.push(crate::xmpp::markers::typing_to_client(from, &resource.jid, typing));
        }
    }
    let receipts = crate::rooms::receipts::changes_between(&state.pool, &rooms, &user.user_id, since, upto).await?;
    let read: Vec<_> =
        receipts.into_iter().filter(|receipt| receipt.receipt_type == crate::rooms::receipts::READ).collect();
    let event_ids: Vec<String> = read.iter().map(|receipt| receipt.event_id.clone()).collect();
    let client_ids = crate::xmpp::markers::client_ids(state, user, &event_ids).await?;
    for receipt in &read {
        let (Some(from), Some(id)) =
            (partner_in(&receipt.room_id, &receipt.user_id), client_ids.get(&receipt.event_id))
        else {
            continue;
        };
        stanzas.push(crate::xmpp::markers::read_to_client(from, &resource.jid, id));
    }
    Ok(stanzas)
}

/// Matrix presence as XMPP presence: `unavailable` (idle) is away, `offline` is unavailable.
fn presence_of(state: &str, status: Option<String>) -> Presence {
    let mut presence = match state {
        "offline" => Presence::unavailable(),
        "unavailable" => Presence::available().with_show(Show::Away),
        _ => Presence::available(),
    };
    if let Some(status) = status {
        presence.statuses.insert(Lang::new(), status);
    }
    presence
}

/// A copy of the user's own message sent elsewhere (XEP-0280 §6).
fn carbon(resource: &Resource, message: Message) -> Element {
    let sent = xmpp_parsers::carbons::Sent { forwarded: Forwarded { delay: None, message } };
    let mut wrapper = Message::chat(Some(Jid::from(resource.jid.clone()))).with_payload(sent);
    wrapper.from = Some(resource.jid.to_bare().into());
    wrapper.into()
}
