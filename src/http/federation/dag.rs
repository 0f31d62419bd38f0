//! Serving the room DAG to other servers: thin over `federation::inbound::serve`.

use crate::error::{Error, Result};
use crate::federation::inbound::serve;
use crate::http::federation::auth::Federated;
use crate::http::ruma::{RumaResponse, RumaRouter};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::Direction;
use ruma::api::federation::authorization::get_event_authorization::v1 as event_auth;
use ruma::api::federation::backfill::get_backfill::v1 as backfill;
use ruma::api::federation::event::get_event::v1 as event;
use ruma::api::federation::event::get_event_by_timestamp::v1 as by_timestamp;
use ruma::api::federation::event::get_missing_events::v1 as missing;
use ruma::api::federation::event::get_room_state::v1 as state;
use ruma::api::federation::event::get_room_state_ids::v1 as state_ids;
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, UInt};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<event::Request, _, _>(get_event)
        .ruma::<state::Request, _, _>(get_state)
        .ruma::<state_ids::Request, _, _>(get_state_ids)
        .ruma::<event_auth::Request, _, _>(get_event_auth)
        .ruma::<backfill::Request, _, _>(get_backfill)
        .ruma::<missing::Request, _, _>(get_missing_events)
        .ruma::<by_timestamp::Request, _, _>(timestamp_to_event)
}

/// `GET /_matrix/federation/v1/event/{eventId}`: one event the asking server may see.
async fn get_event(
    State(app): State<AppState>,
    request: Federated<event::Request>,
) -> Result<RumaResponse<event::Response>> {
    let pdu = serve::event(&app.pool, &request.origin, request.body.event_id.as_str()).await?;
    Ok(RumaResponse(event::Response::new(app.server_name.clone(), MilliSecondsSinceUnixEpoch::now(), pdu)))
}

/// `GET /_matrix/federation/v1/state/{roomId}`: the state and auth chain at an event.
async fn get_state(
    State(app): State<AppState>,
    request: Federated<state::Request>,
) -> Result<RumaResponse<state::Response>> {
    let body = &request.body;
    let (pdus, auth_chain) = serve::state(&app.pool, &request.origin, &body.room_id, body.event_id.as_str()).await?;
    Ok(RumaResponse(state::Response::new(auth_chain, pdus)))
}

/// `GET /_matrix/federation/v1/state_ids/{roomId}`: the same as event ids.
async fn get_state_ids(
    State(app): State<AppState>,
    request: Federated<state_ids::Request>,
) -> Result<RumaResponse<state_ids::Response>> {
    let body = &request.body;
    let at = serve::state_ids(&app.pool, &request.origin, &body.room_id, body.event_id.as_str()).await?;
    Ok(RumaResponse(state_ids::Response::new(event_ids(at.auth_chain)?, event_ids(at.state)?)))
}

/// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`: an event's auth chain.
async fn get_event_auth(
    State(app): State<AppState>,
    request: Federated<event_auth::Request>,
) -> Result<RumaResponse<event_auth::Response>> {
    let body = &request.body;
    let chain = serve::event_auth(&app.pool, &request.origin, &body.room_id, body.event_id.as_str()).await?;
    Ok(RumaResponse(event_auth::Response::new(chain)))
}

/// `GET /_matrix/federation/v1/backfill/{roomId}`: earlier events, newest first.
async fn get_backfill(
    State(app): State<AppState>,
    request: Federated<backfill::Request>,
) -> Result<RumaResponse<backfill::Response>> {
    let body = &request.body;
    let from: Vec<String> = body.v.iter().map(ToString::to_string).collect();
    let pdus = serve::backfill(&app.pool, &request.origin, &body.room_id, &from, count(body.limit)).await?;
    Ok(RumaResponse(backfill::Response::new(app.server_name.clone(), MilliSecondsSinceUnixEpoch::now(), pdus)))
}

/// `POST /_matrix/federation/v1/get_missing_events/{roomId}`: the gap before some events.
async fn get_missing_events(
    State(app): State<AppState>,
    request: Federated<missing::Request>,
) -> Result<RumaResponse<missing::Response>> {
    let body = &request.body;
    let earliest: Vec<String> = body.earliest_events.iter().map(ToString::to_string).collect();
    let latest: Vec<String> = body.latest_events.iter().map(ToString::to_string).collect();
    let min_depth = i64::try_from(u64::from(body.min_depth)).unwrap_or(i64::MAX);
    let events = serve::missing_events(
        &app.pool,
        &request.origin,
        &body.room_id,
        &earliest,
        &latest,
        count(body.limit),
        min_depth,
    )
    .await?;
    Ok(RumaResponse(missing::Response::new(events)))
}

/// `GET /_matrix/federation/v1/timestamp_to_event/{roomId}`: the event nearest a time.
async fn timestamp_to_event(
    State(app): State<AppState>,
    request: Federated<by_timestamp::Request>,
) -> Result<RumaResponse<by_timestamp::Response>> {
    let body = &request.body;
    let ts = i64::from(body.ts.get());
    let forwards = body.dir == Direction::Forward;
    let (event_id, found_ts) =
        serve::timestamp_to_event(&app.pool, &request.origin, &body.room_id, ts, forwards).await?;
    let found_ts = UInt::try_from(found_ts.max(0)).map_err(|e| Error::internal(e.to_string()))?;
    Ok(RumaResponse(by_timestamp::Response::new(
        EventId::parse(&event_id).map_err(|e| Error::internal(format!("stored event id: {e}")))?,
        MilliSecondsSinceUnixEpoch(found_ts),
    )))
}

fn count(limit: UInt) -> usize {
    usize::try_from(u64::from(limit)).unwrap_or(usize::MAX)
}

fn event_ids(ids: Vec<String>) -> Result<Vec<OwnedEventId>> {
    ids.into_iter()
        .map(|id| EventId::parse(&id).map_err(|e| Error::internal(format!("stored event id: {e}"))))
        .collect()
}
