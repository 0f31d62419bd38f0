//! `GET /sync`.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaRouter};
use crate::rooms::filter::EventFilter;
use crate::server::AppState;
use crate::sync::build::SyncOptions;
use crate::sync::long_poll::{SyncRequest, sync};
use crate::sync::sections::SectionFilters;
use axum::extract::State;
use axum::{Json, Router};
use ruma::api::client::filter::FilterDefinition;
use ruma::api::client::sync::sync_events::v3 as sync_events;
use serde_json::Value;
use std::time::Duration;

/// Events per room timeline when the filter names no limit (Synapse's default).
const DEFAULT_TIMELINE_LIMIT: usize = 10;

pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma_guest::<sync_events::Request, _, _>(sync_handler)
}

async fn sync_handler(State(state): State<AppState>, request: Authed<sync_events::Request>) -> Result<Json<Value>> {
    let body = &request.body;
    let definition = match &body.filter {
        None => FilterDefinition::default(),
        Some(sync_events::Filter::FilterDefinition(definition)) => definition.clone(),
        Some(sync_events::Filter::FilterId(id)) => {
            let stored = crate::users::filters::get(&state.pool, &request.session, &request.session.user_id, id)
                .await
                .map_err(|_| Error::invalid_param(format!("Unknown filter {id:?}")))?;
            serde_json::from_value(stored).map_err(|e| Error::internal(format!("stored filter is malformed: {e}")))?
        }
        Some(_) => return Err(Error::invalid_param("Unsupported filter")),
    };
    let room_filter = &definition.room;
    let mut timeline =
        EventFilter::from_ruma(&room_filter.timeline).with_rooms(room_filter.rooms.as_deref(), &room_filter.not_rooms);
    // The spec puts lazy loading on the state filter.
    let state_filter = EventFilter::from_ruma(&room_filter.state);
    timeline.lazy_load_members |= state_filter.lazy_load_members;
    timeline.include_redundant_members |= state_filter.include_redundant_members;
    let timeline_limit = room_filter
        .timeline
        .limit
        .map(|limit| usize::try_from(u64::from(limit)).unwrap_or(usize::MAX))
        .unwrap_or(DEFAULT_TIMELINE_LIMIT)
        .clamp(1, 1000);
    let sync_request = SyncRequest {
        since: body.since.as_deref(),
        timeout: body.timeout.unwrap_or(Duration::ZERO),
        full_state: body.full_state,
        options: SyncOptions {
            full_state: body.full_state,
            timeline,
            timeline_limit,
            unread_thread_notifications: room_filter.timeline.unread_thread_notifications,
        },
        device: Some(&request.session.device_id),
        sections: SectionFilters::from_definition(&definition),
    };
    crate::users::presence::on_sync(&state.pool, &state.streams, &request.session.user_id, &body.set_presence).await?;
    let response = sync(&state.pool, &state.streams, &request.session.user_id, sync_request).await?;
    Ok(Json(response))
}
