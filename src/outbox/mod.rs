//! Durable outboxes: work written in the database beside the change that caused it (a push
//! notification, an event for another server), delivered by a background worker that resumes
//! where it stood after a restart. Push delivery and the federation sender are both one.
//!
//! The worker ([`OutboxWorker`]) sleeps until the stream notifier announces a change that may
//! have given it work (local commits, except those whose writer knows they gave this outbox
//! none, and other processes' through `LISTEN/NOTIFY`), asks the outbox which of its queues (a
//! pusher, a destination server) got work in the newly readable range, and runs one delivery
//! task per queue — no polling. While positions it saw allocated are not all readable yet, it
//! follows every change of the readable position instead, so that work committed behind a
//! slower writer is delivered when that writer finishes, whatever it wrote. Only positions up to the readable
//! bound are asked about: below it everything has committed, so work committed out of order is
//! never passed over. Each queue is served by one task at a time; across processes the outbox
//! takes a session advisory lock per queue ([`SessionLocks`]).

pub(crate) mod federation;
mod locks;
mod worker;

pub(crate) use locks::SessionLocks;
pub(crate) use worker::OutboxWorker;

use crate::error::Result;
use crate::streams::OutboxKind;
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;
use tokio::sync::watch;

/// How one queue's delivery run ended.
pub(crate) enum Outcome {
    /// Everything up to the bound is handled.
    CaughtUp,
    /// Another process is delivering this queue; try again later (it may die).
    HeldElsewhere,
    /// The queue is gone (a pusher deleted, say).
    Gone,
    /// The worker is stopping.
    Stopped,
    /// A database error; try again later.
    Failed,
}

/// What a worker delivers.
pub(crate) trait Outbox: Send + Sync + 'static {
    /// Names one queue (a pusher, a destination).
    type Queue: Clone + Eq + Hash + Display + Send + Sync + 'static;

    /// For logs.
    const NAME: &'static str;

    /// Which of the notifier's outbox counters announces work for it.
    const KIND: OutboxKind;

    /// The queues with work at positions in `(after, upto]`, or with any work at all up to
    /// `upto` when `after` is `None` (the first look after start-up).
    fn queues_with_work(&self, after: Option<i64>, upto: i64) -> impl Future<Output = Result<Vec<Self::Queue>>> + Send;

    /// Delivers the queue's work up to position `upto` (or further).
    fn deliver(&self, queue: Self::Queue, upto: i64) -> impl Future<Output = Outcome> + Send;

    /// Releases what the outbox holds (its lock connection) once every delivery has ended.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// Capped exponential backoff for a failing queue: doubling from `first` up to `cap`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The interval after `current` failed again.
    pub(crate) fn next(&self, current: Duration) -> Duration {
        if current.is_zero() { self.first } else { (current * 2).clamp(self.first, self.cap) }
    }
}

/// Sleeps; true if told to stop meanwhile.
pub(crate) async fn sleep_or_stop(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = stop.wait_for(|stop| *stop) => true,
    };
    stopped || *stop.borrow()
}
