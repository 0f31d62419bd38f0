//! What happens in a joined MUC's Matrix room, as the stanzas XEP-0045 has for it: messages
//! (the sender's own reflected, under the client's message id when this resource sent it),
//! occupants coming, going and renaming (presence from `room/nick`), and topic changes
//! (subject messages). Roles and affiliations come from the power levels.

use crate::state::AppState;
use crate::users::Session as MatrixSession;
use crate::xmpp::corrections::text_of;
use crate::xmpp::occupancy::{JoinedRoom, Occupancy};
use minidom::Element;
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use tokio::sync::mpsc;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Id, Lang, Message};
use xmpp_parsers::presence::Presence;
use xmpp_parsers::stanza_id::StanzaId;

const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const NS_DELAY: &str = "urn:xmpp:delay";
/// What live delivery reads of a joined room's timeline.
const LIVE_TYPES: &[&str] = &["m.room.message", "m.room.member", "m.room.topic"];

pub(super) struct Occupant {
    pub user_id: OwnedUserId,
    pub nick: String,
}

/// A room's occupants and power levels, read for a join or after membership changed.
pub(super) struct Room {
    pub room_id: OwnedRoomId,
    pub jid: BareJid,
    /// Joined members by user id.
    pub occupants: BTreeMap<String, Occupant>,
    power_levels: crate::rooms::power::PowerLevels,
}

impl Room {
    pub(super) async fn read(
        state: &AppState,
        user: &MatrixSession,
        jid: &BareJid,
        room_id: &OwnedRoomId,
    ) -> crate::Result<Room> {
        let members = crate::rooms::read::joined_members(&state.pool, &user.user_id, room_id).await?;
        let mut occupants = BTreeMap::new();
        for (member, content) in members {
            let Ok(user_id) = UserId::parse(&member) else { continue };
            let nick = nick_of(&user_id, &content);
            occupants.insert(member, Occupant { user_id, nick });
        }
        let power_levels = crate::rooms::power::PowerLevels::current(&state.pool, room_id).await?;
        Ok(Room { room_id: room_id.clone(), jid: jid.clone(), occupants, power_levels })
    }

    /// XEP-0045 §5 from power levels: 100 (and a v12 room's creators) owns the room, 50
    /// administers and moderates.
    fn affiliation_and_role(&self, user: &UserId) -> (&'static str, &'static str) {
        match self.power_levels.of(user.as_str()) {
            100.. => ("owner", "moderator"),
            50.. => ("admin", "moderator"),
            _ => ("member", "participant"),
        }
    }

    fn occupant_jid(&self, nick: &str) -> Option<Jid> {
        self.jid.with_resource_str(nick).ok().map(Jid::from)
    }
}

/// The timeline filter of history and archives: messages only.
pub(super) fn messages_only() -> crate::rooms::filter::EventFilter {
    let mut filter = ruma::api::client::filter::RoomEventFilter::default();
    filter.types = Some(vec!["m.room.message".to_owned()]);
    crate::rooms::filter::EventFilter::from_ruma(&filter)
}

/// A member's nick: their display name in the room, or their localpart without one.
pub(super) fn nick_of(user_id: &UserId, member: &Value) -> String {
    match member["displayname"].as_str().map(str::trim) {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => user_id.localpart().to_owned(),
    }
}

/// An occupant's presence; `own` adds status 110 (and 100: real addresses are shown).
pub(super) fn occupant_presence(room: &Room, occupant: &Occupant, to: &FullJid, available: bool, own: bool) -> Element {
    let (affiliation, role) = match available {
        true => room.affiliation_and_role(&occupant.user_id),
        false => ("member", "none"),
    };
    let real_jid = crate::xmpp::chat::jid_of(&occupant.user_id, to.domain().as_str());
    let statuses: &[&str] = if own { &["100", "110"] } else { &[] };
    presence(room.occupant_jid(&occupant.nick), to, available, affiliation, role, real_jid, statuses)
}

