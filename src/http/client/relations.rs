//! Redactions, relations, threads, event context and `timestamp_to_event`.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::rooms::read::Access;
use crate::rooms::send::Transaction;
use crate::rooms::{context, redact, relations};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::Direction;
use ruma::api::client::context::get_context;
use ruma::api::client::redact::redact_event;
use ruma::api::client::relations::{
    get_relating_events, get_relating_events_with_rel_type, get_relating_events_with_rel_type_and_event_type,
};
use ruma::api::client::room::get_event_by_timestamp;
use ruma::api::client::threads::get_threads;
use ruma::serde::Raw;
use ruma::{OwnedUserId, UInt};
use serde_json::Value;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<redact_event::v3::Request, _, _>(redact)
        .ruma::<get_relating_events::v1::Request, _, _>(relating)
        .ruma::<get_relating_events_with_rel_type::v1::Request, _, _>(relating_with_rel_type)
        .ruma::<get_relating_events_with_rel_type_and_event_type::v1::Request, _, _>(relating_with_rel_and_event_type)
        .ruma::<get_threads::v1::Request, _, _>(threads)
        .ruma_guest::<get_context::v3::Request, _, _>(event_context)
        .ruma::<get_event_by_timestamp::v1::Request, _, _>(timestamp_to_event)
}

fn raw<T>(value: &Value) -> Result<Raw<T>> {
    let json = serde_json::value::to_raw_value(value).map_err(|error| Error::internal(error.to_string()))?;
    Ok(Raw::from_json(json))
}

fn raws<T>(values: &[Value]) -> Result<Vec<Raw<T>>> {
    values.iter().map(raw).collect()
}

fn to_usize(value: UInt) -> usize {
    usize::try_from(u64::from(value)).unwrap_or(usize::MAX)
}

/// `PUT /_matrix/client/*/rooms/{roomId}/redact/{eventId}/{txnId}`:
/// redact an event, stripping all information not critical to the event graph integrity.
async fn redact(
    State(state): State<AppState>,
    request: Authed<redact_event::v3::Request>,
) -> Result<RumaResponse<redact_event::v3::Response>> {
    let body = &request.body;
    state.rate_limits.check_message(&request.session)?;
    let transaction = Transaction { device_id: request.session.device_id.as_str(), txn_id: body.txn_id.as_str() };
    let event_id = redact::redact_event(
        state.rooms(),
        &body.room_id,
        &request.session.user_id,
        &body.event_id,
        body.reason.as_deref(),
        transaction,
    )
    .await?;
    Ok(redact_event::v3::Response::new(event_id).into())
}

/// The three `/relations` endpoints differ only in their filters.
struct RelationsArgs<'a> {
    user: &'a OwnedUserId,
    rel_type: Option<String>,
    event_type: Option<String>,
    from: Option<&'a str>,
    to: Option<&'a str>,
    limit: Option<UInt>,
    dir: Direction,
    recurse: bool,
}

/// One page of `/relations`, whichever of the three paths asked for it.
async fn relations_page(
    state: &AppState,
    room_id: &ruma::RoomId,
    event_id: &ruma::EventId,
    args: RelationsArgs<'_>,
) -> Result<relations::RelationsPage> {
    relations::relations(
        &state.pool,
        args.user,
        relations::RelationsQuery {
            room_id,
            event_id,
            rel_type: args.rel_type.as_deref(),
            event_type: args.event_type.as_deref(),
            from: args.from,
            to: args.to,
            limit: args.limit.map(to_usize),
            backwards: args.dir == Direction::Backward,
            recurse: args.recurse,
        },
    )
    .await
}

