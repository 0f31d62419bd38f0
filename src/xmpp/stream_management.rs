//! Stream management (XEP-0198): both sides count the stanzas they handled, and the server keeps
//! what it sent until the client acknowledges it, so that a stream resumed after a broken
//! connection (`resumption.rs`) resends exactly what the client never got.

use crate::xmpp::stream::{NS_CLIENT, StreamError};
use minidom::Element;
use std::collections::VecDeque;

pub(super) const NS: &str = "urn:xmpp:sm:3";
/// After this many unacknowledged stanzas the server asks for an acknowledgement (`<r/>`), so
/// that the kept copies stay few.
const REQUEST_EVERY: usize = 5;
/// A client that never acknowledges cannot make the server keep an unbounded queue: beyond this
/// the stream ends (`resource-constraint`).
const MAX_UNACKED: usize = 2000;

/// The counters and kept stanzas of one stream-managed session.
pub(super) struct Acks {
    /// The resumption id, when the client asked for resumption.
    pub id: Option<String>,
    /// Stanzas received from the client (`h` of our `<a/>` and `<resumed/>`), mod 2^32.
    handled: u32,
    /// Stanzas sent to the client, mod 2^32.
    sent: u32,
    /// Copies of the sent stanzas the client has not acknowledged, oldest first.
    unacked: VecDeque<Element>,
}

/// Whether an element counts in stream management: only stanzas, never nonzas (§4).
pub(super) fn is_stanza(element: &Element) -> bool {
    element.ns() == NS_CLIENT && matches!(element.name(), "message" | "presence" | "iq")
}

impl Acks {
    pub(super) fn new(id: Option<String>) -> Acks {
        Acks { id, handled: 0, sent: 0, unacked: VecDeque::new() }
    }

    pub(super) fn received(&mut self, element: &Element) {
        if is_stanza(element) {
            self.handled = self.handled.wrapping_add(1);
        }
    }

    /// Keeps a copy of a stanza about to be sent; `true` when it is time to ask for an ack.
    pub(super) fn sending(&mut self, element: &Element) -> Result<bool, StreamError> {
        if !is_stanza(element) {
            return Ok(false);
        }
        if self.unacked.len() >= MAX_UNACKED {
            return Err(StreamError::new("resource-constraint", "acknowledge what the server sent"));
        }
        self.sent = self.sent.wrapping_add(1);
        self.unacked.push_back(element.clone());
        Ok(self.unacked.len().is_multiple_of(REQUEST_EVERY))
    }

    /// The client handled `h` stanzas in all: the copies of those are dropped. An `h` beyond
    /// what was sent is the `undefined-condition` of §4 (with `handled-count-too-high`).
    pub(super) fn acknowledged(&mut self, h: u32) -> Result<(), StreamError> {
        let first_unacked = self.sent.wrapping_sub(self.unacked.len() as u32);
        let newly_acked = h.wrapping_sub(first_unacked) as usize;
        if newly_acked > self.unacked.len() {
            return Err(StreamError::new("undefined-condition", "handled-count-too-high"));
        }
        self.unacked.drain(..newly_acked);
        Ok(())
    }

    /// `<a h='…'/>`: what the server handled.
    pub(super) fn answer(&self) -> String {
        format!("<a xmlns='{NS}' h='{}'/>", self.handled)
    }

    pub(super) fn handled(&self) -> u32 {
        self.handled
    }

    /// The stanzas to send again on resumption, oldest first (they keep their numbers).
    pub(super) fn unacked(&self) -> impl Iterator<Item = &Element> {
        self.unacked.iter()
    }
}

/// The `h` attribute of `<a/>` or `<resume/>`.
pub(super) fn h_of(element: &Element) -> Result<u32, StreamError> {
    element
        .attr("h")
        .and_then(|h| h.parse().ok())
        .ok_or_else(|| StreamError::new("invalid-xml", "`h` must be a count of stanzas"))
}

/// `<failed/>` with a stanza error condition (§3, §5).
pub(super) fn failed(condition: &str, h: Option<u32>) -> String {
    let h = h.map(|h| format!(" h='{h}'")).unwrap_or_default();
    format!("<failed xmlns='{NS}'{h}><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn message(n: u32) -> Element {
        Element::builder("message", NS_CLIENT).attr(rxml::xml_ncname!("id").into(), n.to_string()).build()
    }

    #[test]
    fn acknowledgements_drop_the_kept_copies_in_order() {
        let mut acks = Acks::new(None);
        let asks: Vec<bool> = (1..=6).map(|n| acks.sending(&message(n)).unwrap()).collect();
        assert_eq!(asks, [false, false, false, false, true, false], "an ack is asked every 5 stanzas");
        acks.acknowledged(2).unwrap();
        let left: Vec<&str> = acks.unacked().map(|m| m.attr("id").unwrap()).collect();
        assert_eq!(left, ["3", "4", "5", "6"]);
        acks.acknowledged(2).unwrap();
        assert_eq!(acks.unacked().count(), 4, "an old h changes nothing");
        assert_eq!(acks.acknowledged(7).unwrap_err().text, "handled-count-too-high");
        acks.acknowledged(6).unwrap();
        assert_eq!(acks.unacked().count(), 0);
        let nonza = Element::builder("r", NS).build();
        acks.received(&nonza);
        acks.received(&message(1));
        assert_eq!(acks.answer(), format!("<a xmlns='{NS}' h='1'/>"), "nonzas are not counted");
    }

    #[test]
    fn counters_wrap_around_at_2_to_the_32() {
        let mut acks = Acks { id: None, handled: u32::MAX, sent: u32::MAX - 1, unacked: VecDeque::new() };
        // Stanza 1 is number 2^32 - 1, stanza 2 number 0 (2^32 mod 2^32).
        acks.sending(&message(1)).unwrap();
        acks.sending(&message(2)).unwrap();
        acks.acknowledged(u32::MAX).unwrap();
        let left: Vec<&str> = acks.unacked().map(|m| m.attr("id").unwrap()).collect();
        assert_eq!(left, ["2"]);
        acks.acknowledged(0).unwrap();
        assert_eq!(acks.unacked().count(), 0);
        acks.received(&message(3));
        assert_eq!(acks.handled(), 0);
    }
}
