//! Starting a broadcast: one message to one list, recorded with a pending row per recipient
//! in one transaction, then delivered in the background (`delivery`).

use super::lists::owned_list;
use crate::db;
use crate::db::broadcast::{Broadcast, NewBroadcast};
use crate::error::{Error, Result};
use crate::rooms::send::Transaction;
use crate::store::Store;
use ruma::UserId;
use serde_json::Value;

/// Starts a broadcast of `content` (an `m.room.message` content) to the list's members, once
/// per client transaction: a retransmission answers the broadcast the first one started,
/// whatever its body says (as `/send`).
pub(crate) async fn start(
    pool: &Store,
    creator: &UserId,
    transaction: Transaction<'_>,
    list_id: &str,
    content: Value,
) -> Result<Broadcast> {
    let (device_id, txn_id) = (transaction.device_id, transaction.txn_id);
    if let Some(started) = db::broadcast::by_transaction(pool, creator.as_str(), device_id, txn_id).await? {
        return Ok(started);
    }
    owned_list(pool, creator, list_id).await?;
    check_content(&content)?;
    let broadcast_id = format!("bc_{}", uuid::Uuid::new_v4().simple());
    let mut tx = pool.begin().await?;
    let new = NewBroadcast {
        broadcast_id: &broadcast_id,
        creator: creator.as_str(),
        device_id,
        txn_id,
        list_id,
        content: &content,
        now: crate::time::now_ms(),
    };
    // Racing retransmissions: one inserts, the other finds its row below.
    db::broadcast::insert_broadcast(&mut tx, new).await?;
    tx.commit().await?;
    db::broadcast::by_transaction(pool, creator.as_str(), device_id, txn_id)
        .await?
        .ok_or_else(|| Error::internal("a recorded broadcast cannot be read back"))
}

/// A broadcast is a message: `msgtype` and `body` strings, as `m.room.message` requires.
fn check_content(content: &Value) -> Result<()> {
    if !content.is_object() {
        return Err(Error::bad_json("The message must be a JSON object"));
    }
    for field in ["msgtype", "body"] {
        if !content[field].is_string() {
            return Err(Error::bad_json(format!("The message needs a string `{field}`")));
        }
    }
    Ok(())
}

/// Where a broadcast stands, for its creator.
pub(crate) struct Progress {
    pub broadcast: Broadcast,
    pub sent: i64,
    pub skipped: i64,
    pub failed: i64,
    pub pending: i64,
}

/// The progress of one of `creator`'s broadcasts (another's is unknown to them).
pub(crate) async fn progress(pool: &Store, creator: &UserId, broadcast_id: &str) -> Result<Progress> {
    let broadcast = db::broadcast::broadcast(pool, broadcast_id)
        .await?
        .filter(|broadcast| broadcast.creator == creator.as_str())
        .ok_or_else(|| Error::not_found("You have no such broadcast"))?;
    let settled = |count: i32| i64::from(count.max(0));
    let (sent, skipped, failed) = (settled(broadcast.sent), settled(broadcast.skipped), settled(broadcast.failed));
    let pending = (settled(broadcast.total) - sent - skipped - failed).max(0);
    Ok(Progress { broadcast, sent, skipped, failed, pending })
}
