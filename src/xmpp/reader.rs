//! Reading an XMPP stream: rxml parses the bytes incrementally (it refuses DTDs, entities and
//! processing instructions, which XMPP forbids), minidom's tree builder assembles each
//! top-level element, and this module cuts the stream into its header, stanzas and end.
//!
//! Memory per connection is bounded: a stanza larger than the configured limit ends the stream
//! before it is assembled, and whitespace between stanzas (keep-alives) is dropped rather than
//! kept as text of the stream element.

use bytes::{Buf, BytesMut};
use minidom::Element;
use minidom::tree_builder::TreeBuilder;
use rxml::error::EndOrError;
use rxml::{Parse, RawEvent, RawParser};
use tokio::io::{AsyncRead, AsyncReadExt};

/// What the peer sent next.
#[derive(Debug)]
pub(super) enum Incoming {
    /// `<stream:stream ...>`: the element holds the header's attributes and no children.
    StreamOpen(Element),
    Stanza(Element),
    /// `</stream:stream>`.
    StreamClose,
}

#[derive(Debug)]
pub(super) enum ReadError {
    /// The connection ended (or failed) under the stream.
    Closed,
    /// Not XML, or not the XML XMPP allows (RFC 6120 §11): `not-well-formed`.
    NotWellFormed(String),
    /// A stanza beyond the configured size: `policy-violation`.
    TooLarge,
}

pub(super) struct XmlReader {
    parser: RawParser,
    tree: TreeBuilder,
    buffer: BytesMut,
    max_stanza_size: usize,
    /// Bytes of the element being read (the header, or the stanza in progress).
    element_bytes: usize,
}

impl XmlReader {
    pub(super) fn new(max_stanza_size: usize) -> XmlReader {
        XmlReader {
            parser: RawParser::new(),
            tree: TreeBuilder::new(),
            buffer: BytesMut::with_capacity(4096),
            max_stanza_size,
            element_bytes: 0,
        }
    }

    /// A new stream on the same connection (after SASL): a fresh document, which may already
    /// have begun in the bytes read.
    pub(super) fn restart(&mut self) {
        self.parser = RawParser::new();
        self.tree = TreeBuilder::new();
        self.element_bytes = 0;
    }

    /// A new stream after STARTTLS: whatever came in plain text after `<starttls/>` is dropped
    /// (it could be an attacker's injection, RFC 6120 §5.3.3).
    pub(super) fn restart_discarding(&mut self) {
        self.restart();
        self.buffer.clear();
    }

    /// The next header, stanza or end of stream. Cancel-safe: only the socket read awaits, and
    /// what it read stays in the buffer.
    pub(super) async fn next<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<Incoming, ReadError> {
        loop {
            if let Some(incoming) = self.parse_buffered()? {
                return Ok(incoming);
            }
            if self.buffer.capacity() - self.buffer.len() < 1024 {
                self.buffer.reserve(4096);
            }
            match io.read_buf(&mut self.buffer).await {
                Ok(0) | Err(_) => return Err(ReadError::Closed),
                Ok(_) => {}
            }
        }
    }

    fn parse_buffered(&mut self) -> Result<Option<Incoming>, ReadError> {
        loop {
            let mut unread: &[u8] = &self.buffer;
            let before = unread.len();
            let result = self.parser.parse(&mut unread, false);
            let consumed = before - unread.len();
            self.buffer.advance(consumed);
            self.element_bytes += consumed;
            if self.element_bytes > self.max_stanza_size {
                return Err(ReadError::TooLarge);
            }
            match result {
                Err(EndOrError::NeedMoreData) => return Ok(None),
                Err(EndOrError::Error(error)) => return Err(ReadError::NotWellFormed(error.to_string())),
                // The document ended: only after its root closed, which `feed` reported.
                Ok(None) => return Ok(Some(Incoming::StreamClose)),
                Ok(Some(event)) => {
                    if let Some(incoming) = self.feed(event)? {
                        self.element_bytes = 0;
                        return Ok(Some(incoming));
                    }
                }
            }
        }
    }

    fn feed(&mut self, event: RawEvent) -> Result<Option<Incoming>, ReadError> {
        let depth = self.tree.depth();
        let kind = match &event {
            RawEvent::XmlDeclaration(..) => return Ok(None),
            // Whitespace between stanzas is a keep-alive, not content of the stream.
            RawEvent::Text(..) if depth <= 1 => return Ok(None),
            RawEvent::ElementHeadClose(..) => Kind::HeadClose,
            RawEvent::ElementFoot(..) => Kind::Foot,
            _ => Kind::Other,
        };
        self.tree.process_event(event).map_err(|error| ReadError::NotWellFormed(error.to_string()))?;
        let incoming = match (kind, self.tree.depth()) {
            (Kind::HeadClose, 1) => self.tree.top().cloned().map(Incoming::StreamOpen),
            (Kind::Foot, 1) => self.tree.unshift_child().map(Incoming::Stanza),
            (Kind::Foot, 0) => Some(Incoming::StreamClose),
            _ => None,
        };
        Ok(incoming)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    HeadClose,
    Foot,
    Other,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    async fn read_all(input: &[u8], limit: usize) -> Vec<Result<String, String>> {
        let mut reader = XmlReader::new(limit);
        let mut io = input;
        let mut out = Vec::new();
        loop {
            match reader.next(&mut io).await {
                Ok(Incoming::StreamOpen(element)) => out.push(Ok(format!("open {}", element.name()))),
                Ok(Incoming::Stanza(element)) => out.push(Ok(format!("{}:{}", element.name(), element.ns()))),
                Ok(Incoming::StreamClose) => out.push(Ok("close".to_owned())),
                Err(ReadError::Closed) => return out,
                Err(error) => {
                    out.push(Err(format!("{error:?}")));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn splits_a_stream_into_stanzas() {
        let input = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'> \
            <message to='a@example.org'><body>hi &amp; bye</body></message>\n \
            <iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>";
        let items = read_all(input, 4096).await;
        assert_eq!(
            items,
            vec![
                Ok("open stream".to_owned()),
                Ok("message:jabber:client".to_owned()),
                Ok("iq:jabber:client".to_owned()),
                Ok("close".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn refuses_bad_xml_and_oversized_stanzas() {
        let header = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
        let bad = format!("{header}<message><body></message>");
        assert!(matches!(read_all(bad.as_bytes(), 4096).await.last(), Some(Err(e)) if e.starts_with("NotWellFormed")));
        let entity = format!("<!DOCTYPE x [<!ENTITY a 'b'>]>{header}");
        assert!(
            matches!(read_all(entity.as_bytes(), 4096).await.last(), Some(Err(e)) if e.starts_with("NotWellFormed"))
        );
        let large = format!("{header}<message><body>{}</body></message>", "x".repeat(5000));
        assert_eq!(read_all(large.as_bytes(), 4096).await.last(), Some(&Err("TooLarge".to_owned())));
    }
}