/// The three relations endpoints differ only in their ruma types and in which of relation
/// type and event type their path names; one body serves them all.
macro_rules! relations_handler {
    ($name:ident, $endpoint:ident, |$body:ident| ($rel_type:expr, $event_type:expr)) => {
        async fn $name(
            State(state): State<AppState>,
            request: Authed<$endpoint::v1::Request>,
        ) -> Result<RumaResponse<$endpoint::v1::Response>> {
            let $body = &request.body;
            let args = RelationsArgs {
                user: &request.session.user_id,
                rel_type: $rel_type,
                event_type: $event_type,
                from: $body.from.as_deref(),
                to: $body.to.as_deref(),
                limit: $body.limit,
                dir: $body.dir,
                recurse: $body.recurse,
            };
            let page = relations_page(&state, &$body.room_id, &$body.event_id, args).await?;
            let mut response = $endpoint::v1::Response::new(raws(&page.chunk)?);
            response.next_batch = page.next_batch;
            response.prev_batch = page.prev_batch;
            response.recursion_depth = page.recursion_depth.map(UInt::from);
            Ok(response.into())
        }
    };
}

relations_handler!(relating, get_relating_events, |_body| (None, None));
relations_handler!(relating_with_rel_type, get_relating_events_with_rel_type, |body| (
    Some(body.rel_type.to_string()),
    None
));
relations_handler!(relating_with_rel_and_event_type, get_relating_events_with_rel_type_and_event_type, |body| (
    Some(body.rel_type.to_string()),
    Some(body.event_type.to_string())
));

/// `GET /_matrix/client/*/rooms/{roomId}/threads`: retrieve a list of threads in a room, with optional filters.
async fn threads(
    State(state): State<AppState>,
    request: Authed<get_threads::v1::Request>,
) -> Result<RumaResponse<get_threads::v1::Response>> {
    let body = &request.body;
    let participated_only = match body.include.as_str() {
        "all" => false,
        "participated" => true,
        other => return Err(Error::invalid_param(format!("Unknown include value {other:?}"))),
    };
    let (chunk, next_batch) = relations::threads(
        &state.pool,
        &request.session.user_id,
        &body.room_id,
        participated_only,
        body.from.as_deref(),
        body.limit.map(to_usize),
    )
    .await?;
    let mut response = get_threads::v1::Response::new(raws(&chunk)?);
    response.next_batch = next_batch;
    Ok(response.into())
}

/// `GET /_matrix/client/*/rooms/{roomId}/context/{eventId}`:
/// get the events immediately preceding and following a given event.
async fn event_context(
    State(state): State<AppState>,
    request: Authed<get_context::v3::Request>,
) -> Result<RumaResponse<get_context::v3::Response>> {
    let body = &request.body;
    let session = &request.session;
    let lazy = crate::rooms::filter::EventFilter::from_ruma(&body.filter).lazy_load_members;
    let shape = (to_usize(body.limit), lazy);
    let mut found =
        context::context(&state.pool, (&session.user_id, Access::Member), &body.room_id, &body.event_id, shape).await?;
    let events = found.events_before.iter_mut().chain([&mut found.event]).chain(found.events_after.iter_mut());
    crate::rooms::transaction_ids::annotate(&state.pool, &session.user_id, &session.device_id, events).await?;
    let mut response = get_context::v3::Response::new();
    response.start = Some(found.start);
    response.end = Some(found.end);
    response.events_before = raws(&found.events_before)?;
    response.event = Some(raw(&found.event)?);
    response.events_after = raws(&found.events_after)?;
    response.state = raws(&found.state)?;
    Ok(response.into())
}

/// `GET /_matrix/client/*/rooms/{roomId}/timestamp_to_event`: get the ID of the event closest to the given timestamp.
async fn timestamp_to_event(
    State(state): State<AppState>,
    request: Authed<get_event_by_timestamp::v1::Request>,
) -> Result<RumaResponse<get_event_by_timestamp::v1::Response>> {
    let body = &request.body;
    let (event_id, origin_server_ts) = context::timestamp_to_event(
        &state.pool,
        &request.session.user_id,
        &body.room_id,
        body.ts,
        body.dir == Direction::Forward,
    )
    .await?;
    Ok(get_event_by_timestamp::v1::Response::new(event_id, origin_server_ts).into())
}
