//! One WebSocket's life: the start frame, then three parts side by side — the reader answers
//! the client's requests, the producer queues each sync delta as it exists, the writer sends
//! what is queued (and the pings). The queue is bounded: a delta that finds it full means the
//! client fell behind, and it is closed with the token it resumes from.

use super::frames::{self, Request, Start, StartFilter, close};
use super::outbox::{self, Next, Refused};
use super::requests;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::sync::response::SyncResponse;
use crate::sync::serve::SyncFilter;
use crate::sync::stream::{StreamStart, SyncStream};
use crate::users::{ClientInfo, Session, sessions};
use axum::extract::ws::{Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use ruma::presence::PresenceState;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// Who opened the socket, as the upgrade request told.
pub(super) struct Caller {
    /// The token of the upgrade request; `None` when the start frame brings it.
    pub token: Option<String>,
    pub client: ClientInfo,
}

/// The reader's and the producer's way to the writer: the bounded frame queue and the close
/// request (the first one wins; the writer sends what was queued before it).
#[derive(Clone)]
struct Outbox {
    queue: outbox::Outbox,
}

impl Outbox {
    fn close(&self, code: u16, errcode: Option<&str>, resume: Option<&str>) {
        self.queue.close(frames::close_frame(code, errcode, resume));
    }

    /// Queues an error frame and closes: the client reads why, then the close.
    async fn fail(&self, code: u16, error: Error, resume: Option<&str>) {
        let errcode = error.errcode();
        let _ = self.queue.try_send(frames::error(None, error).await);
        self.close(code, Some(&errcode), resume);
    }
}

pub(super) async fn run(socket: WebSocket, state: AppState, caller: Caller) {
    let limits = &state.config.limits;
    let ping_every = Duration::from_secs(limits.ws_ping_interval_secs);
    let (sink, mut incoming) = socket.split();
    let (queue, queued) = outbox::outbox(limits.ws_send_queue);
    let mut writer = tokio::spawn(write(sink, queued, ping_every));
    let outbox = Outbox { queue };
    let started = Box::pin(start(&state, caller, &mut incoming, &outbox)).await;
    if let Some((token, client)) = started {
        read(&state, (&token, &client), &mut incoming, &outbox, &mut writer).await;
    }
    // The client left (or is being closed, and then the first close asked for wins): the
    // writer says goodbye or finds the socket gone, and ends; its queue closing ends the
    // producer, which would otherwise hold the connection until its next delta.
    outbox.close(close::NORMAL, None, None);
    drop(outbox);
    // The writer ends once it sent what the reader and the producer asked for. The reader may
    // have seen it end already, and a spent handle must not be awaited again.
    if !writer.is_finished() {
        let _ = writer.await;
    }
}

/// Reads the start frame, signs the client in and opens its sync stream; on success the
/// producer is running and the token and client are what later requests are checked with.
async fn start(
    state: &AppState,
    caller: Caller,
    incoming: &mut SplitStream<WebSocket>,
    outbox: &Outbox,
) -> Option<(String, ClientInfo)> {
    let wait = Duration::from_secs(state.config.limits.header_timeout_secs);
    let frame = match tokio::time::timeout(wait, next_text(incoming)).await {
        Ok(Some(text)) => text,
        Ok(None) => return None,
        Err(_) => {
            outbox.fail(close::BAD_START, Error::bad_json("No start frame came"), None).await;
            return None;
        }
    };
    let start = match parse_start(&frame) {
        Ok(start) => start,
        Err(error) => {
            outbox.fail(close::BAD_START, error, None).await;
            return None;
        }
    };
    let Caller { token, client } = caller;
    let Some(token) = token.or(start.access_token) else {
        outbox.fail(close::TOKEN, Error::missing_token(), None).await;
        return None;
    };
    let session = match sessions::authenticate(&state.pool, &token, &client).await {
        Ok(session) => session,
        Err(error) => {
            outbox.fail(close::TOKEN, error, None).await;
            return None;
        }
    };
    let filter = match &start.filter {
        None => SyncFilter::Default,
        Some(StartFilter::Id(id)) => SyncFilter::Stored(id),
        Some(StartFilter::Inline(definition)) => SyncFilter::Inline(definition),
    };
    let resume = start.since.clone();
    let stream_start = StreamStart {
        filter,
        since: start.since,
        full_state: start.full_state,
        set_presence: start.set_presence.unwrap_or(PresenceState::Online),
    };
    let stream = match SyncStream::open(&state.pool, &session, stream_start).await {
        Ok(stream) => stream,
        Err(error) => {
            outbox.fail(close::BAD_START, error, resume.as_deref()).await;
            return None;
        }
    };
    let producer = Producer { state: state.clone(), session, token: token.clone(), client: client.clone() };
    tokio::spawn(producer.run(stream, outbox.clone(), resume));
    Some((token, client))
}

fn parse_start(text: &str) -> Result<Start> {
    let frame = frames::parse_json(text)?;
    let start: Start = serde_json::from_value(frame.clone()).map_err(|error| frames::shape_error(error, &frame))?;
    match start.op.as_deref() {
        None | Some("start") => Ok(start),
        Some(_) => Err(Error::bad_json("The first frame starts the sync: {\"since\": ..., \"filter\": ...}")),
    }
}

/// The next text frame; `None` when the client closed or went away first.
async fn next_text(incoming: &mut SplitStream<WebSocket>) -> Option<String> {
    loop {
        match incoming.next().await? {
            Ok(Message::Text(text)) => return Some(text.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The producer: each delta of the client's sync, queued as soon as it exists.
struct Producer {
    state: AppState,
    session: Session,
    token: String,
    client: ClientInfo,
}

impl Producer {
    /// Runs until the client is gone, falls behind, its token stops working or the server
    /// stops; `resume` is the token of the last delta queued (what the client resumes from).
    async fn run(self, mut stream: SyncStream, outbox: Outbox, mut resume: Option<String>) {
        loop {
            let next = tokio::select! {
                next = Box::pin(stream.next_delta(&self.state.pool, &self.state.streams, &self.session)) => next,
                // The connection ended: stop waiting for a delta nobody will read.
                () = outbox.queue.closed() => return,
            };
            // Boxed, as the wait for the delta is: an idle connection keeps only this loop's
            // small state, not a delta's.
            if !Box::pin(self.hand_out(next, &outbox, &mut resume)).await {
                return;
            }
        }
    }

    /// Queues one delta; `false` when the connection is closing.
    async fn hand_out(&self, next: Result<Option<SyncResponse>>, outbox: &Outbox, resume: &mut Option<String>) -> bool {
        let delta = match next {
            Ok(Some(delta)) => delta,
            Ok(None) => {
                outbox.close(close::GOING_AWAY, None, resume.as_deref());
                return false;
            }
            Err(error) => {
                let code = if server_side(&error) { close::INTERNAL } else { close::BAD_START };
                outbox.fail(code, error, resume.as_deref()).await;
                return false;
            }
        };
        // A device signed out while the delta was built is sent nothing more.
        if let Err(error) = sessions::authenticate(&self.state.pool, &self.token, &self.client).await {
            let code = if server_side(&error) { close::INTERNAL } else { close::TOKEN };
            outbox.fail(code, error, resume.as_deref()).await;
            return false;
        }
        let frame = match frames::sync(&delta) {
            Ok(frame) => frame,
            Err(error) => {
                outbox.fail(close::INTERNAL, error, resume.as_deref()).await;
                return false;
            }
        };
        match outbox.queue.try_send(frame) {
            Ok(()) => {
                *resume = Some(delta.next_batch);
                true
            }
            Err(Refused::Full) => {
                outbox.close(close::BEHIND, None, resume.as_deref());
                false
            }
            Err(Refused::Gone) => false,
        }
    }
}

/// The reader: answers each request frame in order until the client closes, goes silent for
/// two ping intervals, or the writer ended the connection.
async fn read(
    state: &AppState,
    (token, client): (&str, &ClientInfo),
    incoming: &mut SplitStream<WebSocket>,
    outbox: &Outbox,
    writer: &mut tokio::task::JoinHandle<()>,
) {
    let silence = Duration::from_secs(state.config.limits.ws_ping_interval_secs) * 2;
    let mut heard = Instant::now();
    loop {
        let frame = tokio::select! {
            frame = incoming.next() => frame,
            () = tokio::time::sleep_until(heard + silence) => return outbox.close(close::SILENT, None, None),
            _ = &mut *writer => return,
        };
        heard = Instant::now();
        // Boxed: an idle connection's reader keeps only this loop's small state.
        let answer = match frame {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Binary(_))) => {
                Box::pin(frames::error(None, Error::not_json("Frames are JSON text"))).await
            }
            Some(Ok(Message::Text(text))) => Box::pin(answer(state, (token, client), &text)).await,
        };
        if outbox.queue.send(answer).await.is_err() {
            return;
        }
    }
}

/// The answer to one text frame: its request's result, or the error frame.
async fn answer(state: &AppState, (token, client): (&str, &ClientInfo), text: &str) -> Message {
    let frame = match frames::parse_json(text) {
        Ok(frame) => frame,
        Err(error) => return frames::error(None, error).await,
    };
    let id = frames::request_id(&frame).map(str::to_owned);
    let Some(id) = id else {
        return frames::error(None, Error::bad_json("A request needs an \"id\": a string of at most 255 bytes")).await;
    };
    let request: Request = match serde_json::from_value(without_id(frame.clone())) {
        Ok(request) => request,
        Err(error) => return frames::error(Some(&id), frames::shape_error(error, &frame)).await,
    };
    // Checked for every request, as every HTTP request is: a signed-out device can do nothing.
    let outcome = match sessions::authenticate(&state.pool, token, client).await {
        Ok(session) => requests::handle(state, &session, &id, request).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(result) => frames::result(&id, result),
        Err(error) => frames::error(Some(&id), error).await,
    }
}

fn without_id(mut frame: Value) -> Value {
    if let Value::Object(map) = &mut frame {
        map.remove("id");
    }
    frame
}

/// The writer: sends each queued frame and a ping every interval; when a close is asked for,
/// sends what was queued before it, then the close. A frame the socket does not take within a
/// ping interval ends the connection (the client is not reading).
async fn write(mut sink: SplitSink<WebSocket, Message>, queued: outbox::Queued, ping_every: Duration) {
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    loop {
        let message = tokio::select! {
            next = queued.next() => match next {
                Next::Frame(message) => message,
                Next::Close(frame) => {
                    send(&mut sink, Message::Close(Some(frame)), ping_every).await;
                    return;
                }
            },
            _ = ping.tick() => Message::Ping(Default::default()),
        };
        if !send(&mut sink, message, ping_every).await {
            return;
        }
    }
}

async fn send(sink: &mut SplitSink<WebSocket, Message>, message: Message, patience: Duration) -> bool {
    matches!(tokio::time::timeout(patience, sink.send(message)).await, Ok(Ok(())))
}

/// A failure of the server's, not of what the client asked: the client resumes as it was.
fn server_side(error: &Error) -> bool {
    matches!(error, Error::Internal(_) | Error::Unavailable(_))
}
