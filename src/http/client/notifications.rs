//! `GET /notifications` (spec: "Listing Notifications").

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use ruma::api::client::push::get_notifications::v3::{Notification, Request, Response};
use ruma::push::Action;
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, RoomId, UInt};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma::<Request, _, _>(notifications)
}

/// `GET /_matrix/client/v3/notifications`: the user's past notifications, newest first, paged.
async fn notifications(State(state): State<AppState>, request: Authed<Request>) -> Result<RumaResponse<Response>> {
    let body = request.body;
    let user = &request.session.user_id;
    let limit = body.limit.map(u64::from);
    let page =
        crate::push::notifications::page(&state.pool, user, body.from.as_deref(), limit, body.only.as_deref()).await?;
    let nids: Vec<i64> = page.notifications.iter().map(|n| n.row.event_nid).collect();
    let mut events = crate::rooms::read::client_events_by_nid(&state.pool, &nids).await?;
    let mut notifications = Vec::with_capacity(page.notifications.len());
    for notification in page.notifications {
        let row = notification.row;
        let Some(event) = events.remove(&row.event_nid) else { continue };
        let event = serde_json::value::to_raw_value(&event).map_err(|e| Error::internal(e.to_string()))?;
        let actions: Vec<Action> = serde_json::from_value(row.actions).unwrap_or_default();
        let room_id = RoomId::parse(&row.room_id).map_err(|e| Error::internal(format!("stored room id: {e}")))?;
        let ts = MilliSecondsSinceUnixEpoch(UInt::try_from(row.ts.max(0)).unwrap_or_default());
        notifications.push(Notification::new(actions, Raw::from_json(event), notification.read, room_id, ts));
    }
    let mut response = Response::new(notifications);
    response.next_token = page.next_token;
    Ok(response.into())
}
