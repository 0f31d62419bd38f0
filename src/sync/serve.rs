//! A client's `/sync` request as the domain sees it: the filter it names resolved into what
//! the builder and the sections need, the presence the request sets, then the long-poll. The
//! transports (the `/sync` handler, the WebSocket) only translate to and from this.

use crate::error::{Error, Result};
use crate::rooms::filter::EventFilter;
use crate::store::Store;
use crate::streams::Streams;
use crate::sync::long_poll::{SyncAnswer, SyncRequest, sync};
use crate::sync::sections::SectionFilters;
use crate::sync::types::{DEFAULT_TIMELINE_LIMIT, SyncOptions};
use crate::users::Session;
use quick_cache::sync::Cache;
use ruma::api::client::filter::FilterDefinition;
use ruma::presence::PresenceState;
use std::sync::Arc;
use std::time::Duration;

/// The most events a room's timeline may ask for at once.
const MAX_TIMELINE_LIMIT: usize = 1000;

/// The filter a sync names: none, one given inline, or one uploaded earlier.
pub(crate) enum SyncFilter<'a> {
    Default,
    Inline(&'a FilterDefinition),
    Stored(&'a str),
}

pub(crate) struct SyncParams<'a> {
    pub filter: SyncFilter<'a>,
    pub since: Option<&'a str>,
    pub timeout: Duration,
    pub full_state: bool,
    pub set_presence: &'a PresenceState,
}

/// Answers one `/sync` of `session`'s device.
pub(crate) async fn serve(
    pool: &Store,
    streams: &Streams,
    session: &Session,
    params: SyncParams<'_>,
) -> Result<SyncAnswer> {
    // Boxed, as the steps of `sync` are: the long-poll's wait keeps only what it needs. The
    // filter's definition is only read into the prepared filter, so it is not kept through
    // the wait.
    let prepared = Box::pin(prepare_filter(pool, session, params.filter)).await?;
    let look = Look { since: params.since, timeout: params.timeout, full_state: params.full_state };
    serve_prepared(pool, streams, session, &prepared, look, params.set_presence).await
}

/// What a filter definition resolves to for the builder and the sections, prepared once: a
/// transport that syncs many times with one filter (the WebSocket) keeps this, which is
/// smaller than the definition, and each sync borrows it.
pub(crate) struct PreparedFilter {
    options: SyncOptions,
    sections: SectionFilters,
}

impl PreparedFilter {
    pub(crate) fn new(definition: &FilterDefinition, session: &Session) -> PreparedFilter {
        PreparedFilter {
            options: SyncOptions { device: Some(session.device_id.clone()), ..sync_options(definition, false) },
            sections: SectionFilters::from_definition(definition),
        }
    }
}

/// Where one sync starts and how long it may wait.
pub(crate) struct Look<'a> {
    pub since: Option<&'a str>,
    pub timeout: Duration,
    pub full_state: bool,
}

/// [`serve`] with the filter prepared already.
pub(crate) async fn serve_prepared(
    pool: &Store,
    streams: &Streams,
    session: &Session,
    prepared: &PreparedFilter,
    look: Look<'_>,
    set_presence: &PresenceState,
) -> Result<SyncAnswer> {
    // A full-state sync is rare (a client's first, or a repair): its options are a copy,
    // boxed so that every other sync's wait does not carry room for one.
    let full_state_options =
        look.full_state.then(|| Box::new(SyncOptions { full_state: true, ..prepared.options.clone() }));
    let options = full_state_options.as_deref().unwrap_or(&prepared.options);
    let request = SyncRequest {
        since: look.since,
        timeout: look.timeout,
        full_state: look.full_state,
        options,
        device: Some(&session.device_id),
        sections: &prepared.sections,
    };
    Box::pin(crate::users::presence::on_sync(pool, streams, &session.user_id, set_presence)).await?;
    sync(pool, streams, &session.user_id, request).await
}

/// The sync's filter prepared. A transport that syncs many times with one filter prepares it
/// once (an unknown filter id is refused before the first sync).
pub(crate) async fn prepare_filter(pool: &Store, session: &Session, filter: SyncFilter<'_>) -> Result<PreparedFilter> {
    // An inline filter is read where it is, not copied first (every request of a client that
    // sends its filter inline carries it).
    match filter {
        SyncFilter::Default => Ok(PreparedFilter::new(&FilterDefinition::default(), session)),
        SyncFilter::Inline(definition) => Ok(PreparedFilter::new(definition, session)),
        SyncFilter::Stored(id) => Ok(PreparedFilter::new(&*stored_filter(pool, session, id).await?, session)),
    }
}

/// The definition of the user's uploaded filter `id`, from the process's cache or read.
async fn stored_filter(pool: &Store, session: &Session, id: &str) -> Result<Arc<FilterDefinition>> {
    let filters = pool.cache::<StoredFilters>();
    let key = (session.user_id.as_str().to_owned(), id.to_owned());
    if let Some(known) = filters.0.get(&key) {
        return Ok(known);
    }
    let stored = crate::users::filters::get(pool, session, &session.user_id, id)
        .await
        .map_err(|_| Error::invalid_param(format!("Unknown filter {id:?}")))?;
    let definition: Arc<FilterDefinition> = Arc::new(
        serde_json::from_value(stored).map_err(|e| Error::internal(format!("stored filter is malformed: {e}")))?,
    );
    filters.0.insert(key, definition.clone());
    Ok(definition)
}

/// Stored filters as read, by owner and id. Clients such as Element name an uploaded filter
/// in every `/sync`, and each used to read and parse it again. A stored filter never changes:
/// the spec has no way to edit or delete one, and accounts are never deleted, so what any
/// process read stays true everywhere and needs no invalidation. Only filters found are kept.
struct StoredFilters(Cache<(String, String), Arc<FilterDefinition>>);

impl Default for StoredFilters {
    fn default() -> StoredFilters {
        StoredFilters(Cache::new(10_000))
    }
}

/// What the filter asks of the rooms' timelines and state.
fn sync_options(definition: &FilterDefinition, full_state: bool) -> SyncOptions {
    let room_filter = &definition.room;
    let mut timeline =
        EventFilter::from_ruma(&room_filter.timeline).with_rooms(room_filter.rooms.as_deref(), &room_filter.not_rooms);
    // The spec puts lazy loading on the state filter; the builder reads it from the timeline's.
    let state_filter = EventFilter::from_ruma(&room_filter.state);
    timeline.lazy_load_members |= state_filter.lazy_load_members;
    timeline.include_redundant_members |= state_filter.include_redundant_members;
    let timeline_limit = room_filter
        .timeline
        .limit
        .map(|limit| usize::try_from(u64::from(limit)).unwrap_or(usize::MAX))
        .unwrap_or(DEFAULT_TIMELINE_LIMIT)
        .clamp(1, MAX_TIMELINE_LIMIT);
    SyncOptions {
        full_state,
        timeline,
        timeline_limit,
        unread_thread_notifications: room_filter.timeline.unread_thread_notifications,
        include_leave: room_filter.include_leave,
        device: None,
    }
}
