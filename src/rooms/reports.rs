//! Reporting events, rooms and users to the server's administrators.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::read;
use crate::store::Store;
use crate::time::now_ms;
use ruma::{RoomId, UserId};

const MAX_REASON_BYTES: usize = 1000;

fn check_reason(reason: Option<&str>) -> Result<()> {
    if reason.is_some_and(|reason| reason.len() > MAX_REASON_BYTES) {
        return Err(Error::invalid_param(format!("A reason may be at most {MAX_REASON_BYTES} bytes")));
    }
    Ok(())
}

/// `POST /rooms/{roomId}/report/{eventId}`: only events the reporter can see; otherwise 404,
/// so reports cannot probe for hidden events.
pub(crate) async fn report_event(
    pool: &Store,
    reporter: &UserId,
    room_id: &RoomId,
    event_id: &str,
    reason: Option<&str>,
    score: Option<i32>,
) -> Result<()> {
    check_reason(reason)?;
    if score.is_some_and(|score| !(-100..=0).contains(&score)) {
        return Err(Error::invalid_param("score must be between -100 and 0"));
    }
    // An event the reporter may not see is reported as missing (not 403), so that reports
    // cannot probe for hidden events.
    match read::event(pool, reporter, room_id, event_id).await {
        Ok(_) => {}
        Err(Error::Matrix { kind: ruma::api::error::ErrorKind::Forbidden, .. }) => {
            return Err(Error::not_found("Event not found"));
        }
        Err(error) => return Err(error),
    }
    insert(pool, reporter, Some(room_id.as_str()), Some(event_id), None, reason, score).await
}

/// `POST /rooms/{roomId}/report`.
pub(crate) async fn report_room(pool: &Store, reporter: &UserId, room_id: &RoomId, reason: Option<&str>) -> Result<()> {
    check_reason(reason)?;
    if db::rooms::version(pool, room_id.as_str()).await?.is_none() {
        return Err(Error::not_found("Unknown room"));
    }
    insert(pool, reporter, Some(room_id.as_str()), None, None, reason, None).await
}

/// `POST /users/{userId}/report`.
pub(crate) async fn report_user(pool: &Store, reporter: &UserId, user_id: &UserId, reason: Option<&str>) -> Result<()> {
    check_reason(reason)?;
    if !db::users::exists(pool, user_id.as_str()).await? {
        return Err(Error::not_found("Unknown user"));
    }
    insert(pool, reporter, None, None, Some(user_id.as_str()), reason, None).await
}

async fn insert(
    pool: &Store,
    reporter: &UserId,
    room_id: Option<&str>,
    event_id: Option<&str>,
    reported_user: Option<&str>,
    reason: Option<&str>,
    score: Option<i32>,
) -> Result<()> {
    let report = db::reports::NewReport {
        reporter: reporter.as_str(),
        room_id,
        event_id,
        reported_user,
        reason,
        score,
        now_ms: now_ms(),
    };
    let id = db::reports::insert(pool, &report).await?;
    tracing::info!(report_id = id, %reporter, "content reported");
    Ok(())
}
