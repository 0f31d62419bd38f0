//! A creator's named broadcast lists. Only those who can be reached may be added: members who
//! subscribed to the creator or share a room with them — no unsolicited bulk messages.

use super::require_creator;
use super::subscriptions::page_end;
use crate::db;
use crate::db::broadcast::ListSummary;
use crate::error::{Error, Result};
use crate::store::Store;
use ruma::{OwnedUserId, ServerName, UserId};

/// Longest list name, in characters.
const MAX_NAME_CHARS: usize = 100;
/// Most users one request may add: a larger list is built over several requests.
pub(crate) const MAX_ADD: usize = 1000;

fn check_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::invalid_param(format!("A list's name must be 1 to {MAX_NAME_CHARS} characters")));
    }
    Ok(name)
}

/// Creates a list named `name`; its id.
pub(crate) async fn create(pool: &Store, creator: &UserId, name: &str) -> Result<String> {
    require_creator(pool, creator).await?;
    let name = check_name(name)?;
    let list_id = format!("bl_{}", uuid::Uuid::new_v4().simple());
    if !db::broadcast::create_list(pool, &list_id, creator.as_str(), name, crate::time::now_ms()).await? {
        return Err(Error::Conflict(format!("You have a list named {name:?} already")));
    }
    Ok(list_id)
}

pub(crate) async fn all(pool: &Store, creator: &UserId) -> Result<Vec<ListSummary>> {
    require_creator(pool, creator).await?;
    Ok(db::broadcast::lists(pool, creator.as_str()).await?)
}

pub(crate) async fn rename(pool: &Store, creator: &UserId, list_id: &str, name: &str) -> Result<()> {
    require_creator(pool, creator).await?;
    let name = check_name(name)?;
    match db::broadcast::rename_list(pool, creator.as_str(), list_id, name).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(no_such_list()),
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
            Err(Error::Conflict(format!("You have a list named {name:?} already")))
        }
        Err(error) => Err(error.into()),
    }
}

/// Deletes a list; broadcasts already sent to it go on (they copied its members).
pub(crate) async fn delete(pool: &Store, creator: &UserId, list_id: &str) -> Result<()> {
    require_creator(pool, creator).await?;
    if !db::broadcast::delete_list(pool, creator.as_str(), list_id).await? {
        return Err(no_such_list());
    }
    Ok(())
}

/// Adds users to a list, all or none: every one must be an active user of this server who
/// subscribed to the creator or shares a room with them, or a user of another server who
/// shares a room with them. The number newly added.
pub(crate) async fn add(
    pool: &Store,
    server_name: &ServerName,
    creator: &UserId,
    list_id: &str,
    users: &[OwnedUserId],
) -> Result<u64> {
    owned_list(pool, creator, list_id).await?;
    if users.len() > MAX_ADD {
        return Err(Error::invalid_param(format!("At most {MAX_ADD} users can be added at once")));
    }
    let mut wanted: Vec<String> = users.iter().map(ToString::to_string).collect();
    wanted.sort();
    wanted.dedup();
    let reachable = super::reachable(pool, server_name, creator, &wanted).await?;
    if reachable.len() < wanted.len() {
        let refused: Vec<&str> =
            wanted.iter().filter(|user| !reachable.contains(*user)).map(String::as_str).take(10).collect();
        return Err(Error::forbidden(format!(
            "{} of these users have not subscribed to you and share no room with you (or have no active \
             account), so none was added: {}",
            wanted.len() - reachable.len(),
            refused.join(", ")
        )));
    }
    Ok(db::broadcast::add_members(pool, list_id, &wanted, crate::time::now_ms()).await?)
}

pub(crate) async fn remove(pool: &Store, creator: &UserId, list_id: &str, user: &UserId) -> Result<()> {
    owned_list(pool, creator, list_id).await?;
    if !db::broadcast::remove_member(pool, list_id, user.as_str()).await? {
        return Err(Error::not_found(format!("{user} is not on this list")));
    }
    Ok(())
}

/// One page of a list's members, after `from` (a previous page's `next_batch`).
pub(crate) async fn members(
    pool: &Store,
    creator: &UserId,
    list_id: &str,
    from: Option<&str>,
    limit: i64,
) -> Result<(Vec<String>, Option<String>)> {
    owned_list(pool, creator, list_id).await?;
    let limit = limit.clamp(1, 1000);
    let mut chunk = db::broadcast::members(pool, list_id, from.unwrap_or(""), limit + 1).await?;
    let next = page_end(&mut chunk, limit, Clone::clone);
    Ok((chunk, next))
}

/// Refuses non-creators, and lists of other creators as unknown.
pub(super) async fn owned_list(pool: &Store, creator: &UserId, list_id: &str) -> Result<()> {
    require_creator(pool, creator).await?;
    if !db::broadcast::owns_list(pool, creator.as_str(), list_id).await? {
        return Err(no_such_list());
    }
    Ok(())
}

fn no_such_list() -> Error {
    Error::not_found("You have no such broadcast list")
}
