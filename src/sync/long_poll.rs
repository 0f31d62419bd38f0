//! Serving `/sync`: pick the window of stream positions, build the response, and when there
//! is nothing new, wait for a wake-up (never poll) until the client's timeout.
//!
//! The wait itself is `sync::wait`, shared with sliding sync.

use crate::db::sync::MembershipRow;
use crate::error::{Error, Result};
use crate::rooms::known_memberships::MembershipCache;
use crate::store::Store;
use crate::streams::Streams;
use crate::streams::token;
use crate::sync::build::build_rooms;
use crate::sync::initial_cache::{CacheAt, InitialSyncCache};
use crate::sync::news::News;
use crate::sync::response::{KeyCounts, SyncBody, SyncResponse};
use crate::sync::sections::SectionFilters;
use crate::sync::to_device::AwaitingAcknowledgement;
use crate::sync::types::{SyncOptions, SyncWindow};
use crate::sync::wait::{ChangeWatch, Sample};
use ruma::{DeviceId, UserId};
use std::time::Duration;
use tokio::time::Instant;

/// Longest a request may wait, whatever the client asks (Synapse does not cap; a proxy
/// timeout usually does — this keeps connections from living forever).
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) struct SyncRequest<'a> {
    pub since: Option<&'a str>,
    pub timeout: Duration,
    pub full_state: bool,
    pub options: &'a SyncOptions,
    /// The requesting device, whose to-device queue the sync delivers and acknowledges.
    pub device: Option<&'a DeviceId>,
    /// The filter's conditions on the other sections (account data, presence, room state,
    /// ephemeral and account data).
    pub sections: &'a SectionFilters,
}

/// A sync's answer: the response body, with `next_batch`, and whether it holds anything the
/// client did not have (an empty one is what a timed-out long-poll answers; a transport that
/// pushes deltas skips it).
pub(crate) struct SyncAnswer {
    pub response: SyncResponse,
    pub has_news: bool,
}

pub(crate) async fn sync(
    pool: &Store,
    streams: &Streams,
    user: &UserId,
    request: SyncRequest<'_>,
) -> Result<SyncAnswer> {
    // A history page's token may point into backfilled history (negative positions); as a
    // `since` it means "nothing live delivered yet", and backfilled events are never news.
    let since = request.since.map(token::decode).transpose()?.map(|position| position.max(0));
    let deadline = Instant::now() + request.timeout.min(MAX_TIMEOUT);
    let mut change = ChangeWatch::new(streams);
    loop {
        // The steps that run between waits are boxed: a future is as large as its largest
        // step, and a sync spends most of its life waiting, when only this loop's small state
        // needs to be kept (measured with thousands of idle syncs and WebSockets).
        // Counted before anything is read: entries cached before a purge this sync reads past
        // must not be served (see `initial_cache`).
        let history_purges = streams.notifier.history_purges();
        // An incremental sync takes the memberships this process knows (the window's news
        // checks them); an initial one reads them, as it reads everything, and never waits.
        let sample = match since {
            Some(_) => Box::pin(change.sample_known(pool, user)).await?,
            None => Box::pin(change.sample_answered_at_once(pool, user)).await?,
        };
        let upto = sample.upto;
        if since.is_some_and(|since| since > upto) {
            return Err(Error::invalid_param("This sync token was not issued by this server"));
        }
        let window = SyncWindow { since, upto };
        // Boxed, and all it reads and builds kept inside it: a sync spends most of its life in
        // the wait below, whose state holds only this loop's values; a value kept in this
        // loop's body (the news, the body) would take room in it through every wait.
        let look = Look { window, memberships: &sample.memberships, history_purges };
        let looked = match nothing_to_look_at(pool, user, &request, &sample, window) {
            true => Looked::Nothing,
            false => Box::pin(look_once(pool, streams, user, &request, &sample, look, deadline)).await?,
        };
        match looked {
            Looked::Answer(answer) => return Ok(*answer),
            Looked::MembershipsMoved => {
                // The known memberships were out of date: look again with them read afresh.
                pool.cache::<MembershipCache>().forget(user);
                continue;
            }
            Looked::Nothing => {}
        }
        // A stopping server answers at once, as if the timeout had passed: the client resumes
        // from the same token against whichever server answers it next.
        if !change.wait_for_change(sample, deadline).await {
            // Timed out with nothing new: the same window, answered empty (with key counts
            // read now: those of the last look may be as old as the timeout).
            return Box::pin(answer(pool, user, &request, SyncBody::empty(), upto, None)).await;
        }
    }
}

/// Whether a look at `window` could only find nothing: the client already has everything up
/// to its end (`since` is the readable position), the memberships that aim the wait are known
/// good through it, and no to-device message this process sent awaits the acknowledgement
/// this sync brings. Every section is a window of positions, so an empty window holds
/// nothing; skipping the look spares the database a statement and the process a build for
/// every long-poll a client sends right after its answer (half the syncs of a fan-out).
fn nothing_to_look_at(
    pool: &Store,
    user: &UserId,
    request: &SyncRequest<'_>,
    sample: &Sample,
    window: SyncWindow,
) -> bool {
    let Some(since) = window.since.filter(|since| *since == window.upto) else { return false };
    if request.full_state || sample.memberships_through.is_some_and(|through| through < window.upto) {
        return false;
    }
    request.device.is_none_or(|device| !pool.cache::<AwaitingAcknowledgement>().awaits(user, device, since))
}

