//! One client connection from TCP accept to a bound resource: TLS (STARTTLS or direct), SASL,
//! then resource binding, which opens a Matrix device for the resource.

use crate::state::AppState;
use crate::users::ClientInfo;
use crate::xmpp::Mode;
use crate::xmpp::stream::{Stream, StreamError};
use crate::xmpp::transport::Transport;
use ruma::OwnedUserId;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;

const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// A client must be logged in within this time, or its connection is closed (idle
/// unauthenticated connections cost memory and a file descriptor each).
const LOGIN_DEADLINE: Duration = Duration::from_secs(60);

pub(super) struct Connection {
    pub state: AppState,
    pub tls: tokio_rustls::TlsAcceptor,
    pub mode: Mode,
    pub peer: SocketAddr,
}

impl Connection {
    pub(super) async fn run(self, socket: TcpStream, mut stop: watch::Receiver<bool>) {
        let _ = socket.set_nodelay(true);
        let domain = crate::config::XmppConfig::domain_of(self.state.server_name.as_str()).to_owned();
        let max = self.state.config.xmpp.max_stanza_size;
        let transport = match self.mode {
            Mode::StartTls => Transport::Plain(socket),
            Mode::DirectTls => match tokio::time::timeout(LOGIN_DEADLINE, self.tls.accept(socket)).await {
                Ok(Ok(tls)) => Transport::Tls(Box::new(tls)),
                _ => return,
            },
        };
        let mut stream = Stream::new(transport, max, domain);
        let login = tokio::select! {
            login = tokio::time::timeout(LOGIN_DEADLINE, self.negotiate(&mut stream)) => Some(login),
            _ = stop.wait_for(|stop| *stop) => None,
        };
        let user_id = match login {
            Some(Ok(Ok(user_id))) => user_id,
            Some(Ok(Err(error))) => return stream.close(Some(error)).await,
            Some(Err(_)) => return stream.close(Some(StreamError::new("connection-timeout", "log in sooner"))).await,
            None => return stream.close(Some(shutting_down())).await,
        };
        let outcome = tokio::select! {
            outcome = crate::xmpp::live::run(&self.state, &mut stream, user_id, self.peer) => outcome,
            _ = stop.wait_for(|stop| *stop) => Err(shutting_down()),
        };
        stream.close(outcome.err()).await;
    }

    /// TLS, then SASL; on success the stream is restarted and offers binding.
    async fn negotiate(&self, stream: &mut Stream) -> Result<OwnedUserId, StreamError> {
        if !stream.is_tls() {
            stream.open(&format!("<starttls xmlns='{NS_TLS}'><required/></starttls>")).await?;
            let request = stream.next_element().await?;
            if !request.is("starttls", NS_TLS) {
                return Err(StreamError::new("policy-violation", "STARTTLS is required"));
            }
            stream.send(&format!("<proceed xmlns='{NS_TLS}'/>")).await?;
            let Transport::Plain(socket) = std::mem::replace(&mut stream.transport, Transport::Upgrading) else {
                return Err(StreamError::internal("STARTTLS on a TLS stream"));
            };
            let tls = self.tls.accept(socket).await.map_err(|_| StreamError::new("", ""))?;
            stream.transport = Transport::Tls(Box::new(tls));
            stream.reader.restart_discarding();
        }
        stream.open(&crate::xmpp::sasl::mechanisms_feature()).await?;
        let client = ClientInfo { ip: Some(self.peer.ip().to_string()), user_agent: None };
        let user_id = crate::xmpp::sasl::authenticate(&self.state, stream, &client).await?;
        stream.reader.restart();
        Ok(user_id)
    }
}

fn shutting_down() -> StreamError {
    StreamError::new("system-shutdown", "the server is stopping")
}
