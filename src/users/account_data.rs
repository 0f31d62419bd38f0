//! Account data: arbitrary JSON a client stores for its user, globally or per room.

use crate::db;
use crate::error::{Error, Result};
use crate::streams::Streams;
use crate::users::Session;
use http::StatusCode;
use ruma::api::error::ErrorKind;
use ruma::{RoomId, UserId};
use serde_json::Value;
use sqlx::PgPool;

/// Types the server owns: clients change them through their own endpoints (read markers,
/// push rules), never through this one.
const SERVER_CONTROLLED: &[&str] = &["m.fully_read", "m.push_rules"];
const MAX_TYPE_BYTES: usize = 255;

fn check_owner(session: &Session, user_id: &UserId) -> Result<()> {
    if session.user_id != user_id {
        return Err(Error::forbidden("You cannot access another user's account data"));
    }
    Ok(())
}

pub async fn set(
    pool: &PgPool,
    streams: &Streams,
    session: &Session,
    user_id: &UserId,
    room_id: Option<&RoomId>,
    data_type: &str,
    content: &Value,
) -> Result<()> {
    check_owner(session, user_id)?;
    if SERVER_CONTROLLED.contains(&data_type) {
        return Err(Error::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::BadJson,
            format!("{data_type} is controlled by the server and cannot be set through this API"),
        ));
    }
    if data_type.is_empty() || data_type.len() > MAX_TYPE_BYTES {
        return Err(Error::invalid_param(format!("The type must be 1 to {MAX_TYPE_BYTES} bytes")));
    }
    if !content.is_object() {
        return Err(Error::bad_json("Account data content must be a JSON object"));
    }
    // Account data is delivered by /sync, so it takes a stream position like an event.
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let position = reservation.next(&mut tx).await?;
    let room = room_id.map_or("", |r| r.as_str());
    db::account_data::put(&mut *tx, user_id.as_str(), room, data_type, content, position).await?;
    tx.commit().await?;
    reservation.committed_for(vec![user_id.to_string()]).await?;
    Ok(())
}

pub async fn get(
    pool: &PgPool,
    session: &Session,
    user_id: &UserId,
    room_id: Option<&RoomId>,
    data_type: &str,
) -> Result<Value> {
    check_owner(session, user_id)?;
    if room_id.is_none() && data_type == crate::push::rules::PUSH_RULES_TYPE {
        // The stored row only marks changes; the rules are what it stands for (as Synapse).
        return crate::push::rules::account_data_content(pool, user_id).await;
    }
    db::account_data::get(pool, user_id.as_str(), room_id.map_or("", |r| r.as_str()), data_type)
        .await?
        .ok_or_else(|| Error::not_found("Account data not found"))
}
