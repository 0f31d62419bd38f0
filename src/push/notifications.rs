//! `GET /notifications` (spec: "Listing Notifications"): the events that notified the user,
//! newest first, with whether they have read each, paged by stream position.

use crate::db;
use crate::db::push_actions::NotificationRow;
use crate::db::unread::ReadPositions;
use crate::error::{Error, Result};
use crate::store::Store;
use ruma::UserId;
use std::collections::HashMap;

/// Notifications per page unless the client asks otherwise, and at most.
const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 1000;

/// One notification: its row and whether the user's read receipts cover it.
pub(crate) struct Notification {
    pub row: NotificationRow,
    pub read: bool,
}

pub(crate) struct Page {
    pub notifications: Vec<Notification>,
    /// The `from` of the next page; `None` when this is the last.
    pub next_token: Option<String>,
}

/// The page of the user's notifications before `from` (a previous page's `next_token`).
pub(crate) async fn page(
    pool: &Store,
    user: &UserId,
    from: Option<&str>,
    limit: Option<u64>,
    only: Option<&str>,
) -> Result<Page> {
    let before = match from {
        Some(token) => Some(token.parse::<i64>().map_err(|_| Error::invalid_param("Invalid 'from' token"))?),
        None => None,
    };
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let only_highlight = only == Some("highlight");
    // One more than asked: whether it exists says whether there is a next page.
    let mut rows = db::push_actions::page(
        pool,
        user.as_str(),
        before,
        only_highlight,
        i64::try_from(limit + 1).unwrap_or(i64::MAX),
    )
    .await?;
    let next_token = match rows.len() as u64 > limit {
        true => {
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            rows.last().map(|row| row.stream_position.to_string())
        }
        false => None,
    };
    let mut rooms: Vec<String> = rows.iter().map(|row| row.room_id.clone()).collect();
    rooms.sort_unstable();
    rooms.dedup();
    let positions = match rooms.is_empty() {
        true => HashMap::new(),
        false => db::unread::read_positions_in(pool, &rooms, user.as_str()).await?,
    };
    let notifications = rows
        .into_iter()
        .map(|row| {
            // A room the user has left has no read positions any more: count it read.
            let read = positions
                .get(&row.room_id)
                .is_none_or(|positions| row.stream_position <= read_up_to(positions, &row.thread_id));
            Notification { row, read }
        })
        .collect();
    Ok(Page { notifications, next_token })
}

/// The position up to which the user has read a thread ([`MAIN_TIMELINE`] for the main one):
/// their unthreaded receipt covers every thread, a threaded one only its own thread (spec:
/// "Threaded read receipts"); with neither, what came before they joined.
pub(crate) fn read_up_to(positions: &ReadPositions, thread_id: &str) -> i64 {
    positions
        .receipts
        .iter()
        .filter(|(receipt_thread, _)| receipt_thread.is_empty() || receipt_thread == thread_id)
        .map(|(_, position)| *position)
        .max()
        .unwrap_or(positions.joined)
}
