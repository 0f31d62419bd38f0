//! The `presence` section of `/sync`: `m.presence` for the syncing user and everyone sharing
//! a joined room with them, whose presence changed in the window (all of them on an initial
//! sync), and of everyone who came to share a room with them in the window, changed or not;
//! never of users they ignore (blocking holds for presence, issue #21).

use crate::db;
use crate::error::Result;
use crate::store::Store;
use crate::sync::news::PresenceNews;
use crate::sync::response::{Events, SyncBody, SyncEvent};
use crate::sync::types::SyncWindow;
use crate::time::now_ms;
use crate::users::presence::content_of;
use ruma::UserId;
use serde_json::json;
use std::collections::HashSet;

/// Each reading is skipped when the window's news says it can find nothing.
pub(super) async fn section(pool: &Store, user: &UserId, window: SyncWindow, news: PresenceNews) -> Result<SyncBody> {
    let PresenceNews { changed, members_changed } = news;
    let mut body = SyncBody::empty();
    let mut rows = match changed {
        true => db::presence::visible_changes(pool, user.as_str(), window.since, window.upto).await?,
        false => Vec::new(),
    };
    if let Some(since) = window.since.filter(|_| members_changed) {
        let listed: HashSet<String> = rows.iter().map(|row| row.user_id.clone()).collect();
        let newly_shared = db::presence::of_newly_shared(pool, user.as_str(), since, window.upto).await?;
        rows.extend(newly_shared.into_iter().filter(|row| !listed.contains(&row.user_id)));
    }
    if !rows.is_empty() {
        let ignored = crate::users::ignore::ignored_users(pool, user).await?;
        rows.retain(|row| !ignored.contains(&row.user_id));
    }
    if rows.is_empty() {
        return Ok(body);
    }
    let now = now_ms();
    let events = rows
        .into_iter()
        .map(|row| {
            SyncEvent::new(
                &json!({ "type": "m.presence", "sender": row.user_id.clone(), "content": content_of(row, now) }),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    body.presence = Some(Events { events });
    Ok(body)
}