fn presence(
    from: Option<Jid>,
    to: &FullJid,
    available: bool,
    affiliation: &str,
    role: &str,
    real_jid: Option<BareJid>,
    statuses: &[&str],
) -> Element {
    let mut item = Element::builder("item", NS_MUC_USER)
        .attr(rxml::xml_ncname!("affiliation").into(), affiliation)
        .attr(rxml::xml_ncname!("role").into(), role);
    if let Some(real_jid) = real_jid {
        item = item.attr(rxml::xml_ncname!("jid").into(), real_jid.to_string());
    }
    let mut x = Element::builder("x", NS_MUC_USER).append(item.build());
    for code in statuses {
        x = x.append(Element::builder("status", NS_MUC_USER).attr(rxml::xml_ncname!("code").into(), *code).build());
    }
    let base = if available { Presence::available() } else { Presence::unavailable() };
    let mut presence = base.with_to(to.clone());
    presence.from = from;
    presence.payloads.push(x.build());
    presence.into()
}

/// The client's own departure (status 110), after it left or was removed.
pub(super) fn own_departure(room: &JoinedRoom, to: &FullJid) -> Element {
    let from = room.jid.with_resource_str(&room.nick).ok().map(Jid::from);
    presence(from, to, false, "none", "none", None, &["110"])
}

/// The room's subject (sent last on join, and on every topic change). From the room itself:
/// who set it is not needed to show it.
pub(super) fn subject_message(room: &BareJid, topic: &str, to: &FullJid) -> Element {
    let mut message = Message::groupchat(Some(Jid::from(to.clone())));
    message.from = Some(room.clone().into());
    message.subjects.insert(Lang::new(), topic.to_owned());
    message.into()
}

/// One groupchat message: `id` what the client knows it by, the stanza id the event id.
struct Groupchat<'a> {
    from: Option<Jid>,
    id: &'a str,
    event_id: &'a str,
    body: &'a str,
    /// For history: when it was sent (ms since the epoch).
    delayed_since: Option<i64>,
    /// For a correction: the id the client knows the corrected message by.
    corrects: Option<&'a str>,
}

fn groupchat(room: &BareJid, message: Groupchat<'_>, to: &FullJid) -> Element {
    let mut stanza = Message::groupchat(Some(Jid::from(to.clone()))).with_body(Lang::new(), message.body.to_owned());
    stanza.from = message.from;
    stanza.id = Some(Id(message.id.to_owned()));
    stanza = stanza.with_payload(StanzaId { id: message.event_id.to_owned(), by: room.clone().into() });
    if let Some(corrected) = message.corrects {
        stanza.payloads.push(crate::xmpp::corrections::replace(corrected));
    }
    if let Some(stamp) = message.delayed_since.and_then(timestamp) {
        let delay = Element::builder("delay", NS_DELAY)
            .attr(rxml::xml_ncname!("from").into(), room.to_string())
            .attr(rxml::xml_ncname!("stamp").into(), stamp);
        stanza.payloads.push(delay.build());
    }
    stanza.into()
}

