//! Where a reader's sync answers come from: long-polling `/sync` (any homeserver), or Hearth's
//! WebSocket (`/_hearth/client/v1/ws`, which pushes each delta). Either way a reader gets the
//! same JSON, one answer after another, each covering what came after the previous one.

use crate::actions;
use crate::client::MatrixClient;
use crate::provisioning::BenchUser;
use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// `GET /_matrix/client/v3/sync` with a timeout, again and again (every homeserver).
    #[default]
    LongPoll,
    /// Hearth's WebSocket: one connection, deltas pushed (plain `http://` servers only).
    Ws,
}

impl Transport {
    pub fn describe(self) -> &'static str {
        match self {
            Transport::LongPoll => "long-polling /sync",
            Transport::Ws => "on a WebSocket",
        }
    }
}

/// One reader's sync answers.
pub enum SyncFeed {
    LongPoll { client: MatrixClient, user: Arc<BenchUser>, filter: Value, since: String, timeout_ms: u64 },
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
}

impl SyncFeed {
    /// Starts reading `user`'s sync after `since` (a long-poll waits at most `timeout_ms`).
    pub async fn open(
        transport: Transport,
        client: &MatrixClient,
        user: Arc<BenchUser>,
        filter: &Value,
        since: &str,
        timeout_ms: u64,
    ) -> Result<SyncFeed> {
        match transport {
            Transport::LongPoll => Ok(SyncFeed::LongPoll {
                client: client.clone(),
                user,
                filter: filter.clone(),
                since: since.to_owned(),
                timeout_ms,
            }),
            Transport::Ws => {
                let mut url = client.url(&["_hearth", "client", "v1", "ws"])?;
                let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
                url.set_scheme(scheme).map_err(|()| anyhow!("{url} cannot become a WebSocket URL"))?;
                let mut request = url.as_str().into_client_request()?;
                let bearer = format!("Bearer {}", user.access_token).parse()?;
                request.headers_mut().insert("authorization", bearer);
                let (mut socket, _) = tokio_tungstenite::connect_async(request)
                    .await
                    .with_context(|| format!("cannot open the WebSocket of {} at {url}", user.user_id))?;
                let start = json!({"op": "start", "since": since, "filter": filter});
                socket.send(Message::text(start.to_string())).await?;
                Ok(SyncFeed::Ws(Box::new(socket)))
            }
        }
    }

    /// The next answer: a long-poll's (possibly empty, at its timeout), or the next delta if
    /// one comes within `patience` (`None` if not: a pushed feed has no timeout of its own,
    /// and the caller decides when waiting is a loss).
    pub async fn next(&mut self, patience: Duration) -> Result<Option<Value>> {
        match self {
            SyncFeed::LongPoll { client, user, filter, since, timeout_ms } => {
                let answer = actions::sync(client, user, Some(filter), Some(since), *timeout_ms).await?;
                *since = actions::next_batch(&answer)?;
                Ok(Some(answer))
            }
            SyncFeed::Ws(socket) => loop {
                // Reading is cancel-safe: a frame is either returned or left in the socket.
                let Ok(frame) = tokio::time::timeout(patience, socket.next()).await else { return Ok(None) };
                match frame.ok_or_else(|| anyhow!("the WebSocket ended"))?? {
                    Message::Text(text) => {
                        let mut frame: Value = serde_json::from_str(&text)?;
                        match frame["op"].as_str() {
                            Some("sync") => return Ok(Some(frame["sync"].take())),
                            _ => bail!("the WebSocket sent {frame}"),
                        }
                    }
                    Message::Close(close) => bail!("the server closed the WebSocket: {close:?}"),
                    // Pings are answered by tungstenite as it reads.
                    _ => {}
                }
            },
        }
    }
}
