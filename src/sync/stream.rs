//! A sync that never ends: the deltas a pushing transport (the WebSocket) sends one after the
//! other, each the answer `/sync` would give from the previous one's `next_batch`. It is the
//! same long-poll (`serve`), so the same exactly-once invariant and the same wake-ups hold;
//! only the deltas with nothing new are not handed out.

use crate::error::Result;
use crate::store::Store;
use crate::streams::Streams;
use crate::streams::token;
use crate::sync::response::SyncResponse;
use crate::sync::serve::{Look, PreparedFilter, SyncFilter, prepare_filter, serve_prepared};
use crate::users::Session;
use ruma::presence::PresenceState;
use std::time::Duration;

/// How long one look waits before it looks again with nothing to hand out (the long-poll's
/// own cap; a change wakes it at once).
const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(300);

/// Where a stream starts and what it shows.
pub(crate) struct StreamStart<'a> {
    pub filter: SyncFilter<'a>,
    /// The last `next_batch` the client holds; `None` starts with an initial sync.
    pub since: Option<String>,
    /// The first delta carries the rooms' full state.
    pub full_state: bool,
    pub set_presence: PresenceState,
}

pub(crate) struct SyncStream {
    /// The filter as each delta needs it, not its definition: an idle stream keeps this.
    filter: PreparedFilter,
    since: Option<String>,
    full_state: bool,
    set_presence: PresenceState,
    /// An initial sync is handed out even when it is empty: it carries the first token.
    owes_first: bool,
}

impl SyncStream {
    /// Checks what the client asked for (its filter exists, its token is one of ours) before
    /// the first delta is built.
    pub(crate) async fn open(pool: &Store, session: &Session, start: StreamStart<'_>) -> Result<SyncStream> {
        let filter = prepare_filter(pool, session, start.filter).await?;
        if let Some(since) = &start.since {
            token::decode(since)?;
        }
        Ok(SyncStream {
            filter,
            owes_first: start.since.is_none() || start.full_state,
            since: start.since,
            full_state: start.full_state,
            set_presence: start.set_presence,
        })
    }

    /// The next delta, with its `next_batch`, as soon as there is something new for the
    /// session's device; `None` once the server is stopping (the client resumes elsewhere).
    pub(crate) async fn next_delta(
        &mut self,
        pool: &Store,
        streams: &Streams,
        session: &Session,
    ) -> Result<Option<SyncResponse>> {
        loop {
            if streams.is_stopping() {
                return Ok(None);
            }
            let look = Look { since: self.since.as_deref(), timeout: LOOK_AGAIN_AFTER, full_state: self.full_state };
            let answer = serve_prepared(pool, streams, session, &self.filter, look, &self.set_presence).await?;
            // An empty window still moves the stream on: nothing in it was for this device.
            self.since = Some(answer.response.next_batch.clone());
            self.full_state = false;
            if answer.has_news || std::mem::take(&mut self.owes_first) {
                return Ok(Some(answer.response));
            }
        }
    }
}