/// XEP-0082 date-time in UTC.
pub(super) fn timestamp(ms: i64) -> Option<String> {
    let time = chrono::DateTime::from_timestamp_millis(ms)?;
    Some(time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A message of the join's history (a client-format event).
pub(super) fn history_message(
    room: &Room,
    event: &Value,
    ids: &HashMap<String, String>,
    to: &FullJid,
) -> Option<Element> {
    let event_id = event["event_id"].as_str()?;
    let body = event["content"]["body"].as_str()?;
    let sender = UserId::parse(event["sender"].as_str()?).ok()?;
    let nick = room.occupants.get(sender.as_str()).map_or_else(|| sender.localpart().to_owned(), |o| o.nick.clone());
    let message = Groupchat {
        from: room.occupant_jid(&nick),
        id: ids.get(event_id).map_or(event_id, String::as_str),
        event_id,
        body,
        delayed_since: event["origin_server_ts"].as_i64(),
        // History shows each message as it was sent; its corrections follow as messages.
        corrects: None,
    };
    Some(groupchat(&room.jid, message, to))
}

/// Delivers what happened in the joined rooms in `(since, upto]` (for each room, only after
/// its join). `false` when the client is gone.
pub(super) async fn deliver(
    state: &AppState,
    user: &MatrixSession,
    to: &FullJid,
    occupancy: &Occupancy,
    since: i64,
    upto: i64,
    outgoing: &mpsc::Sender<Element>,
) -> crate::Result<bool> {
    for joined in occupancy.snapshot() {
        let after = since.max(joined.since);
        let rooms = [joined.room_id.to_string()];
        let events = crate::rooms::read::timeline_between(&state.pool, &rooms, LIVE_TYPES, after, upto).await?;
        if events.is_empty() {
            continue;
        }
        let pdus: Vec<Value> =
            events.iter().map(|event| serde_json::from_str(&event.json).unwrap_or_default()).collect();
        // The ids the client knows the messages, and the messages they correct, by.
        let mut ids: Vec<String> = events.iter().map(|event| event.event_id.clone()).collect();
        ids.extend(pdus.iter().filter_map(|pdu| Some(text_of(&pdu["content"])?.1?.to_owned())));
        let client_ids = crate::xmpp::markers::client_ids(state, user, &ids).await?;
        let mut stanzas = Vec::new();
        let mut members_changed = false;
        for (event, pdu) in events.iter().zip(&pdus) {
            match pdu["type"].as_str() {
                Some("m.room.member") => members_changed = true,
                Some("m.room.topic") => {
                    let topic = pdu["content"]["topic"].as_str().unwrap_or_default();
                    stanzas.push(subject_message(&joined.jid, topic, to));
                }
                _ => {
                    let Some((body, corrected)) = text_of(&pdu["content"]) else { continue };
                    let Some(sender) = pdu["sender"].as_str() else { continue };
                    let nick = joined.nicks.get(sender).cloned().unwrap_or_else(|| localpart(sender));
                    let message = Groupchat {
                        from: joined.jid.with_resource_str(&nick).ok().map(Jid::from),
                        id: client_ids.get(&event.event_id).map_or(&event.event_id, |id| id),
                        event_id: &event.event_id,
                        body,
                        delayed_since: None,
                        corrects: corrected.and_then(|corrected| client_ids.get(corrected)).map(String::as_str),
                    };
                    stanzas.push(groupchat(&joined.jid, message, to));
                }
            }
        }
        // Occupants are compared as a whole rather than per event: a burst of joins and
        // renames reads the members once.
        if members_changed {
            stanzas.splice(0..0, occupant_changes(state, user, to, occupancy, &joined).await?);
        }
        for stanza in stanzas {
            if outgoing.send(stanza).await.is_err() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn localpart(user_id: &str) -> String {
    UserId::parse(user_id).map_or_else(|_| user_id.to_owned(), |user| user.localpart().to_owned())
}

/// Presence for the occupants that left, came or renamed since the last announcement.
async fn occupant_changes(
    state: &AppState,
    user: &MatrixSession,
    to: &FullJid,
    occupancy: &Occupancy,
    joined: &JoinedRoom,
) -> crate::Result<Vec<Element>> {
    let room = match Room::read(state, user, &joined.jid, &joined.room_id).await {
        Ok(room) => room,
        // No longer a member (left or kicked from Matrix): the client hears it left.
        Err(crate::Error::Matrix { .. }) => {
            occupancy.remove(&joined.room_id);
            return Ok(vec![own_departure(joined, to)]);
        }
        Err(error) => return Err(error),
    };
    let mut stanzas = Vec::new();
    for (member, nick) in &joined.nicks {
        let renamed = room.occupants.get(member).is_some_and(|occupant| occupant.nick != *nick);
        if member != user.user_id.as_str() && (renamed || !room.occupants.contains_key(member)) {
            let Ok(user_id) = UserId::parse(member) else { continue };
            let gone = Occupant { user_id, nick: nick.clone() };
            stanzas.push(occupant_presence(&room, &gone, to, false, false));
        }
    }
    for (member, occupant) in &room.occupants {
        if member != user.user_id.as_str() && joined.nicks.get(member) != Some(&occupant.nick) {
            stanzas.push(occupant_presence(&room, occupant, to, true, false));
        }
    }
    let mut nicks: BTreeMap<String, String> =
        room.occupants.into_iter().map(|(member, occupant)| (member, occupant.nick)).collect();
    // The client keeps the nick it joined with.
    nicks.insert(user.user_id.to_string(), joined.nick.clone());
    occupancy.set_nicks(&joined.room_id, nicks);
    Ok(stanzas)
}
