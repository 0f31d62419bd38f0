//! Server notices: a message from the server to one user, in that user's server-notices room
//! (a private room with the reserved account `@_server_notices`, tagged `m.server_notice` for
//! the user as the spec's "Server Notices" module describes). Created on the first notice.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::rooms::build::EventTemplate;
use crate::rooms::create::{CreateRoom, Preset, create_room};
use crate::rooms::send::append;
use crate::users::account_data::{Change, change};
use ruma::events::MessageLikeEventType;
use ruma::{OwnedEventId, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::json;

/// Registration refuses localparts starting with `_`, so nobody can take this one.
const NOTICES_LOCALPART: &str = "_server_notices";
/// The spec's room tag for server-notices rooms.
const SERVER_NOTICE_TAG: &str = "m.server_notice";

/// Sends `body` (plain text) to `user` as a server notice.
pub(crate) async fn send_notice(
    ctx: RoomCtx<'_>,
    default_version: &RoomVersionId,
    user: &UserId,
    body: &str,
) -> Result<OwnedEventId> {
    let system = notices_account(ctx).await?;
    let room_id = match db::server_notices::room_of(ctx.pool, user.as_str()).await? {
        Some(room_id) => RoomId::parse(&room_id).map_err(|error| Error::internal(error.to_string()))?,
        None => {
            let create = CreateRoom {
                preset: Some(Preset::PrivateChat),
                name: Some("Server Notices".to_owned()),
                invite: vec![user.to_owned()],
                ..CreateRoom::default()
            };
            let room_id = create_room(ctx, default_version, &system, create).await?;
            db::server_notices::record(ctx.pool, user.as_str(), room_id.as_str()).await?;
            let info = json!({});
            change(ctx.pool, ctx.streams, user, Change::SetTag { room: &room_id, tag: SERVER_NOTICE_TAG, info: &info })
                .await?;
            room_id
        }
    };
    let content = json!({"msgtype": "m.text", "body": body});
    append(ctx, &room_id, &system, EventTemplate::message(MessageLikeEventType::RoomMessage, content), None).await
}

/// The reserved account notices come from, created the first time.
async fn notices_account(ctx: RoomCtx<'_>) -> Result<OwnedUserId> {
    let system = UserId::parse(format!("@{NOTICES_LOCALPART}:{}", ctx.server_name))
        .map_err(|error| Error::internal(error.to_string()))?;
    if !db::users::exists(ctx.pool, system.as_str()).await? {
        let mut tx = ctx.pool.begin().await?;
        let created = crate::users::accounts::insert_account(&mut tx, &system, None, false, false).await;
        match created {
            Ok(()) => tx.commit().await?,
            // Another request created it meanwhile.
            Err(_) if db::users::exists(ctx.pool, system.as_str()).await? => {}
            Err(error) => return Err(error),
        }
        let mut tx = ctx.pool.begin().await?;
        crate::users::profile::write_field(&mut tx, &system, "displayname", Some(json!("Server Notices"))).await?;
        tx.commit().await?;
    }
    Ok(system)
}
