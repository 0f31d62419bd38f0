//! Opting in to a creator's broadcasts: `subscribe` and `unsubscribe` are the member's own
//! calls, so a creator can only reach those who asked (or who share a room with them).

use super::require_creator;
use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use ruma::UserId;

/// Subscribes `member` to `creator`'s broadcasts (again: nothing changes).
pub(crate) async fn subscribe(pool: &Store, member: &UserId, creator: &UserId) -> Result<()> {
    if member == creator {
        return Err(Error::invalid_param("You cannot subscribe to yourself"));
    }
    if !super::super::flag::is_creator(pool, creator).await? {
        return Err(Error::not_found(format!("{creator} is not a creator of this server")));
    }
    db::broadcast::subscribe(pool, creator.as_str(), member.as_str(), crate::time::now_ms()).await?;
    Ok(())
}

/// Ends the subscription, if any. Lists keep the member, but a broadcast skips them unless
/// they share a room with the creator (see `delivery`).
pub(crate) async fn unsubscribe(pool: &Store, member: &UserId, creator: &UserId) -> Result<()> {
    db::broadcast::unsubscribe(pool, creator.as_str(), member.as_str()).await?;
    Ok(())
}

/// One page of a creator's subscribers.
pub(crate) struct Subscribers {
    /// `(user_id, since_ts)`, by user id.
    pub chunk: Vec<(String, i64)>,
    pub next_batch: Option<String>,
    pub total: i64,
}

/// `creator`'s subscribers after `from` (a previous page's last user id).
pub(crate) async fn subscribers(pool: &Store, creator: &UserId, from: Option<&str>, limit: i64) -> Result<Subscribers> {
    require_creator(pool, creator).await?;
    let limit = limit.clamp(1, 1000);
    let mut chunk = db::broadcast::subscribers(pool, creator.as_str(), from.unwrap_or(""), limit + 1).await?;
    let next_batch = page_end(&mut chunk, limit, |(user, _)| user.clone());
    let total = db::broadcast::subscriber_count(pool, creator.as_str()).await?;
    Ok(Subscribers { chunk, next_batch, total })
}

/// Cuts a page fetched with one row more than `limit`; the token of the next page, if any.
pub(super) fn page_end<T>(rows: &mut Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last().map(key)
}
