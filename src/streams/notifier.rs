//! Wake-ups for waiting syncs, aimed at the syncs a change concerns.
//!
//! A write names what it touched — room ids and user ids, which never collide (`!…` vs `@…`)
//! — and wakes only the waiters registered under one of those keys: a message in a DM wakes
//! its two members, not every sync on the server. Waiters register *before* they sample the
//! stream position, and a wake-up leaves a permit, so a write committing in between is never
//! missed.
//!
//! Besides the keyed wake-ups there is a generation counter that moves on every change of the
//! readable position (commits, abandoned writes, dead writers reaped). A sync whose changes
//! are committed but not yet readable (a slower writer holds the stream below them) waits on
//! it. Other processes' writes arrive through PostgreSQL `LISTEN hearth_stream`, whose payload
//! carries the same keys.
//!
//! The outbox workers (push delivery, the federation sender) have a counter each that moves
//! on every change except those whose writer knows it gave that outbox nothing to deliver
//! ([`Notifier::wake_sparing`]): a message nobody can be pushed for, in a room no other server
//! is in, wakes no worker. A worker that last saw work in flight follows the generation
//! counter instead, until that work is readable (`outbox::worker`).

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// PostgreSQL refuses notification payloads from 8,000 bytes on; a change touching more keys
/// than fit wakes everyone instead.
const MAX_PAYLOAD_BYTES: usize = 7_900;

/// Whom a change concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Waiters registered under any of these room or user ids. Empty: nobody in particular,
    /// but the readable position may have moved.
    Keys(Vec<String>),
    /// Every waiter (a change whose audience is not worth computing, or is unknown).
    Everyone,
}

/// The outboxes a change can give work to (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxKind {
    Push,
    Federation,
}

impl OutboxKind {
    pub(crate) const ALL: [OutboxKind; 2] = [OutboxKind::Push, OutboxKind::Federation];

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    generation: watch::Sender<u64>,
    /// One counter per [`OutboxKind`], by its index.
    outbox_generations: [watch::Sender<u64>; 2],
    waiters: Mutex<HashMap<String, HashMap<u64, Arc<Notify>>>>,
    next_waiter: AtomicU64,
    /// This process's writer id, so that its own notifications (already delivered in
    /// process) are not delivered twice. 0 until the tracker registers.
    own_writer: AtomicI32,
    /// History purges announced so far, here or by another process: a purge deletes events
    /// without moving any stream position, so what a process keeps of rooms' past (the
    /// initial-sync cache) is only valid for the count it was built under.
    history_purges: AtomicU64,
}

/// The channel of the stream's own notifications.
const STREAM_CHANNEL: &str = "hearth_stream";

/// Another channel the stream's listener listens on, for a cache that other processes' writes
/// must invalidate (one connection serves them all).
pub struct Subscription {
    pub channel: &'static str,
    pub on_event: Box<dyn Fn(ChannelEvent<'_>) + Send + Sync>,
}

/// What a [`Subscription`] is told.
pub enum ChannelEvent<'a> {
    /// The listener listens: every notification from now on will arrive. Also after
    /// [`ChannelEvent::Lost`], once it listens again.
    Listening,
    /// The connection was lost: notifications until the next [`ChannelEvent::Listening`] are
    /// gone.
    Lost,
    /// A notification's payload.
    Notification(&'a str),
}

/// What travels in a `hearth_stream` notification.
#[derive(Serialize, Deserialize)]
struct Payload {
    #[serde(rename = "w")]
    writer: i32,
    /// Absent: everyone.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    keys: Option<Vec<String>>,
    /// A history purge committed.
    #[serde(rename = "p", default, skip_serializing_if = "std::ops::Not::not")]
    history_purge: bool,
}

impl Notifier {
    /// Starts listening on `hearth_stream` and on each subscription's channel, on one
    /// connection.
    pub async fn start(pool: &PgPool, subscriptions: Vec<Subscription>) -> anyhow::Result<Notifier> {
        let (generation, _) = watch::channel(0u64);
        let notifier = Notifier {
            inner: Arc::new(Inner {
                generation,
                outbox_generations: [watch::channel(0u64).0, watch::channel(0u64).0],
                waiters: Mutex::new(HashMap::new()),
                next_waiter: AtomicU64::new(1),
                own_writer: AtomicI32::new(0),
                history_purges: AtomicU64::new(0),
            }),
        };
        let mut listener = PgListener::connect_with(pool).await?;
        // A lost connection must be seen, not mended behind our back: what was notified while
        // it was down is gone, and those who rely on the notifications must be told.
        listener.eager_reconnect(false);
        let channels: Vec<&str> = std::iter::once(STREAM_CHANNEL)
            .chain(subscriptions.iter().map(|subscription| subscription.channel))
            .collect();
        listener.listen_all(channels).await?;
        for subscription in &subscriptions {
            (subscription.on_event)(ChannelEvent::Listening);
        }
        let receiver = notifier.clone();
        tokio::spawn(async move { receiver.listen(listener, subscriptions).await });
        Ok(notifier)
    }

