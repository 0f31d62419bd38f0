//! Matrix messages to an XMPP resource: new `m.room.message` events from the user's DM partners
//! in their DM rooms, found the way `/sync` finds news — woken by the notifier for the user's
//! rooms (never polling), reading what committed after the last look.

use crate::state::AppState;
use crate::sync::wait::ChangeWatch;
use crate::users::Session as MatrixSession;
use crate::xmpp::chat::{direct_rooms, jid_of};
use minidom::Element;
use tokio::sync::mpsc;
use tokio::time::Instant;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Id, Lang, Message};
use xmpp_parsers::presence::{Presence, Show};
use xmpp_parsers::stanza_id::StanzaId;

/// How long one wait lasts before the loop looks again anyway (a wait ends early on any change).
const WAIT: std::time::Duration = std::time::Duration::from_secs(300);

pub async fn run(state: AppState, user: MatrixSession, outgoing: mpsc::Sender<Element>) {
    if let Err(error) = deliver(&state, &user, &outgoing).await {
        tracing::error!(%error, user = %user.user_id, "delivering Matrix messages to XMPP stopped");
    }
}

async fn deliver(state: &AppState, user: &MatrixSession, outgoing: &mpsc::Sender<Element>) -> crate::Result<()> {
    let domain = crate::config::XmppConfig::domain_of(state.server_name.as_str()).to_owned();
    let Some(own_jid) = jid_of(&user.user_id, &domain) else { return Ok(()) };
    let mut change = ChangeWatch::new(&state.streams);
    // Only what happens from now on: history is MAM's (a later step).
    let mut since = None;
    loop {
        let sample = change.sample(&state.pool, &user.user_id).await?;
        let direct = direct_rooms(state, user).await?;
        // First the partners' presence: all of it at the start (RFC 6121 §4.2.2), then changes.
        for row in crate::users::presence::visible_changes(&state.pool, &user.user_id, since, sample.upto).await? {
            let Ok(partner) = ruma::UserId::parse(&row.user_id) else { continue };
            let Some(from) = direct.contains_key(&partner).then(|| jid_of(&partner, &domain)).flatten() else {
                continue;
            };
            if since.is_none() && row.state == "offline" {
                continue;
            }
            let presence = presence_of(&row.state, row.status_msg).with_from(from).with_to(own_jid.clone());
            if outgoing.send(presence.into()).await.is_err() {
                return Ok(());
            }
        }
        if let Some(since) = since {
            let rooms: Vec<String> = direct.values().flatten().map(ToString::to_string).collect();
            for event in crate::rooms::read::messages_between(&state.pool, &rooms, since, sample.upto).await? {
                let Some((sender, body)) = text_of(&event.json) else { continue };
                // The user's own messages reach their other resources with carbons (later).
                if sender == user.user_id.as_str() {
                    continue;
                }
                let Ok(sender) = ruma::UserId::parse(sender) else { continue };
                // Only the partner the room is the DM with.
                if !direct.get(&sender).is_some_and(|rooms| rooms.iter().any(|room| room.as_str() == event.room_id)) {
                    continue;
                }
                let Some(from) = jid_of(&sender, &domain) else { continue };
                let mut message = Message::chat(Some(Jid::from(own_jid.clone()))).with_body(Lang::new(), body);
                message.from = Some(from.into());
                message.id = Some(Id(event.event_id.clone()));
                let stanza_id = StanzaId { id: event.event_id.clone(), by: own_jid.clone().into() };
                let message = message.with_payload(stanza_id);
                if outgoing.send(message.into()).await.is_err() {
                    return Ok(());
                }
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

/// The sender and text of an `m.room.message` PDU.
fn text_of(json: &str) -> Option<(String, String)> {
    let event: serde_json::Value = serde_json::from_str(json).ok()?;
    let sender = event["sender"].as_str()?.to_owned();
    let body = event["content"]["body"].as_str()?.to_owned();
    Some((sender, body))
}
