//! `POST /_synapse/admin/v1/purge_history/{roomId}[/{eventId}]`: deleting a room's old
//! timeline events to reclaim space, in the background, with its progress in `history_purges`
//! for `GET /v1/purge_history_status/{purgeId}`. What is kept is decided in
//! [`db::room_purge::purge_history`]: state, forward extremities, redactions, and local users'
//! events unless `delete_local_events`.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::Notifier;
use crate::time::now_ms;
use crate::users::actor::Actor;
use crate::users::tokens;
use ruma::{RoomId, ServerName};
use serde::Deserialize;

/// Synapse's request body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PurgeHistoryRequest {
    #[serde(default)]
    pub delete_local_events: bool,
    pub purge_up_to_event_id: Option<String>,
    pub purge_up_to_ts: Option<i64>,
}

/// What a scheduled purge will do: the room, the position events are deleted before, and
/// whether local users' events go too.
pub(crate) struct HistoryPurgeTask {
    pub purge_id: String,
    pub room_id: String,
    pub before_position: i64,
    pub delete_local_events: bool,
}

/// Checks the request (the room and the point to purge up to: an event of the room, given in
/// the path or the body, or a timestamp) and records the purge as active.
pub(crate) async fn schedule(
    pool: &Store,
    room_id: &RoomId,
    path_event_id: Option<&str>,
    request: &PurgeHistoryRequest,
    actor: Actor<'_>,
) -> Result<HistoryPurgeTask> {
    if db::rooms::version(pool, room_id.as_str()).await?.is_none() {
        return Err(Error::not_found("Room not found"));
    }
    let before_position = match (path_event_id.or(request.purge_up_to_event_id.as_deref()), request.purge_up_to_ts) {
        (Some(event_id), _) => db::room_purge::timeline_position(pool, room_id.as_str(), event_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("Event {event_id} not found in room {room_id}")))?,
        (None, Some(ts)) => db::room_purge::first_position_since(pool, room_id.as_str(), ts).await?.unwrap_or(i64::MAX),
        (None, None) => return Err(Error::unknown("must specify purge_up_to_event_id or purge_up_to_ts")),
    };
    let purge_id = tokens::random_alphanumeric(16);
    let kind = db::admin_rooms::RoomTask::HistoryPurge;
    db::admin_rooms::insert_task(pool, kind, &purge_id, room_id.as_str(), &actor.describe(), now_ms()).await?;
    Ok(HistoryPurgeTask {
        purge_id,
        room_id: room_id.to_string(),
        before_position,
        delete_local_events: request.delete_local_events,
    })
}

/// Runs a scheduled purge in one transaction and records how it ended.
/// Other processes learn of it with the commit (through the stream's notifications), so that
/// none keeps serving what it removed from what it cached.
pub(crate) async fn run(pool: &Store, notifier: &Notifier, server_name: &ServerName, task: HistoryPurgeTask) {
    let keep_from = (!task.delete_local_events).then(|| server_name.as_str());
    let purged = async {
        let mut tx = pool.begin().await?;
        let events = db::room_purge::purge_history(&mut tx, &task.room_id, task.before_position, keep_from).await?;
        db::streams::notify(&mut *tx, &notifier.history_purge_payload()).await?;
        tx.commit().await?;
        Ok::<u64, sqlx::Error>(events)
    }
    .await;
    let recorded = match purged {
        Ok(events) => {
            notifier.history_purged();
            tracing::info!(room_id = task.room_id, purge_id = task.purge_id, events, "purged a room's history");
            db::room_purge::set_history_purge_status(pool, &task.purge_id, "complete", None).await
        }
        Err(error) => {
            tracing::warn!(room_id = task.room_id, purge_id = task.purge_id, %error, "a history purge failed");
            db::room_purge::set_history_purge_status(pool, &task.purge_id, "failed", Some(&error.to_string())).await
        }
    };
    if let Err(error) = recorded {
        tracing::error!(purge_id = task.purge_id, %error, "could not record how a history purge ended");
    }
}

/// `GET /v1/purge_history_status/{purgeId}`: `active`, `complete` or `failed` (with the error).
pub(crate) async fn status(pool: &Store, purge_id: &str) -> Result<db::room_purge::HistoryPurge> {
    db::room_purge::history_purge(pool, purge_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("purge id '{purge_id}' not found")))
}
