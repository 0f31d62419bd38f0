//! Telling the pool that its idle connections may have died.
//!
//! The pool hands out connections without testing them first (a ping would double the round
//! trips of every request). When PostgreSQL loses backends — an operator's
//! `pg_terminate_backend`, a restart of the server — every idle connection in the pool is
//! dead, and each would fail the next request it is given. So the first request to meet a
//! dead connection records the moment ([`connection_failed`]); from then on a connection that
//! was already idle at that moment is pinged before use and dropped if it does not answer
//! ([`may_be_dead`]), and the failure costs one request, not one per pooled connection.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static START: LazyLock<Instant> = LazyLock::new(Instant::now);
/// When a dead connection was last met, in ms since [`START`] plus one (0: never).
static LAST_FAILURE: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A query failed because its connection (or the server) was gone.
pub(crate) fn connection_failed() {
    LAST_FAILURE.store(now_ms().saturating_add(1), Ordering::Relaxed);
}

/// Whether a connection idle for `idle_for` was already idle when a dead connection was last
/// met, and so may be dead too.
pub(crate) fn may_be_dead(idle_for: Duration) -> bool {
    let failure = LAST_FAILURE.load(Ordering::Relaxed);
    if failure == 0 {
        return false;
    }
    let idle_since = now_ms().saturating_sub(u64::try_from(idle_for.as_millis()).unwrap_or(u64::MAX));
    idle_since < failure
}
