//! Access tokens this process resolved lately, so that a request costs no round trip to learn
//! who sent it (every send and every long-poll used to start with that query).
//!
//! What a token resolves to can change: a logout or a device deletion removes it; an admin
//! locks, deactivates or shadow-bans its owner, or changes their admin flag or rate limit.
//! Triggers on those tables (migration 0049) send `NOTIFY hearth_auth, '<user id>'` in the
//! changing transaction, so every process — whatever path the change took, the admin CLI
//! included — hears it once it is committed and drops the owner's entries. The process that
//! made a change also drops them itself at once ([`forget_user`]), so its own next request
//! cannot slip in before its notification arrives.
//!
//! Two races are closed:
//! - a lookup that read the old row before a change committed but fills the cache after the
//!   change's notification arrived: every drop moves a generation, and a fill that began under
//!   an older generation is not kept;
//! - a lost listener connection (notifications sent meanwhile are gone): the cache is bypassed
//!   from the loss until the listener listens again, and emptied then.
//!
//! Entries also age out after [`MAX_AGE`], so that nothing (not even a bug in the above) keeps
//! a token alive for long.

use crate::db::devices::TokenOwner;
use crate::store::Store;
use crate::streams::{ChannelEvent, Subscription};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The channel the triggers notify, with the user id whose tokens changed as payload.
const CHANNEL: &str = "hearth_auth";
/// Tokens kept at most; past this the cache starts over (a dropped entry costs one read).
const MAX_TOKENS: usize = 100_000;
/// How long an entry is trusted without reading the database again.
const MAX_AGE: Duration = Duration::from_secs(300);

type TokenHash = [u8; 32];

struct Entry {
    owner: TokenOwner,
    read_at: Instant,
}

/// The tokens a store's requests resolved (see the module docs).
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<TokenHash, Entry>>,
    /// Moves on every drop; see the module docs.
    generation: AtomicU64,
    /// Whether the invalidations are being heard. Until the listener says so, the cache is
    /// bypassed: a process without the listener (a test's bare store, a tool) never uses it.
    listening: AtomicBool,
}

/// A fill's ticket: taken before the database is read, it says whether what was read may be
/// kept.
pub(crate) struct FillTicket(u64);

impl TokenCache {
    fn entries(&self) -> MutexGuard<'_, HashMap<TokenHash, Entry>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The token's owner as read lately, if the cache may be trusted and knows the token.
    pub(crate) fn get(&self, token: &TokenHash) -> Option<TokenOwner> {
        if !self.listening.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries();
        let entry = entries.get(token)?;
        (entry.read_at.elapsed() < MAX_AGE).then(|| entry.owner.clone())
    }

    /// Take before reading the token's owner from the database.
    pub(crate) fn ticket(&self) -> FillTicket {
        FillTicket(self.generation.load(Ordering::Acquire))
    }

    /// Keeps what was read under `ticket`, unless something was dropped since.
    pub(crate) fn fill(&self, token: TokenHash, owner: TokenOwner, ticket: FillTicket) {
        if !self.listening.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries();
        // Compared under the lock that drops take too, so no drop can fall in between.
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if entries.len() >= MAX_TOKENS && !entries.contains_key(&token) {
            entries.clear();
        }
        entries.insert(token, Entry { owner, read_at: Instant::now() });
    }

    /// Notes a sighting this process wrote, so that the next requests need not write it again.
    pub(crate) fn saw(&self, token: &TokenHash, now_ms: i64, ip: Option<&str>) {
        if let Some(entry) = self.entries().get_mut(token) {
            entry.owner.last_seen_ts = Some(now_ms);
            entry.owner.last_seen_ip = ip.map(str::to_owned);
        }
    }

    /// Drops every token of the user.
    pub(crate) fn forget_user(&self, user_id: &str) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, entry| entry.owner.user_id != user_id);
    }

    fn forget_all(&self) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    fn heard(&self, event: ChannelEvent<'_>) {
        match event {
            ChannelEvent::Listening => {
                // Emptied first: whatever changed while nobody listened is not in it then.
                self.forget_all();
                self.listening.store(true, Ordering::Release);
            }
            ChannelEvent::Lost => {
                self.listening.store(false, Ordering::Release);
                self.forget_all();
            }
            ChannelEvent::Notification(user_id) => self.forget_user(user_id),
        }
    }
}

/// The subscription that keeps the store's token cache coherent with every process's writes;
/// the cache is used only once it listens.
pub(crate) fn invalidations(store: &Store) -> Subscription {
    let cache = store.cache::<TokenCache>();
    Subscription { channel: CHANNEL, on_event: Box::new(move |event| cache.heard(event)) }
}

/// Drops the user's tokens from this process's cache: for a change this process just
/// committed (the notification reaches the other processes).
pub(crate) fn forget_user(store: &Store, user_id: &str) {
    store.cache::<TokenCache>().forget_user(user_id);
}

/// The cache of `store`, for the authentication path.
pub(crate) fn of(store: &Store) -> Arc<TokenCache> {
    store.cache::<TokenCache>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(user_id: &str) -> TokenOwner {
        TokenOwner {
            user_id: user_id.to_owned(),
            device_id: "DEVICE".to_owned(),
            is_admin: false,
            is_guest: false,
            deactivated: false,
            locked: false,
            last_seen_ts: None,
            last_seen_ip: None,
            valid_until_ms: None,
            shadow_banned: false,
            override_messages_per_second: None,
            override_burst_count: None,
        }
    }

    fn listening() -> TokenCache {
        let cache = TokenCache::default();
        cache.heard(ChannelEvent::Listening);
        cache
    }

    #[test]
    fn nothing_is_kept_or_served_while_nobody_listens() {
        let cache = TokenCache::default();
        cache.fill([1; 32], owner("@a:x"), cache.ticket());
        assert!(cache.get(&[1; 32]).is_none());

        let cache = listening();
        cache.fill([1; 32], owner("@a:x"), cache.ticket());
        assert!(cache.get(&[1; 32]).is_some());
        cache.heard(ChannelEvent::Lost);
        assert!(cache.get(&[1; 32]).is_none(), "served while notifications may be missed");
        cache.heard(ChannelEvent::Listening);
        assert!(cache.get(&[1; 32]).is_none(), "kept across a gap in the notifications");
    }

    #[test]
    fn a_notification_drops_only_that_users_tokens() {
        let cache = listening();
        cache.fill([1; 32], owner("@a:x"), cache.ticket());
        cache.fill([2; 32], owner("@a:x"), cache.ticket());
        cache.fill([3; 32], owner("@b:x"), cache.ticket());
        cache.heard(ChannelEvent::Notification("@a:x"));
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.get(&[2; 32]).is_none());
        assert_eq!(cache.get(&[3; 32]).map(|owner| owner.user_id), Some("@b:x".to_owned()));
    }

    #[test]
    fn a_read_from_before_a_drop_is_not_kept() {
        let cache = listening();
        let ticket = cache.ticket();
        // The change commits and its notification arrives while the read is in flight.
        cache.heard(ChannelEvent::Notification("@someone:x"));
        cache.fill([1; 32], owner("@a:x"), ticket);
        assert!(cache.get(&[1; 32]).is_none());
    }
}
