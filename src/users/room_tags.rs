//! Room tags (spec: "Room Tagging"): a user's labels for a room (`m.favourite`,
//! `m.lowpriority`, `u.*`...), kept as the room's `m.tag` account data, `{"tags": {tag: info}}`,
//! so `/sync` delivers them as it delivers all account data.

use crate::db;
use crate::error::Result;
use crate::store::Store;
use crate::streams::Streams;
use crate::users::Actor;
use crate::users::account_data::{Change, change, check_owner};
use ruma::events::tag::{TagInfo, TagName, Tags};
use ruma::{RoomId, UserId};
use serde_json::Value;

const TAG_DATA_TYPE: &str = "m.tag";

/// The user's tags of the room; entries that are not valid tag info (written as raw account
/// data by some client) are left out.
pub(crate) async fn tags(pool: &Store, actor: Actor<'_>, user_id: &UserId, room_id: &RoomId) -> Result<Tags> {
    check_owner(actor, user_id)?;
    let content = db::account_data::get(pool, user_id.as_str(), room_id.as_str(), TAG_DATA_TYPE).await?;
    let mut tags = Tags::new();
    if let Some(Value::Object(stored)) = content.and_then(|mut content| content.get_mut("tags").map(Value::take)) {
        for (name, info) in stored {
            if let Ok(info) = serde_json::from_value::<TagInfo>(info) {
                tags.insert(TagName::from(name.as_str()), info);
            }
        }
    }
    Ok(tags)
}

pub(crate) async fn set_tag(
    pool: &Store,
    streams: &Streams,
    actor: Actor<'_>,
    (user_id, room_id): (&UserId, &RoomId),
    tag: &str,
    info: &TagInfo,
) -> Result<()> {
    check_owner(actor, user_id)?;
    let info = serde_json::to_value(info).map_err(|e| crate::Error::internal(e.to_string()))?;
    change(pool, streams, user_id, Change::SetTag { room: room_id, tag, info: &info }).await
}

pub(crate) async fn remove_tag(
    pool: &Store,
    streams: &Streams,
    actor: Actor<'_>,
    (user_id, room_id): (&UserId, &RoomId),
    tag: &str,
) -> Result<()> {
    check_owner(actor, user_id)?;
    change(pool, streams, user_id, Change::RemoveTag { room: room_id, tag }).await
}
