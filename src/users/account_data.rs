//! Account data: arbitrary JSON a client stores for its user, globally or per room.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::Streams;
use crate::users::Actor;
use ruma::{RoomId, UserId};
use serde_json::Value;

/// Types the server owns: clients change them through their own endpoints (read markers,
/// push rules), never through this one.
const SERVER_CONTROLLED: &[&str] = &["m.fully_read", "m.push_rules"];
const MAX_TYPE_BYTES: usize = 255;
/// The largest entry, as JSON text: far above what clients store (a large `m.direct` is tens
/// of KiB), far below what would make every initial sync of the user heavy.
pub(crate) const MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// All of a user's account data together (global and per room), as JSON text; every initial
/// sync carries all of it.
pub(crate) const MAX_TOTAL_BYTES: i64 = 8 * 1024 * 1024;

pub(crate) fn check_owner(actor: Actor<'_>, user_id: &UserId) -> Result<()> {
    if !actor.may_act_for(user_id) {
        return Err(Error::forbidden("You cannot access another user's account data"));
    }
    Ok(())
}

pub(crate) async fn set(
    pool: &Store,
    streams: &Streams,
    actor: Actor<'_>,
    user_id: &UserId,
    room_id: Option<&RoomId>,
    data_type: &str,
    content: &Value,
) -> Result<()> {
    check_owner(actor, user_id)?;
    if SERVER_CONTROLLED.contains(&data_type) {
        return Err(Error::ServerControlled(format!(
            "{data_type} is controlled by the server and cannot be set through this API"
        )));
    }
    if data_type.is_empty() || data_type.len() > MAX_TYPE_BYTES {
        return Err(Error::invalid_param(format!("The type must be 1 to {MAX_TYPE_BYTES} bytes")));
    }
    if !content.is_object() {
        return Err(Error::bad_json("Account data content must be a JSON object"));
    }
    let size = content.to_string().len();
    if size > MAX_ENTRY_BYTES {
        return Err(Error::too_large(format!("Account data may be at most {MAX_ENTRY_BYTES} bytes per entry")));
    }
    let room = room_id.map_or("", |r| r.as_str());
    // Concurrent writes of one user may each pass this check before the others commit, so the
    // total may overshoot by what they write at once; it stays bounded.
    let others = db::account_data::total_bytes_except(pool, user_id.as_str(), room, data_type).await?;
    if others.saturating_add(i64::try_from(size).unwrap_or(i64::MAX)) > MAX_TOTAL_BYTES {
        return Err(Error::too_large(format!("A user's account data may be at most {MAX_TOTAL_BYTES} bytes in all")));
    }
    change(pool, streams, user_id, Change::Put { room, data_type, content }).await
}

/// One change of a user's account data.
pub(crate) enum Change<'a> {
    /// Replaces the content of a type (`room` is `""` for global account data).
    Put { room: &'a str, data_type: &'a str, content: &'a Value },
    /// Sets one tag in the room's `m.tag`.
    SetTag { room: &'a RoomId, tag: &'a str, info: &'a Value },
    /// Removes one tag from the room's `m.tag`.
    RemoveTag { room: &'a RoomId, tag: &'a str },
    /// Adds a user to `m.ignored_user_list` (`on`), or removes them.
    Ignore { other: &'a UserId, on: bool },
    /// Adds rooms to `m.direct` (`{user_id: [room_id, ...]}`), the other entries kept.
    AddDirectRooms { additions: &'a Value },
}

/// Makes a change. Account data is delivered by /sync, so a change takes a stream position
/// like an event, and wakes the user's syncs.
pub(crate) async fn change(pool: &Store, streams: &Streams, user_id: &UserId, change: Change<'_>) -> Result<()> {
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let position = reservation.next(&mut tx).await?;
    let user = user_id.as_str();
    match change {
        Change::Put { room, data_type, content } => {
            db::account_data::put(&mut *tx, user, room, data_type, content, position).await?;
        }
        Change::SetTag { room, tag, info } => {
            db::account_data::set_tag(&mut *tx, user, room.as_str(), tag, info, position).await?;
        }
        Change::RemoveTag { room, tag } => {
            db::account_data::remove_tag(&mut *tx, user, room.as_str(), tag, position).await?;
        }
        Change::Ignore { other, on } => {
            let at = db::account_data::ObjectMember {
                user_id: user,
                room_id: "",
                data_type: crate::users::ignore::IGNORED_USER_LIST,
                field: "ignored_users",
                member: other.as_str(),
            };
            match on {
                true => db::account_data::set_member(&mut *tx, at, &serde_json::json!({}), position).await?,
                false => db::account_data::remove_member(&mut *tx, at, position).await.map(drop)?,
            }
        }
        Change::AddDirectRooms { additions } => {
            db::account_data::add_direct_rooms(&mut *tx, user, additions, position).await?;
        }
    }
    tx.commit().await?;
    reservation.committed_for(vec![user_id.to_string()]).await?;
    Ok(())
}

pub(crate) async fn get(
    pool: &Store,
    actor: Actor<'_>,
    user_id: &UserId,
    room_id: Option<&RoomId>,
    data_type: &str,
) -> Result<Value> {
    check_owner(actor, user_id)?;
    if room_id.is_none() && data_type == crate::push::rules::PUSH_RULES_TYPE {
        // The stored row only marks changes; the rules are what it stands for (as Synapse).
        return crate::push::rules::account_data_content(pool, user_id).await;
    }
    db::account_data::get(pool, user_id.as_str(), room_id.map_or("", |r| r.as_str()), data_type)
        .await?
        .ok_or_else(|| Error::not_found("Account data not found"))
}
