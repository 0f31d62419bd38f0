//! What a WebSocket's reader and producer hand its writer: a bounded queue of frames and the
//! close to send after them (the first close asked for wins).
//!
//! Two tokio channels did this before, and they were the largest part of an idle connection
//! after the sync's own state: each channel allocates a block of 32 slots and a cache-padded
//! header up front (3.9 KB per connection, measured with heaptrack on 2,000 idle sockets).
//! A queue that is empty while the client is idle needs none of that: an empty `VecDeque`
//! allocates nothing.

use axum::extract::ws::{CloseFrame, Message};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;

/// The sending side, shared by the reader and the producer.
#[derive(Clone)]
pub(super) struct Outbox {
    shared: Arc<Shared>,
}

/// The writer's side: dropping it tells the senders that nobody will send their frames.
pub(super) struct Queued {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// A frame or the close was queued.
    for_writer: Notify,
    /// A frame left the queue, or the writer ended.
    for_senders: Notify,
}

struct State {
    frames: VecDeque<Message>,
    close: Option<CloseFrame>,
    writer_gone: bool,
}

/// Why a frame was not queued.
pub(super) enum Refused {
    /// The queue holds `capacity` frames: the client is not reading fast enough.
    Full,
    /// The writer ended: the connection is gone.
    Gone,
}

/// What the writer has to do next.
pub(super) enum Next {
    Frame(Message),
    /// Every frame queued before the close was taken: send it, then end.
    Close(CloseFrame),
}

/// An outbox holding at most `capacity` frames.
pub(super) fn outbox(capacity: usize) -> (Outbox, Queued) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { frames: VecDeque::new(), close: None, writer_gone: false }),
        capacity: capacity.max(1),
        for_writer: Notify::new(),
        for_senders: Notify::new(),
    });
    (Outbox { shared: Arc::clone(&shared) }, Queued { shared })
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Outbox {
    /// Queues `frame` if there is room.
    pub(super) fn try_send(&self, frame: Message) -> Result<(), Refused> {
        self.push(frame).map_err(|(refused, _)| refused)
    }

    /// Queues `frame` once there is room; `Err` when the writer ended first.
    pub(super) async fn send(&self, mut frame: Message) -> Result<(), Refused> {
        loop {
            // Registered before the look, so a frame leaving in between is not missed.
            let room = self.shared.for_senders.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.push(frame) {
                Ok(()) => return Ok(()),
                Err((Refused::Full, refused)) => frame = refused,
                Err((Refused::Gone, _)) => return Err(Refused::Gone),
            }
            room.await;
        }
    }

    /// Queues `frame`, or hands it back with the reason it was refused.
    fn push(&self, frame: Message) -> Result<(), (Refused, Message)> {
        let mut state = self.shared.state();
        if state.writer_gone {
            return Err((Refused::Gone, frame));
        }
        if state.frames.len() >= self.shared.capacity {
            return Err((Refused::Full, frame));
        }
        state.frames.push_back(frame);
        drop(state);
        self.shared.for_writer.notify_one();
        Ok(())
    }

    /// Asks the writer to close after the frames queued so far; a close asked for earlier wins.
    pub(super) fn close(&self, frame: CloseFrame) {
        let mut state = self.shared.state();
        if state.close.is_none() {
            state.close = Some(frame);
        }
        drop(state);
        self.shared.for_writer.notify_one();
    }

    /// Returns once the writer has ended.
    pub(super) async fn closed(&self) {
        loop {
            let gone = self.shared.for_senders.notified();
            tokio::pin!(gone);
            gone.as_mut().enable();
            if self.shared.state().writer_gone {
                return;
            }
            gone.await;
        }
    }
}

impl Queued {
    /// The next frame to send, or the close once every frame before it was taken.
    pub(super) async fn next(&self) -> Next {
        loop {
            let queued = self.shared.for_writer.notified();
            tokio::pin!(queued);
            queued.as_mut().enable();
            if let Some(next) = self.take() {
                return next;
            }
            queued.await;
        }
    }

    fn take(&self) -> Option<Next> {
        let mut state = self.shared.state();
        if let Some(frame) = state.frames.pop_front() {
            if state.frames.is_empty() {
                // A burst is over: give its slots back rather than keep them while idle.
                state.frames.shrink_to_fit();
            }
            drop(state);
            self.shared.for_senders.notify_waiters();
            return Some(Next::Frame(frame));
        }
        state.close.take().map(Next::Close)
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.shared.state().writer_gone = true;
        self.shared.for_senders.notify_waiters();
    }
}
