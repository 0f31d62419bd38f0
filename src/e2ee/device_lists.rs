//! Device-list changes (spec: "Tracking the device list for a user"): a user whose devices
//! or keys change gets a row at a stream position, so that everyone sharing a room with them
//! learns of it in `/sync` (`device_lists`) or `/keys/changes`, exactly once per change.

use crate::db;
use crate::e2ee::types::DeviceListChanges;
use crate::error::Result;
use crate::store::Store;
use crate::streams::Streams;
use ruma::{OwnedUserId, UserId};
use sqlx::PgConnection;

/// Records that `user`'s device list changed, at `position` (taken in the same transaction).
pub(crate) async fn record(conn: &mut PgConnection, user: &str, position: i64) -> Result<()> {
    db::e2ee_device_lists::record_change(conn, user, position).await?;
    Ok(())
}

/// A remote user's devices or cross-signing keys changed, as their server said
/// (`m.device_list_update`, `m.signing_key_update`): local users sharing a room with them
/// learn of it through `/sync` and `/keys/changes` like of a local user's change.
pub(crate) async fn receive_remote_change(pool: &Store, streams: &Streams, user: &UserId) -> Result<()> {
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let position = reservation.next(&mut tx).await?;
    record(&mut tx, user.as_str(), position).await?;
    let audience = audience(&mut tx, &[user.to_string()]).await?;
    tx.commit().await?;
    reservation.committed_for(audience).await?;
    Ok(())
}

/// The wake-up keys of a device-list change of `users` (see `streams::notifier`): their own
/// syncs and those of everyone in their rooms.
pub(crate) async fn audience(conn: &mut PgConnection, users: &[String]) -> Result<Vec<String>> {
    Ok(db::e2ee_device_lists::audience(conn, users).await?)
}

/// Whose device lists `user` should refresh after the window `(since, upto]` (`changed`),
/// and whom they no longer share a room with (`left`).
pub(crate) async fn between(pool: &Store, user: &str, since: i64, upto: i64) -> Result<DeviceListChanges> {
    Ok(DeviceListChanges {
        changed: parse(db::e2ee_device_lists::changed(pool, user, since, upto).await?),
        left: parse(db::e2ee_device_lists::left(pool, user, since, upto).await?),
    })
}

fn parse(users: Vec<String>) -> Vec<OwnedUserId> {
    users.into_iter().filter_map(|user| OwnedUserId::try_from(user).ok()).collect()
}
