//! One XMPP stream over a connection (RFC 6120 §4): headers, elements in and out, and the stream
//! errors that end it.

use crate::xmpp::reader::{Incoming, ReadError, XmlReader};
use crate::xmpp::transport::Transport;
use minidom::Element;
use tokio::io::AsyncWriteExt;

pub(super) const NS_CLIENT: &str = "jabber:client";
pub(super) const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// A condition that ends the stream (RFC 6120 §4.9.3), with a text for humans.
#[derive(Debug)]
pub(super) struct StreamError {
    pub condition: &'static str,
    pub text: String,
    /// The connection broke under the stream (no closing tag): a resumable session waits for
    /// the client to come back (XEP-0198), where a closed stream ends it.
    pub connection_lost: bool,
}

impl StreamError {
    pub(super) fn new(condition: &'static str, text: impl Into<String>) -> StreamError {
        StreamError { condition, text: text.into(), connection_lost: false }
    }

    pub(super) fn not_authorized(text: &str) -> StreamError {
        StreamError::new("not-authorized", text)
    }

    /// A fault of the server's own: logged here, and the client learns no detail.
    pub(super) fn internal(error: impl std::fmt::Display) -> StreamError {
        tracing::error!(%error, "XMPP stream failed");
        StreamError::new("internal-server-error", "")
    }

    /// The peer closed its stream: nothing is written any more but our closing tag.
    fn closed() -> StreamError {
        StreamError::new("", "")
    }

    /// The connection is gone (reset, or a write failed): nothing can be written any more.
    fn lost() -> StreamError {
        StreamError { connection_lost: true, ..StreamError::closed() }
    }
}

impl From<ReadError> for StreamError {
    fn from(error: ReadError) -> StreamError {
        match error {
            ReadError::Closed => StreamError::lost(),
            ReadError::NotWellFormed(why) => StreamError::new("not-well-formed", why),
            ReadError::TooLarge => StreamError::new("policy-violation", "stanza too large"),
        }
    }
}

pub(super) struct Stream {
    pub transport: Transport,
    pub reader: XmlReader,
    /// The XMPP domain this server answers for.
    pub domain: String,
    header_sent: bool,
}

impl Stream {
    pub(super) fn new(transport: Transport, max_stanza_size: usize, domain: String) -> Stream {
        Stream { transport, reader: XmlReader::new(max_stanza_size), domain, header_sent: false }
    }

    pub(super) fn is_tls(&self) -> bool {
        self.transport.is_tls()
    }

    /// Waits for the client's stream header and answers with ours, then sends `features`
    /// (the children of `<stream:features/>`).
    pub(super) async fn open(&mut self, features: &str) -> Result<(), StreamError> {
        self.header_sent = false;
        let header = match self.reader.next(&mut self.transport).await? {
            Incoming::StreamOpen(header) => header,
            _ => return Err(StreamError::new("not-well-formed", "expected a stream header")),
        };
        self.send_header().await?;
        if !header.is("stream", NS_STREAMS) {
            return Err(StreamError::new("invalid-namespace", "not an XMPP stream"));
        }
        if header.attr("to").is_some_and(|to| !to.eq_ignore_ascii_case(&self.domain)) {
            return Err(StreamError::new("host-unknown", "this server does not serve that domain"));
        }
        self.send(&format!("<stream:features>{features}</stream:features>")).await
    }

    async fn send_header(&mut self) -> Result<(), StreamError> {
        let id = crate::users::tokens::random_alphanumeric(16);
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}' \
             id='{id}' from='{}' version='1.0' xml:lang='en'>",
            self.domain
        );
        self.header_sent = true;
        self.send(&header).await
    }

    /// The next stanza (or SASL/TLS element) of the open stream.
    pub(super) async fn next_element(&mut self) -> Result<Element, StreamError> {
        match self.reader.next(&mut self.transport).await? {
            Incoming::Stanza(element) => Ok(element),
            Incoming::StreamClose => Err(StreamError::closed()),
            Incoming::StreamOpen(_) => Err(StreamError::new("not-well-formed", "a stream header inside the stream")),
        }
    }

    pub(super) async fn send(&mut self, text: &str) -> Result<(), StreamError> {
        let written = async {
            self.transport.write_all(text.as_bytes()).await?;
            self.transport.flush().await
        };
        written.await.map_err(|_| StreamError::lost())
    }

    pub(super) async fn send_element(&mut self, element: &Element) -> Result<(), StreamError> {
        let mut bytes = Vec::new();
        element.write_to(&mut bytes).map_err(StreamError::internal)?;
        let text = String::from_utf8(bytes).map_err(StreamError::internal)?;
        self.send(&text).await
    }

    /// Ends the stream: with the error's condition unless the peer is gone, and with our
    /// closing tag either way.
    pub(super) async fn close(mut self, error: Option<StreamError>) {
        // A peer that closed its side (or vanished) gets our closing tag without an error.
        if let Some(error) = error.as_ref().filter(|error| !error.condition.is_empty()) {
            tracing::debug!(condition = error.condition, text = %error.text, "ending an XMPP stream");
            if !self.header_sent {
                let _ = self.send_header().await;
            }
            let text = match error.text.is_empty() {
                true => String::new(),
                false => format!("<text xmlns='{NS_STREAM_ERRORS}'>{}</text>", escape(&error.text)),
            };
            let condition = error.condition;
            let _ = self
                .send(&format!("<stream:error><{condition} xmlns='{NS_STREAM_ERRORS}'/>{text}</stream:error>"))
                .await;
        }
        let _ = self.send("</stream:stream>").await;
        let _ = self.transport.shutdown().await;
    }
}

/// Text for XML character data.
pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