    /// Hands each notification to its receiver until the pool closes. After a lost connection
    /// everyone is woken and every subscription told, once the listener listens again.
    async fn listen(self, mut listener: PgListener, subscriptions: Vec<Subscription>) {
        let mut listening = true;
        loop {
            if !listening {
                // Any statement reconnects the listener and repeats its LISTENs first; this
                // one says what the connection is in `pg_stat_activity`.
                match sqlx::query("SELECT 'hearth: listening again'").execute(&mut listener).await {
                    Ok(_) => {
                        listening = true;
                        self.wake(&Audience::Everyone);
                        for subscription in &subscriptions {
                            (subscription.on_event)(ChannelEvent::Listening);
                        }
                    }
                    Err(sqlx::Error::PoolClosed) => break,
                    Err(error) => {
                        tracing::warn!(%error, "stream notification listener: reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                continue;
            }
            let lost = match listener.try_recv().await {
                Ok(Some(notification)) => {
                    self.dispatch(notification.channel(), notification.payload(), &subscriptions);
                    continue;
                }
                Ok(None) => None,
                // The server is shutting down: its pool is closed.
                Err(sqlx::Error::PoolClosed) => break,
                Err(error) => Some(error),
            };
            if let Some(error) = &lost {
                tracing::warn!(%error, "stream notification listener");
            }
            listening = false;
            for subscription in &subscriptions {
                (subscription.on_event)(ChannelEvent::Lost);
            }
            // Wake everyone now too: what was announced before the loss may be what they wait for.
            self.wake(&Audience::Everyone);
        }
    }

    fn dispatch(&self, channel: &str, payload: &str, subscriptions: &[Subscription]) {
        if channel == STREAM_CHANNEL {
            self.receive(payload);
            return;
        }
        for subscription in subscriptions.iter().filter(|subscription| subscription.channel == channel) {
            (subscription.on_event)(ChannelEvent::Notification(payload));
        }
    }

    pub(super) fn set_own_writer(&self, writer_id: i32) {
        self.inner.own_writer.store(writer_id, Ordering::Relaxed);
    }

    /// The notification another process receives for a change of ours.
    pub(super) fn payload(&self, audience: &Audience) -> String {
        let writer = self.inner.own_writer.load(Ordering::Relaxed);
        let keys = match audience {
            Audience::Keys(keys) => Some(keys.clone()),
            Audience::Everyone => None,
        };
        let payload = serde_json::to_string(&Payload { writer, keys, history_purge: false }).unwrap_or_default();
        if payload.len() <= MAX_PAYLOAD_BYTES {
            return payload;
        }
        serde_json::to_string(&Payload { writer, keys: None, history_purge: false }).unwrap_or_default()
    }

    /// The notification other processes receive for a history purge, to be sent in the
    /// purge's transaction (so it arrives once the purge is visible); the purging process
    /// counts its own purge with [`Notifier::history_purged`] once it committed.
    pub fn history_purge_payload(&self) -> String {
        let writer = self.inner.own_writer.load(Ordering::Relaxed);
        let payload = Payload { writer, keys: Some(Vec::new()), history_purge: true };
        serde_json::to_string(&payload).unwrap_or_default()
    }

    /// Counts a history purge this process committed.
    pub fn history_purged(&self) {
        self.inner.history_purges.fetch_add(1, Ordering::Relaxed);
    }

    /// History purges announced since the process started (see `Inner::history_purges`).
    pub fn history_purges(&self) -> u64 {
        self.inner.history_purges.load(Ordering::Relaxed)
    }

    fn receive(&self, payload: &str) {
        let parsed = serde_json::from_str::<Payload>(payload);
        if let Ok(Payload { history_purge: true, writer, .. }) = &parsed
            && *writer != self.inner.own_writer.load(Ordering::Relaxed)
        {
            self.history_purged();
        }
        match parsed {
            Ok(payload) if payload.writer == self.inner.own_writer.load(Ordering::Relaxed) => {}
            Ok(Payload { keys: Some(keys), .. }) => self.wake(&Audience::Keys(keys)),
            Ok(Payload { keys: None, .. }) => self.wake(&Audience::Everyone),
            // A process of another version: waking everyone is always correct.
            Err(_) => self.wake(&Audience::Everyone),
        }
    }

    /// Wakes the waiters a change concerns, and those waiting for the readable position to
    /// move.
    pub fn wake(&self, audience: &Audience) {
        self.wake_sparing(audience, &[]);
    }

    /// [`Notifier::wake`] by a writer that knows its change gave the `spared` outboxes no
    /// work: their workers sleep on (unless they follow the generation, see the module docs).
    pub fn wake_sparing(&self, audience: &Audience, spared: &[OutboxKind]) {
        self.inner.generation.send_modify(|generation| *generation = generation.wrapping_add(1));
        for kind in OutboxKind::ALL.into_iter().filter(|kind| !spared.contains(kind)) {
            self.inner.outbox_generations[kind.index()]
                .send_modify(|generation| *generation = generation.wrapping_add(1));
        }
        let waiters = self.waiters();
        match audience {
            Audience::Everyone => waiters.values().flat_map(HashMap::values).for_each(|notify| notify.notify_one()),
            Audience::Keys(keys) => keys
                .iter()
                .filter_map(|key| waiters.get(key))
                .flat_map(HashMap::values)
                .for_each(|notify| notify.notify_one()),
        }
    }

    /// How many changes were announced so far (the counter [`Notifier::position_changes`]
    /// follows).
    pub fn generation(&self) -> u64 {
        *self.inner.generation.borrow()
    }

    /// Subscribe before sampling the readable position; `changed().await` then returns on
    /// the next change of it (or of anything else).
    pub fn position_changes(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// Subscribe before sampling the readable position; `changed().await` then returns on
    /// the next change that may have given the `kind` outbox work.
    pub fn outbox_changes(&self, kind: OutboxKind) -> watch::Receiver<u64> {
        self.inner.outbox_generations[kind.index()].subscribe()
    }

    /// A waiter with no keys yet: give it its keys with [`Waiter::watch`] before sampling.
    pub fn waiter(&self) -> Waiter {
        let id = self.inner.next_waiter.fetch_add(1, Ordering::Relaxed);
        Waiter { notifier: self.clone(), id, keys: Vec::new(), notify: Arc::new(Notify::new()) }
    }

    /// How many (waiter, key) registrations exist: for tests and metrics.
    pub fn registrations(&self) -> usize {
        self.waiters().values().map(HashMap::len).sum()
    }

    fn waiters(&self) -> MutexGuard<'_, HashMap<String, HashMap<u64, Arc<Notify>>>> {
        self.inner.waiters.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One waiting sync's registration; dropping it unregisters.
pub struct Waiter {
    notifier: Notifier,
    id: u64,
    keys: Vec<String>,
    notify: Arc<Notify>,
}

impl Waiter {
    /// Replaces the keys the waiter is woken for. Keys kept from the previous set stay
    /// registered throughout, so no wake-up for them is lost in the swap.
    pub fn watch(&mut self, mut keys: Vec<String>) {
        keys.sort_unstable();
        keys.dedup();
        if keys == self.keys {
            return;
        }
        let mut waiters = self.notifier.waiters();
        for key in &keys {
            waiters.entry(key.clone()).or_default().insert(self.id, self.notify.clone());
        }
        for old in self.keys.iter().filter(|old| keys.binary_search(old).is_err()) {
            remove(&mut waiters, old, self.id);
        }
        drop(waiters);
        self.keys = keys;
    }

    /// Returns once a change for one of the keys has been announced since the previous
    /// return (at once if one already was).
    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut waiters = self.notifier.waiters();
        for key in &self.keys {
            remove(&mut waiters, key, self.id);
        }
    }
}

fn remove(waiters: &mut HashMap<String, HashMap<u64, Arc<Notify>>>, key: &str, id: u64) {
    if let Some(registered) = waiters.get_mut(key) {
        registered.remove(&id);
        if registered.is_empty() {
            waiters.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline_notifier() -> Notifier {
        let (generation, _) = watch::channel(0u64);
        Notifier {
            inner: Arc::new(Inner {
                generation,
                outbox_generations: [watch::channel(0u64).0, watch::channel(0u64).0],
                waiters: Mutex::new(HashMap::new()),
                next_waiter: AtomicU64::new(1),
                own_writer: AtomicI32::new(7),
                history_purges: AtomicU64::new(0),
            }),
        }
    }

    #[test]
    fn another_process_purge_is_counted_once_and_other_notifications_are_not() {
        let notifier = offline_notifier();
        let purge = notifier.history_purge_payload();
        // Our own purge comes back on the channel; it was counted when it committed.
        notifier.receive(&purge);
        assert_eq!(notifier.history_purges(), 0);
        let theirs = purge.replace("\"w\":7", "\"w\":8");
        assert_ne!(theirs, purge, "the payload names its writer: {purge}");
        notifier.receive(&theirs);
        assert_eq!(notifier.history_purges(), 1);
        notifier.receive(&notifier.payload(&Audience::Keys(keys(&["!room:x"]))).replace("\"w\":7", "\"w\":8"));
        notifier.receive("not json");
        assert_eq!(notifier.history_purges(), 1, "only purges count");
    }

    fn keys(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|key| (*key).to_owned()).collect()
    }

    async fn is_woken(waiter: &Waiter) -> bool {
        tokio::time::timeout(Duration::from_millis(20), waiter.woken()).await.is_ok()
    }

    #[tokio::test]
    async fn only_waiters_of_a_key_are_woken_and_a_wake_before_waiting_is_kept() {
        let notifier = offline_notifier();
        let mut in_room = notifier.waiter();
        in_room.watch(keys(&["!a:x", "@alice:x"]));
        let mut elsewhere = notifier.waiter();
        elsewhere.watch(keys(&["!b:x", "@bob:x"]));

        notifier.wake(&Audience::Keys(keys(&["!a:x"])));
        assert!(is_woken(&in_room).await);
        assert!(!is_woken(&elsewhere).await);
        assert!(!is_woken(&in_room).await, "one wake-up, one return");

        notifier.wake(&Audience::Everyone);
        assert!(is_woken(&in_room).await && is_woken(&elsewhere).await);
    }

    #[tokio::test]
    async fn rewatching_keeps_common_keys_and_dropping_unregisters() {
        let notifier = offline_notifier();
        let mut waiter = notifier.waiter();
        waiter.watch(keys(&["!a:x", "!b:x"]));
        waiter.watch(keys(&["!b:x", "!c:x"]));
        assert_eq!(notifier.registrations(), 2);
        notifier.wake(&Audience::Keys(keys(&["!a:x"])));
        assert!(!is_woken(&waiter).await, "no longer watching !a");
        notifier.wake(&Audience::Keys(keys(&["!c:x"])));
        assert!(is_woken(&waiter).await);
        drop(waiter);
        assert_eq!(notifier.registrations(), 0);
    }

    #[tokio::test]
    async fn notifications_from_other_processes_wake_by_their_keys_and_own_ones_are_skipped() {
        let notifier = offline_notifier();
        let mut waiter = notifier.waiter();
        waiter.watch(keys(&["@alice:x"]));
        notifier.receive(r#"{"w":7,"k":["@alice:x"]}"#);
        assert!(!is_woken(&waiter).await, "our own notification was delivered in process already");
        notifier.receive(r#"{"w":8,"k":["@bob:x"]}"#);
        assert!(!is_woken(&waiter).await);
        notifier.receive(r#"{"w":8,"k":["@alice:x"]}"#);
        assert!(is_woken(&waiter).await);
        notifier.receive("12345");
        assert!(is_woken(&waiter).await, "an unknown payload wakes everyone");
    }

    #[test]
    fn oversized_audiences_become_everyone() {
        let notifier = offline_notifier();
        let many: Vec<String> = (0..1000).map(|i| format!("@user{i}:example.org")).collect();
        let payload: Payload = serde_json::from_str(&notifier.payload(&Audience::Keys(many))).expect("payload");
        assert!(payload.keys.is_none());
        let few = notifier.payload(&Audience::Keys(keys(&["!a:x"])));
        assert_eq!(few, r#"{"w":7,"k":["!a:x"]}"#);
    }
}
