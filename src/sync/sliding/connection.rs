//! A sliding sync connection: the `pos` tokens it hands out and what each stands for — the
//! stream position the answer covered, and what the client had been sent of each room by
//! then. Kept in PostgreSQL (`db::sliding_sync`), so any process answers any connection and a
//! restart loses nothing; a `pos` that is not (or no longer) known answers `M_UNKNOWN_POS`,
//! on which clients start the connection over.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::users::Session;
use ruma::api::error::ErrorKind;
use ruma::events::room::member::MembershipState;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// What a connection has sent, as of one of its positions.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Sent {
    /// Every room the connection has sent, by room id.
    #[serde(default)]
    pub rooms: BTreeMap<String, SentRoom>,
    /// The `count` last answered for each list.
    #[serde(default)]
    pub list_counts: BTreeMap<String, u64>,
}

/// How far a room has been sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SentRoom {
    /// The client has the room's timeline and state up to this stream position.
    pub upto: i64,
    /// The user's membership it was sent with; a change sends the room afresh.
    pub membership: MembershipState,
    /// The `required_state` it was sent with; a change sends the state afresh.
    pub required_state: Vec<(String, String)>,
    /// How many of the room's latest events the client has without a gap, as far as this
    /// connection knows: a request asking for more sends the longer timeline again (see
    /// `serve::timeline_expands`). `None` for rooms recorded before this was kept.
    #[serde(default)]
    pub timeline_limit: Option<usize>,
}

/// Where a request picks up its connection.
pub(crate) struct Connection<'a> {
    pub session: &'a Session,
    pub conn_id: &'a str,
    /// The `pos` the request came with, and the stream position it covered.
    pub previous: Option<(i64, i64)>,
    pub sent: Sent,
}

impl Connection<'_> {
    /// Everything after this position is new to the client (`None`: nothing was sent yet).
    pub(crate) fn since(&self) -> Option<i64> {
        self.previous.map(|(_, position)| position)
    }
}

/// The connection `conn_id` of the session's device at `pos` (a new one without `pos`).
pub(crate) async fn resume<'a>(
    pool: &Store,
    session: &'a Session,
    conn_id: &'a str,
    pos: Option<&str>,
) -> Result<Connection<'a>> {
    let Some(pos) = pos else { return Ok(Connection { session, conn_id, previous: None, sent: Sent::default() }) };
    let unknown = || Error::new(ErrorKind::UnknownPos, "Unknown or expired pos; start the connection again");
    let pos_id = decode(pos).ok_or_else(unknown)?;
    let row =
        db::sliding_sync::position(pool, session.user_id.as_str(), session.device_id.as_str(), conn_id, pos_id).await?;
    let row = row.ok_or_else(unknown)?;
    // A row this server wrote always reads back; one that does not is treated as gone.
    let sent = row.sent.into_value().and_then(|sent| serde_json::from_value(sent).ok()).ok_or_else(unknown)?;
    Ok(Connection { session, conn_id, previous: Some((pos_id, row.stream_position)), sent })
}

/// Records the answer up to `upto` with what it sent, and returns its `pos`.
pub(crate) async fn advance(pool: &Store, connection: &Connection<'_>, upto: i64, sent: &Sent) -> Result<String> {
    let sent: Value = serde_json::to_value(sent).map_err(|e| Error::internal(format!("connection state: {e}")))?;
    let new = db::sliding_sync::NewPosition {
        user_id: connection.session.user_id.as_str(),
        device_id: connection.session.device_id.as_str(),
        conn_id: connection.conn_id,
        stream_position: upto,
        sent: &sent,
        now_ms: crate::time::now_ms(),
    };
    let pos_id = db::sliding_sync::advance(pool, new, connection.previous.map(|(pos_id, _)| pos_id)).await?;
    Ok(encode(pos_id))
}

/// Tokens are versioned (`p1_`), so another layout can be told apart later.
const TOKEN_PREFIX: &str = "p1_";

fn encode(pos_id: i64) -> String {
    format!("{TOKEN_PREFIX}{pos_id}")
}

fn decode(pos: &str) -> Option<i64> {
    pos.strip_prefix(TOKEN_PREFIX)?.parse().ok()
}
