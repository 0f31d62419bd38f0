//! A bound resource's life across connections: binding (or resuming, XEP-0198) starts it, then
//! stanzas from the client are handled (`session.rs`) and Matrix news from `delivery` is sent,
//! counted and kept until acknowledged when the client enabled stream management. A broken
//! connection parks a resumable session (`resumption.rs`) instead of ending it.

use crate::state::AppState;
use crate::xmpp::delivery::Resource;
use crate::xmpp::resumption;
use crate::xmpp::session::{NS_BIND, NS_SESSION, Session};
use crate::xmpp::stream::{Stream, StreamError, escape};
use crate::xmpp::stream_management::{self as sm, Acks};
use minidom::Element;
use ruma::{OwnedUserId, UserId};
use std::net::SocketAddr;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Matrix news waiting for the client; the delivery task pauses when this many are queued.
const QUEUE: usize = 64;

/// A bound resource with its delivery task and stream management state.
pub(super) struct Live {
    session: Session,
    to_send: mpsc::Receiver<Element>,
    delivery: JoinHandle<()>,
    /// Set once the client enabled stream management.
    acks: Option<Acks>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.delivery.abort();
    }
}

/// Offers binding and stream management, binds or resumes, then serves the resource until the
/// stream ends.
pub(super) async fn run(
    state: &AppState,
    stream: &mut Stream,
    user_id: OwnedUserId,
    peer: SocketAddr,
) -> Result<(), StreamError> {
    let features =
        format!("<bind xmlns='{NS_BIND}'/><session xmlns='{NS_SESSION}'><optional/></session><sm xmlns='{}'/>", sm::NS);
    stream.open(&features).await?;
    let (mut live, resumed_at) = start(state, stream, &user_id, peer).await?;
    let outcome = async {
        if let Some(h) = resumed_at {
            live.resend(stream, h).await?;
        }
        live.serve(state, stream).await
    };
    match (outcome.await, live.acks.as_ref().and_then(|acks| acks.id.clone())) {
        (Err(error), Some(id)) if error.connection_lost => {
            resumption::park(state, id, live);
            Err(error)
        }
        (outcome, _) => {
            live.finish(state).await;
            outcome
        }
    }
}

/// Waits for the binding request, or a `<resume/>` of a parked session (with the client's `h`).
async fn start(
    state: &AppState,
    stream: &mut Stream,
    user_id: &OwnedUserId,
    peer: SocketAddr,
) -> Result<(Live, Option<u32>), StreamError> {
    loop {
        let element = stream.next_element().await?;
        if element.is("resume", sm::NS) {
            let h = sm::h_of(&element)?;
            match resumption::take(state, element.attr("previd").unwrap_or_default(), user_id) {
                Some(live) => return Ok((live, Some(h))),
                // Expired, unknown, or someone else's: the client binds a new resource (§5).
                None => stream.send(&sm::failed("item-not-found", None)).await?,
            }
            continue;
        }
        if element.ns() == sm::NS {
            // Stream management is enabled after binding (§3).
            stream.send(&sm::failed("unexpected-request", None)).await?;
            continue;
        }
        if let Some(session) = crate::xmpp::session::bind(state, stream, user_id, peer, element).await? {
            return Ok((Live::start(state, session), None));
        }
    }
}

impl Live {
    fn start(state: &AppState, session: Session) -> Live {
        let (outgoing, to_send) = mpsc::channel::<Element>(QUEUE);
        let resource = Resource {
            matrix: session.matrix.clone(),
            jid: session.jid.clone(),
            occupancy: session.occupancy.clone(),
            carbons: session.carbons.clone(),
        };
        let delivery = tokio::spawn(crate::xmpp::delivery::run(state.clone(), resource, outgoing));
        Live { session, to_send, delivery, acks: None }
    }

    pub(super) fn user_id(&self) -> &UserId {
        &self.session.matrix.user_id
    }

    /// Ends the session for good: delivery stops (on drop) and the user's last word on presence
    /// is "gone" (a Matrix client's own syncs set it again).
    pub(super) async fn finish(self, state: &AppState) {
        if let Err(error) = crate::xmpp::chat::set_presence(state, &self.session.matrix, None).await {
            tracing::warn!(%error, "setting presence after an XMPP stream ended failed");
        }
    }

    /// `<resumed/>`, then what the client had not acknowledged before the connection broke.
    async fn resend(&mut self, stream: &mut Stream, h: u32) -> Result<(), StreamError> {
        let Some(acks) = self.acks.as_mut() else {
            return Err(StreamError::internal("a parked session without stream management"));
        };
        acks.acknowledged(h)?;
        let id = acks.id.as_deref().unwrap_or_default();
        stream.send(&format!("<resumed xmlns='{}' previd='{}' h='{}'/>", sm::NS, escape(id), acks.handled())).await?;
        for element in acks.unacked() {
            stream.send_element(element).await?;
        }
        tracing::debug!(jid = %self.session.jid, "XMPP session resumed");
        Ok(())
    }

    async fn serve(&mut self, state: &AppState, stream: &mut Stream) -> Result<(), StreamError> {
        loop {
            let next = tokio::select! {
                incoming = stream.next_element() => Next::Incoming(incoming?),
                Some(outgoing) = self.to_send.recv() => Next::Outgoing(outgoing),
            };
            match next {
                Next::Outgoing(element) => self.send(stream, &element).await?,
                Next::Incoming(element) if element.ns() == sm::NS => self.manage(state, stream, &element).await?,
                Next::Incoming(element) => {
                    if let Some(acks) = self.acks.as_mut() {
                        acks.received(&element);
                    }
                    for answer in self.session.handle(state, element).await? {
                        self.send(stream, &answer).await?;
                    }
                }
            }
        }
    }

    /// Sends a stanza, keeping a copy until the client acknowledges it.
    async fn send(&mut self, stream: &mut Stream, element: &Element) -> Result<(), StreamError> {
        let ask = match self.acks.as_mut() {
            Some(acks) => acks.sending(element)?,
            None => false,
        };
        stream.send_element(element).await?;
        if ask {
            stream.send(&format!("<r xmlns='{}'/>", sm::NS)).await?;
        }
        Ok(())
    }

    /// Stream management's own elements (nonzas) on a bound stream.
    async fn manage(&mut self, state: &AppState, stream: &mut Stream, element: &Element) -> Result<(), StreamError> {
        match (element.name(), self.acks.as_mut()) {
            ("r", Some(acks)) => stream.send(&acks.answer()).await,
            ("a", Some(acks)) => acks.acknowledged(sm::h_of(element)?),
            ("enable", None) => {
                let resume = matches!(element.attr("resume"), Some("true" | "1")) && resumption::offered(state);
                let id = resume.then(|| crate::users::tokens::random_alphanumeric(24));
                let resumable = match &id {
                    Some(id) => format!(" id='{id}' resume='true' max='{}'", resumption::timeout(state).as_secs()),
                    None => String::new(),
                };
                self.acks = Some(Acks::new(id));
                stream.send(&format!("<enabled xmlns='{}'{resumable}/>", sm::NS)).await
            }
            // Enabled twice, resumed on a bound stream, or acks before enabling (§3, §4).
            _ => stream.send(&sm::failed("unexpected-request", None)).await,
        }
    }
}

enum Next {
    Incoming(Element),
    Outgoing(Element),
}
