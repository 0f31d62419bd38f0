//! Chat states (XEP-0085) ↔ typing, and chat markers (XEP-0333) with delivery receipts
//! (XEP-0184) ↔ read receipts, in one-to-one chats.
//!
//! Messages reach XMPP with the event id as their `id`, so a `displayed` marker names the
//! event to put the read receipt on. The other way, a Matrix read receipt on a message this
//! resource sent is reported under the client's own message id (the transaction id it was
//! sent with). Matrix has no delivery receipt: `received` from a client changes nothing, and a
//! Matrix read receipt tells the XMPP side both `received` and `displayed`.

use crate::state::AppState;
use crate::users::Session as MatrixSession;
use minidom::Element;
use ruma::OwnedRoomId;
use std::time::Duration;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::{Id, Message};

pub(super) const NS_CHAT_STATES: &str = "http://jabber.org/protocol/chatstates";
pub(super) const NS_MARKERS: &str = "urn:xmpp:chat-markers:0";
const NS_RECEIPTS: &str = "urn:xmpp:receipts";
/// How long `composing` shows as typing unless renewed: XEP-0085 clients send `paused` after
/// a few seconds without keystrokes, and a new `composing` when typing resumes.
const COMPOSING_TIMEOUT: Duration = Duration::from_secs(30);

/// The chat state a message carries (`composing`, `paused`, `active`, `inactive`, `gone`).
pub(super) fn chat_state(message: &Message) -> Option<&str> {
    message.payloads.iter().find(|payload| payload.ns() == NS_CHAT_STATES).map(Element::name)
}

/// The message id a `displayed` marker acknowledges.
pub(super) fn displayed(message: &Message) -> Option<&str> {
    message.payloads.iter().find(|payload| payload.is("displayed", NS_MARKERS))?.attr("id")
}

/// A chat state from the client, as the user's typing in the DM room.
pub(super) async fn typing_from_client(
    state: &AppState,
    user: &MatrixSession,
    room: &OwnedRoomId,
    chat_state: &str,
) -> crate::Result<()> {
    let timeout = (chat_state == "composing").then_some(COMPOSING_TIMEOUT);
    let user_id = &user.user_id;
    crate::rooms::typing::set_typing(&state.pool, &state.streams, user_id, user_id, room, timeout).await
}

/// A `displayed` marker from the client, as the user's read receipt. Ids that are no event
/// id (a message this server never sent) are left alone.
pub(super) async fn displayed_from_client(
    state: &AppState,
    user: &MatrixSession,
    room: &OwnedRoomId,
    id: &str,
) -> crate::Result<()> {
    if !id.starts_with('$') {
        return Ok(());
    }
    let read = crate::rooms::receipts::READ;
    crate::rooms::receipts::post_receipt(&state.pool, &state.streams, &user.user_id, room, read, id, None).await
}

/// Typing of `partner` as a chat state message.
pub(super) fn typing_to_client(partner: Jid, to: &FullJid, typing: bool) -> Element {
    let chat_state = if typing { "composing" } else { "active" };
    let mut message = Message::chat(Some(Jid::from(to.clone())));
    message.from = Some(partner);
    message.payloads.push(Element::builder(chat_state, NS_CHAT_STATES).build());
    message.into()
}

/// A read receipt of `partner` on the message the client knows as `id`.
pub(super) fn read_to_client(partner: Jid, to: &FullJid, id: &str) -> Element {
    let mut message = Message::chat(Some(Jid::from(to.clone())));
    message.from = Some(partner);
    message.id = Some(Id(format!("read-{id}")));
    message.payloads.push(Element::builder("received", NS_RECEIPTS).attr(rxml::xml_ncname!("id").into(), id).build());
    message.payloads.push(Element::builder("displayed", NS_MARKERS).attr(rxml::xml_ncname!("id").into(), id).build());
    message.into()
}

/// What the client calls the messages behind `event_ids`: its own message id for those this
/// resource sent, the event id for every other.
pub(super) async fn client_ids(
    state: &AppState,
    user: &MatrixSession,
    event_ids: &[String],
) -> crate::Result<std::collections::HashMap<String, String>> {
    let mut ids =
        crate::rooms::transaction_ids::sent_with(&state.pool, &user.user_id, &user.device_id, event_ids).await?;
    for event_id in event_ids {
        ids.entry(event_id.clone()).or_insert_with(|| event_id.clone());
    }
    Ok(ids)
}
