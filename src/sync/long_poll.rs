//! Serving `/sync`: pick the window of stream positions, build the response, and when there
//! is nothing new, wait for a wake-up (never poll) until the client's timeout.

use crate::error::{Error, Result};
use crate::streams::Streams;
use crate::sync::build::{SyncOptions, SyncWindow, build};
use crate::sync::sections::SectionFilters;
use crate::sync::token;
use ruma::{DeviceId, UserId};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::Duration;
use tokio::time::Instant;

/// Longest a request may wait, whatever the client asks (Synapse does not cap; a proxy
/// timeout usually does — this keeps connections from living forever).
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

pub struct SyncRequest<'a> {
    pub since: Option<&'a str>,
    pub timeout: Duration,
    pub full_state: bool,
    pub options: SyncOptions,
    /// The requesting device, whose to-device queue the sync delivers and acknowledges.
    pub device: Option<&'a DeviceId>,
    /// The filter's conditions on the other sections (account data, presence, room state,
    /// ephemeral and account data).
    pub sections: SectionFilters,
}

pub async fn sync(pool: &PgPool, streams: &Streams, user: &UserId, request: SyncRequest<'_>) -> Result<Value> {
    let since = request.since.map(token::decode).transpose()?;
    let deadline = Instant::now() + request.timeout.min(MAX_TIMEOUT);
    loop {
        // Subscribe before sampling the position: a write committing in between wakes us.
        let mut wake = streams.notifier.subscribe();
        let upto = streams.current_position(pool).await?;
        if since.is_some_and(|since| since > upto) {
            return Err(Error::invalid_param("This sync token was not issued by this server"));
        }
        let window = SyncWindow { since, upto };
        let mut body = build(pool, user, window, &request.options).await?;
        if let Some(device) = request.device {
            crate::sync::to_device::attach(pool, user, device, window, &mut body).await?;
        }
        crate::sync::presence::attach(pool, user, window, &mut body).await?;
        crate::sync::device_lists::attach(pool, user, request.device, window, &mut body).await?;
        let answer_now = !body.is_empty || since.is_none() || request.full_state || Instant::now() >= deadline;
        if answer_now {
            request.sections.apply(&mut body.json);
            return Ok(with_next_batch(body.json, upto));
        }
        if tokio::time::timeout_at(deadline, wake.changed()).await.is_err() {
            // Timed out with nothing new: the same window, answered empty.
            request.sections.apply(&mut body.json);
            return Ok(with_next_batch(body.json, upto));
        }
    }
}

fn with_next_batch(mut body: Value, upto: i64) -> Value {
    if !body.is_object() {
        body = json!({});
    }
    body["next_batch"] = json!(token::encode(upto));
    body
}
