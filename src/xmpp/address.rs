//! Matrix names as XMPP addresses. A user `@alice:example.org` is `alice@example.org`; a room
//! is a MUC on the conference domain (`xmpp.muc_domain`, by default `conference.<domain>`):
//! `general@conference.example.org` is the local alias `#general:example.org`, and any other
//! alias or room id stands there whole, escaped as XEP-0106 says (`!abc\3aexample.org@…`),
//! so every room has an address and every address names exactly one room or alias.

use crate::state::AppState;
use ruma::{OwnedRoomId, RoomAliasId, RoomId};
use xmpp_parsers::jid::BareJid;

/// The characters XEP-0106 escapes in a localpart, with their escapes.
const ESCAPES: &[(char, &str)] = &[
    (' ', "\\20"),
    ('"', "\\22"),
    ('&', "\\26"),
    ('\'', "\\27"),
    ('/', "\\2f"),
    (':', "\\3a"),
    ('<', "\\3c"),
    ('>', "\\3e"),
    ('@', "\\40"),
    ('\\', "\\5c"),
];

/// XEP-0106 escaping of a localpart.
#[cfg(test)] // the reverse of what the code reads; MUC listings will use it
pub(crate) fn escape_node(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match ESCAPES.iter().find(|(plain, _)| *plain == character) {
            Some((_, escape)) => escaped.push_str(escape),
            None => escaped.push(character),
        }
    }
    escaped
}

/// The reverse of [`escape_node`]; a backslash that starts no known escape stays as it is.
pub(super) fn unescape_node(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(index) = rest.find('\\') {
        plain.push_str(&rest[..index]);
        rest = &rest[index..];
        match ESCAPES.iter().find(|(_, escape)| rest.get(..3).is_some_and(|head| head.eq_ignore_ascii_case(escape))) {
            Some((character, _)) => {
                plain.push(*character);
                rest = &rest[3..];
            }
            None => {
                plain.push('\\');
                rest = &rest[1..];
            }
        }
    }
    plain.push_str(rest);
    plain
}

/// The XMPP domain of this server (the server name without its port).
pub(super) fn domain(state: &AppState) -> String {
    crate::config::XmppConfig::domain_of(state.server_name.as_str()).to_owned()
}

/// The conference domain rooms live on.
pub(super) fn muc_domain(state: &AppState) -> String {
    match &state.config.xmpp.muc_domain {
        Some(domain) => domain.clone(),
        None => format!("conference.{}", domain(state)),
    }
}

/// The room a MUC address names: a room id directly, an alias through the directory.
pub(super) async fn room_of(state: &AppState, room: &BareJid) -> crate::Result<OwnedRoomId> {
    let node = room.node().map(|node| unescape_node(node.as_str())).unwrap_or_default();
    if node.starts_with('!') {
        return RoomId::parse(&node).map_err(|_| crate::Error::not_found("No such room"));
    }
    let alias = match node.starts_with('#') {
        true => node,
        false => format!("#{node}:{}", state.server_name),
    };
    let alias = RoomAliasId::parse(&alias).map_err(|_| crate::Error::not_found("No such room"))?;
    crate::rooms::aliases::resolve(&state.pool, &state.server_name, &alias).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_and_leaves_plain_names_alone() {
        for name in ["general", "!abc:example.org", "#room:other.org", "a b&c'd/e<f>g@h\\i\"j"] {
            assert_eq!(unescape_node(&escape_node(name)), name);
        }
        assert_eq!(escape_node("!abc:example.org"), "!abc\\3aexample.org");
        assert_eq!(unescape_node("\\3A\\zz"), ":\\zz", "unknown escapes stay, known ones in any case");
    }
}
