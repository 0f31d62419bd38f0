//! The XMPP edge: XMPP clients log in with their Matrix account (`@alice:example.org` is
//! `alice@example.org`) and chat with Matrix users. Like `http/`, it maps what arrives onto the
//! domain functions (accounts, devices, rooms, presence, the sync wake-ups) and holds no
//! second copy of rooms, messages or accounts.
//!
//! ```text
//! listener (mod.rs) -> connection.rs: TLS, SASL (sasl.rs), resource binding = a Matrix device
//!                   -> live.rs: a bound resource across connections, with stream management
//!                      (stream_management.rs) and resumption (resumption.rs)
//!                   -> session.rs: stanzas of a bound resource; chat.rs maps them onto rooms
//!                   -> chat.rs (one-to-one), markers.rs (chat states, markers), muc.rs (rooms),
//!                      corrections.rs (edits)
//!                   <- delivery.rs: Matrix news in the user's DM rooms and joined MUCs
//!                      (muc_live.rs, occupancy.rs), woken like /sync
//! address.rs: users and rooms as XMPP addresses; archive.rs: MAM from the room timelines;
//! blocking.rs: the block list is the Matrix ignore list
//! stream.rs / reader.rs: the XML stream itself (rxml + minidom), limits and stream errors
//! ```

mod address;
mod archive;
mod blocking;
mod chat;
mod connection;
mod corrections;
mod delivery;
mod live;
mod markers;
mod muc;
mod muc_live;
mod occupancy;
mod reader;
mod resumption;
mod sasl;
mod session;
mod stream;
mod stream_management;
pub(crate) mod tls;
mod transport;

use crate::config::Config;
use crate::state::AppState;
use anyhow::Context;
use tokio::net::TcpListener;

/// How a listener's connections begin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Plain text that must upgrade with STARTTLS before anything else (RFC 6120 §5).
    StartTls,
    /// TLS from the first byte (XEP-0368).
    DirectTls,
}

/// Binds `xmpp.listen` and `xmpp.listen_tls` (nothing when XMPP is off).
pub(crate) async fn bind(config: &Config) -> anyhow::Result<Vec<(TcpListener, Mode)>> {
    let mut listeners = Vec::new();
    if !config.xmpp.enabled {
        return Ok(listeners);
    }
    for (key, addresses, mode) in [
        ("xmpp.listen", &config.xmpp.listen, Mode::StartTls),
        ("xmpp.listen_tls", &config.xmpp.listen_tls, Mode::DirectTls),
    ] {
        for address in addresses {
            let listener = TcpListener::bind(address.as_str())
                .await
                .with_context(|| format!("`{key}`: cannot listen on {address}"))?;
            tracing::info!(address = %listener.local_addr()?, ?mode, "listening for XMPP clients");
            listeners.push((listener, mode));
        }
    }
    Ok(listeners)
}

/// Serves XMPP clients on `listener` until `shutdown` resolves; streams still open then end
/// with `system-shutdown`, and this returns once they have (the caller bounds the wait).
pub async fn serve(
    listener: TcpListener,
    mode: Mode,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = tls::acceptor(&state.config)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            // Finished connections are reaped as they end, so the set holds only open ones.
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: pause rather than spin.
                tracing::warn!(%error, "accepting an XMPP connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let connection = connection::Connection { state: state.clone(), tls: tls.clone(), mode, peer };
        connections.spawn(connection.run(socket, stop_rx.clone()));
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}
