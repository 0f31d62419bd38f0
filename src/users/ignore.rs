//! Ignoring users (`m.ignored_user_list`): one reading of the account data shared by `/sync`,
//! `/messages` and `/context`, so every path hides the same events. The list is read on each
//! request rather than cached, which makes a change effective on the very next request.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::Streams;
use crate::users::account_data::{Change, change};
use ruma::UserId;
use serde_json::Value;
use std::collections::HashSet;

/// The account data type holding the list (spec: "Ignoring Users").
pub(crate) const IGNORED_USER_LIST: &str = "m.ignored_user_list";

/// Users whose events and invites `user` does not want. Malformed content ignores nobody:
/// the list is the client's own data, and a broken list must not hide anything by accident.
pub(crate) async fn ignored_users(pool: &Store, user: &UserId) -> Result<HashSet<String>> {
    let content = db::account_data::get(pool, user.as_str(), "", IGNORED_USER_LIST).await?;
    Ok(ignored_in(content.as_ref()))
}

/// The users an `m.ignored_user_list` content names (none without one).
pub(crate) fn ignored_in(content: Option<&Value>) -> HashSet<String> {
    content
        .and_then(|content| content["ignored_users"].as_object())
        .map(|users| users.keys().cloned().collect())
        .unwrap_or_default()
}

/// Blocks `other` for `user` (`on`), or lifts the block: one change of `user`'s ignore list,
/// made in place so that concurrent blocks of different users all stay. What an ignore hides
/// (their events, typing, receipts, presence) and refuses (their invites, tips, profile
/// lookups of `user`) follows from the list.
pub(crate) async fn set_blocked(
    pool: &Store,
    streams: &Streams,
    user: &UserId,
    other: &UserId,
    on: bool,
) -> Result<()> {
    if user == other {
        return Err(Error::invalid_param("You cannot block yourself"));
    }
    change(pool, streams, user, Change::Ignore { other, on }).await
}
