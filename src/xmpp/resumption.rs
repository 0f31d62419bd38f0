//! Sessions waiting for their client after a broken connection (XEP-0198 §5): the session —
//! its Matrix device, joined MUCs, delivery task and unacknowledged stanzas — is parked here
//! under its resumption id, and a new stream of the same user takes it back with `<resume/>`.
//! A session nobody resumes within `xmpp.resume_timeout_secs` ends as a closed stream would
//! (its presence goes offline); the client then gets what it missed from MAM.

use crate::state::AppState;
use crate::xmpp::live::Live;
use ruma::{OwnedUserId, UserId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The parked sessions of this process (a `Store` cache: resumption is to the same process).
#[derive(Default)]
pub(super) struct Detached {
    sessions: Mutex<HashMap<String, Parked>>,
    /// Tells a session parked again under the same id from the one an old timer was for.
    parkings: AtomicU64,
}

struct Parked {
    user_id: OwnedUserId,
    parking: u64,
    live: Live,
}

impl Detached {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Parked>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether sessions may be resumed at all (`0` turns resumption off).
pub(super) fn offered(state: &AppState) -> bool {
    state.config.xmpp.resume_timeout_secs > 0
}

pub(super) fn timeout(state: &AppState) -> Duration {
    Duration::from_secs(state.config.xmpp.resume_timeout_secs)
}

/// Keeps `live` for its client until the timeout, then ends it.
pub(super) fn park(state: &AppState, id: String, live: Live) {
    let detached = state.pool.cache::<Detached>();
    let parking = detached.parkings.fetch_add(1, Ordering::Relaxed);
    let user_id = live.user_id().to_owned();
    tracing::debug!(%user_id, "XMPP session parked for resumption");
    detached.sessions().insert(id.clone(), Parked { user_id, parking, live });
    let state = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(timeout(&state)).await;
        let expired = {
            let mut sessions = detached.sessions();
            match sessions.get(&id) {
                Some(parked) if parked.parking == parking => sessions.remove(&id),
                _ => None,
            }
        };
        if let Some(parked) = expired {
            tracing::debug!(user_id = %parked.user_id, "an XMPP session was not resumed in time");
            parked.live.finish(&state).await;
        }
    });
}

/// The parked session `id` of `user_id`, taken out of the registry. Another user's id finds
/// nothing (and leaves that session where it is).
pub(super) fn take(state: &AppState, id: &str, user_id: &UserId) -> Option<Live> {
    let detached = state.pool.cache::<Detached>();
    let mut sessions = detached.sessions();
    if sessions.get(id).is_none_or(|parked| parked.user_id != user_id) {
        return None;
    }
    sessions.remove(id).map(|parked| parked.live)
}
