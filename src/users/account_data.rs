//! Account data: arbitrary JSON a client stores for its user, globally or per room.

use crate::db;
use crate::error::{Error, Result};
use crate::streams::Streams;
use crate::users::Actor;
use ruma::{RoomId, UserId};
use serde_json::Value;
use sqlx::PgPool;

/// Types the server owns: clients change them through their own endpoints (read markers,
/// push rules), never through this one.
const SERVER_CONTROLLED: &[&str] = &["m.fully_read", "m.push_rules"];
const MAX_TYPE_BYTES: usize = 255;

pub(crate) fn check_owner(actor: Actor<'_>, user_id: &UserId) -> Result<()> {
    if !actor.may_act_for(user_id) {
        return Err(Error::forbidden("You cannot access another user's account data"));
    }
    Ok(())
}

pub async fn set(
    pool: &PgPool,
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
    let room = room_id.map_or("", |r| r.as_str());
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
}

/// Makes a change. Account data is delivered by /sync, so a change takes a stream position
/// like an event, and wakes the user's syncs.
pub(crate) async fn change(pool: &PgPool, streams: &Streams, user_id: &UserId, change: Change<'_>) -> Result<()> {
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
    }
    tx.commit().await?;
    reservation.committed_for(vec![user_id.to_string()]).await?;
    Ok(())
}

pub async fn get(
    pool: &PgPool,
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
