//! The `presence` section of `/sync`: `m.presence` for the syncing user and everyone sharing
//! a joined room with them, whose presence changed in the window (all of them on an initial
//! sync).

use crate::db;
use crate::error::Result;
use crate::sync::types::{SyncBody, SyncWindow};
use crate::time::now_ms;
use crate::users::presence::content_of;
use ruma::UserId;
use serde_json::{Value, json};
use sqlx::PgPool;

pub async fn section(pool: &PgPool, user: &UserId, window: SyncWindow) -> Result<SyncBody> {
    let mut body = SyncBody::empty();
    let rows = db::presence::visible_changes(pool, user.as_str(), window.since, window.upto).await?;
    if rows.is_empty() {
        return Ok(body);
    }
    let now = now_ms();
    let events: Vec<Value> = rows
        .into_iter()
        .map(|row| json!({ "type": "m.presence", "sender": row.user_id.clone(), "content": content_of(row, now) }))
        .collect();
    if let Value::Object(map) = &mut body.json {
        map.insert("presence".to_owned(), json!({ "events": events }));
        body.is_empty = false;
    }
    Ok(body)
}