/// What one look at the stream found.
enum Looked {
    /// The answer to send now.
    Answer(Box<SyncAnswer>),
    /// The known memberships were out of date: this look may have missed rooms.
    MembershipsMoved,
    /// Nothing new yet: wait for a change.
    Nothing,
}

/// One look at the window: its news, then (when the memberships held) the body, and the answer
/// when there is one to send now.
async fn look_once(
    pool: &Store,
    streams: &Streams,
    user: &UserId,
    request: &SyncRequest<'_>,
    sample: &Sample,
    look: Look<'_>,
    deadline: Instant,
) -> Result<Looked> {
    let window = look.window;
    // Asked before a build slot is taken: the syncs a wake-up readies ask together, in one
    // statement, and only then build one by one.
    let news = news_of(pool, user, request, sample, window).await?;
    if news.memberships_moved() {
        return Ok(Looked::MembershipsMoved);
    }
    let permit = streams.sync_builds.acquire().await.map_err(|_| Error::internal("the server is stopping"))?;
    let (body, key_counts) = build_window(pool, user, request, look, &news).await?;
    drop(permit);
    drop(news);
    let answer_now = !body.is_empty() || window.since.is_none() || request.full_state || Instant::now() >= deadline;
    if !answer_now {
        return Ok(Looked::Nothing);
    }
    let answer = answer(pool, user, request, body, window.upto, key_counts).await?;
    Ok(Looked::Answer(Box::new(answer)))
}

/// The response: the body through the filter's section conditions, the device's key counts
/// (which every response carries: as the look's news read them, or read now) and the token of
/// the next window.
async fn answer(
    pool: &Store,
    user: &UserId,
    request: &SyncRequest<'_>,
    mut body: SyncBody,
    upto: i64,
    key_counts: Option<KeyCounts>,
) -> Result<SyncAnswer> {
    let has_news = !body.is_empty();
    request.sections.apply(&mut body);
    if let Some(device) = request.device {
        body.key_counts = Some(match key_counts {
            Some(known) => known,
            None => crate::sync::device_lists::key_counts(pool, user, device).await?,
        });
    }
    Ok(SyncAnswer { response: SyncResponse { body, next_batch: token::encode(upto) }, has_news })
}

/// The window's news for the user: what the builder reads, and whether the memberships the
/// sample took from this process's cache moved. When they did not, the cache learns they are
/// good through the window's end.
async fn news_of(
    pool: &Store,
    user: &UserId,
    request: &SyncRequest<'_>,
    sample: &Sample,
    window: SyncWindow,
) -> Result<News> {
    let known = (sample.memberships.as_slice(), sample.memberships_through);
    let news = News::checking(pool, (user, request.device), known, window, request.sections.wanted()).await?;
    if let Some(through) = sample.memberships_through.filter(|_| window.since.is_some() && !news.memberships_moved()) {
        pool.cache::<MembershipCache>().confirm(user, through, window.upto);
    }
    Ok(news)
}

/// The response body for one window: the rooms and the per-user sections, which are
/// independent and built side by side — those the window's news says can hold anything. With
/// it, the device's key counts when the news read them.
async fn build_window(
    pool: &Store,
    user: &UserId,
    request: &SyncRequest<'_>,
    look: Look<'_>,
    news: &News,
) -> Result<(SyncBody, Option<KeyCounts>)> {
    let Look { window, memberships, history_purges } = look;
    let initial_syncs = pool.cache::<InitialSyncCache>();
    let cache = CacheAt { cache: &initial_syncs, history_purges };
    // The device's key counts go with every answer: when the news did not read them and the
    // look answers whatever it finds (an initial or full-state sync), they are read beside the
    // rooms rather than after them.
    let known_counts = request.device.and(news.key_counts()).map(crate::sync::device_lists::key_counts_of);
    let counts_now = match request.device {
        Some(device) if known_counts.is_none() && (window.since.is_none() || request.full_state) => Some(device),
        _ => None,
    };
    let read_counts = async {
        match counts_now {
            Some(device) => crate::sync::device_lists::key_counts(pool, user, device).await.map(Some),
            None => Ok(known_counts),
        }
    };
    let (mut body, to_device, presence, device_lists, key_counts) = tokio::try_join!(
        build_rooms(pool, user, window, (request.options, request.sections), memberships, (news, Some(cache))),
        only_if(news.to_device(), crate::sync::to_device::section(pool, user, request.device, window)),
        only_if(news.presence().any(), crate::sync::presence::section(pool, user, window, news.presence())),
        only_if(news.device_lists(), crate::sync::device_lists::section(pool, user, window)),
        read_counts,
    )?;
    for section in [to_device, presence, device_lists] {
        body.merge(section);
    }
    Ok((body, key_counts))
}

/// What one look at the stream reads: the window, the user's memberships and the history
/// purges announced before either was read.
struct Look<'a> {
    window: SyncWindow,
    memberships: &'a [MembershipRow],
    history_purges: u64,
}

/// The section when the window's news says it can hold anything; else an empty one, unread.
async fn only_if(has_news: bool, section: impl Future<Output = Result<SyncBody>>) -> Result<SyncBody> {
    match has_news {
        true => section.await,
        false => Ok(SyncBody::empty()),
    }
}
