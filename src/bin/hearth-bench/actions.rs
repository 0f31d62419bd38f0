//! The client-server requests scenarios share: rooms, messages, `/sync`, and running set-up
//! work a bounded number at a time.

use crate::client::{MatrixClient, answer_text};
use crate::provisioning::BenchUser;
use anyhow::{Context, Result, anyhow};
use futures_util::{StreamExt, TryStreamExt, stream};
use reqwest::Method;
use serde_json::{Value, json};
use std::future::Future;

/// Registrations, joins and room set-up run this many at a time: on a 2-core machine more
/// parallelism only queues requests (and password hashing) without finishing sooner, and a
/// few thousand at once would look like an attack to a server's connection limits.
pub const SETUP_CONCURRENCY: usize = 8;

/// Runs `jobs` at most `limit` at a time and returns their results in order; the first
/// failure stops the rest.
pub async fn bounded<T, F: Future<Output = Result<T>>>(
    limit: usize,
    jobs: impl IntoIterator<Item = F>,
) -> Result<Vec<T>> {
    stream::iter(jobs).buffered(limit).try_collect().await
}

pub async fn create_room(client: &MatrixClient, user: &BenchUser, body: &Value) -> Result<String> {
    let url = client.url(&["_matrix", "client", "v3", "createRoom"])?;
    let answer = client
        .request(Method::POST, url, Some(&user.access_token), Some(body))
        .await
        .with_context(|| format!("{} cannot create a room", user.user_id))?;
    answer["room_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the createRoom answer has no room_id: {}", answer_text(&answer)))
}

pub async fn join_room(client: &MatrixClient, user: &BenchUser, room_id: &str) -> Result<()> {
    let url = client.url(&["_matrix", "client", "v3", "rooms", room_id, "join"])?;
    client
        .request(Method::POST, url, Some(&user.access_token), Some(&json!({})))
        .await
        .with_context(|| format!("{} cannot join {room_id}", user.user_id))?;
    Ok(())
}

/// Sends one `m.room.message` and returns its event id.
pub async fn send_message(
    client: &MatrixClient,
    user: &BenchUser,
    room_id: &str,
    txn_id: &str,
    content: &Value,
) -> Result<String> {
    let url = client.url(&["_matrix", "client", "v3", "rooms", room_id, "send", "m.room.message", txn_id])?;
    let answer = client.request(Method::PUT, url, Some(&user.access_token), Some(content)).await?;
    // A 2xx without an event id means the message was not sent, whatever the status says.
    answer["event_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the send answer has no event_id: {}", answer_text(&answer)))
}

/// The `/sync` URL with an optional inline filter, an optional `since` and a long-poll timeout.
pub fn sync_url(
    client: &MatrixClient,
    filter: Option<&Value>,
    since: Option<&str>,
    timeout_ms: u64,
) -> Result<reqwest::Url> {
    let mut url = client.url(&["_matrix", "client", "v3", "sync"])?;
    {
        let mut query = url.query_pairs_mut();
        if let Some(filter) = filter {
            query.append_pair("filter", &filter.to_string());
        }
        query.append_pair("timeout", &timeout_ms.to_string());
        if let Some(since) = since {
            query.append_pair("since", since);
        }
    }
    Ok(url)
}

pub async fn sync(
    client: &MatrixClient,
    user: &BenchUser,
    filter: Option<&Value>,
    since: Option<&str>,
    timeout_ms: u64,
) -> Result<Value> {
    let url = sync_url(client, filter, since, timeout_ms)?;
    client
        .request(Method::GET, url, Some(&user.access_token), None)
        .await
        .with_context(|| format!("/sync of {} failed", user.user_id))
}

pub fn next_batch(answer: &Value) -> Result<String> {
    answer["next_batch"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the /sync answer has no next_batch: {}", answer_text(answer)))
}

/// A filter that keeps only `rooms`' messages (up to `limit` per answer) and nothing of
/// presence or account data, so that a long-poll wakes for messages only and its answer
/// holds what the measurement looks at.
pub fn messages_filter(rooms: &[&str], limit: u32) -> Value {
    json!({
        "room": {
            "rooms": rooms,
            "timeline": {"limit": limit, "types": ["m.room.message"]},
            "state": {"lazy_load_members": true},
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    })
}
