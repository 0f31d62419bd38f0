//! The EDUs of a received transaction. Each is about a user of the sending server — one that
//! names a user of another server is dropped, as is one that does not parse — and is stored
//! through the same domain functions and streams as the local change it mirrors, so `/sync`
//! cannot tell where it came from. An EDU that fails on its own merits (a user not in the
//! room, an unknown event) is dropped with a log line; only a failure of this server fails
//! the transaction, so the sender tries it again.

use crate::e2ee::device_lists;
use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::federation::user_keys::device_cache;
use crate::rooms::{receipts, typing};
use crate::users::{presence, to_device};
use ruma::api::federation::transactions::edu::{DirectDeviceContent, Edu, ReceiptContent};
use ruma::serde::Raw;
use ruma::{ServerName, UserId};

/// A transaction's EDUs, parsed and split by when they are applied relative to its PDUs.
pub struct SortedEdus {
    /// To-device messages: the room keys of encrypted events travel as these. Applied before
    /// the PDUs, so a sync that shows an event has shown its key by then.
    pub before_pdus: Vec<Edu>,
    /// The rest, applied after the PDUs: a receipt may name an event of the same transaction,
    /// and a device-list change may be about a user whose join the transaction carries.
    pub after_pdus: Vec<Edu>,
}

/// Parses a transaction's EDUs (one that does not parse is dropped) and sorts them.
pub fn sort_edus(origin: &ServerName, edus: &[Raw<Edu>]) -> SortedEdus {
    let mut sorted = SortedEdus { before_pdus: Vec::new(), after_pdus: Vec::new() };
    for raw in edus {
        match raw.deserialize() {
            Ok(edu @ Edu::DirectToDevice(_)) => sorted.before_pdus.push(edu),
            Ok(edu) => sorted.after_pdus.push(edu),
            Err(error) => tracing::debug!(%origin, %error, "dropping an EDU that does not parse"),
        }
    }
    sorted
}

pub async fn receive_edus(ctx: FedCtx<'_>, origin: &ServerName, edus: Vec<Edu>) -> Result<()> {
    for edu in edus {
        match receive_edu(ctx, origin, edu).await {
            Ok(()) => {}
            Err(Error::Internal(error)) => return Err(Error::Internal(error)),
            Err(error) => tracing::debug!(%origin, %error, "dropping an EDU"),
        }
    }
    Ok(())
}

fn ensure_from(origin: &ServerName, user: &UserId) -> Result<()> {
    if user.server_name() != origin {
        return Err(Error::forbidden(format!("{origin} cannot speak for {user}")));
    }
    Ok(())
}

async fn receive_edu(ctx: FedCtx<'_>, origin: &ServerName, edu: Edu) -> Result<()> {
    let (pool, streams) = (ctx.rooms.pool, ctx.rooms.streams);
    match edu {
        Edu::Typing(content) => {
            ensure_from(origin, &content.user_id)?;
            typing::receive_remote(pool, streams, &content.room_id, &content.user_id, content.typing).await
        }
        Edu::Receipt(content) => receive_receipts(ctx, origin, content).await,
        Edu::Presence(content) => {
            for update in content.push {
                ensure_from(origin, &update.user_id)?;
                let ago = u64::from(update.last_active_ago);
                let status = update.status_msg.as_deref();
                presence::receive_remote(pool, streams, &update.user_id, &update.presence, status, ago).await?;
            }
            Ok(())
        }
        Edu::DirectToDevice(content) => receive_to_device(ctx, origin, content).await,
        // The cached copy is brought up to date before local users hear of the change, so a
        // `/keys/query` they make on hearing of it finds the new keys.
        Edu::DeviceListUpdate(content) => {
            ensure_from(origin, &content.user_id)?;
            device_cache::device_list_update(ctx, &content).await?;
            device_lists::receive_remote_change(pool, streams, &content.user_id).await
        }
        Edu::SigningKeyUpdate(content) => {
            ensure_from(origin, &content.user_id)?;
            device_cache::signing_key_update(ctx, &content).await?;
            device_lists::receive_remote_change(pool, streams, &content.user_id).await
        }
        _ => Ok(()),
    }
}

async fn receive_receipts(ctx: FedCtx<'_>, origin: &ServerName, content: ReceiptContent) -> Result<()> {
    for (room_id, map) in content.receipts {
        for (user_id, data) in map.read {
            ensure_from(origin, &user_id)?;
            // A receipt names one event; more are a legacy form whose first is the newest.
            let Some(event_id) = data.event_ids.first() else { continue };
            let thread = data.data.thread.as_str().unwrap_or("");
            let ts = data.data.ts.map(|ts| i64::from(ts.0));
            let outcome = receipts::receive_remote(
                ctx.rooms.pool,
                ctx.rooms.streams,
                &room_id,
                &user_id,
                event_id.as_str(),
                thread,
                ts,
            )
            .await;
            // One room's refusal does not drop the others' receipts.
            match outcome {
                Err(Error::Internal(error)) => return Err(Error::Internal(error)),
                Err(error) => tracing::debug!(%origin, %room_id, %error, "dropping a receipt"),
                Ok(()) => {}
            }
        }
    }
    Ok(())
}

async fn receive_to_device(ctx: FedCtx<'_>, origin: &ServerName, content: DirectDeviceContent) -> Result<()> {
    ensure_from(origin, &content.sender)?;
    let mut messages = to_device::Messages::new();
    for (user, devices) in content.messages {
        for (device, raw) in devices {
            let Ok(value) = raw.deserialize_as::<serde_json::Value>() else { continue };
            messages.entry(user.clone()).or_default().insert(device, value);
        }
    }
    let event_type = content.ev_type.to_string();
    to_device::receive_remote(
        ctx.rooms.pool,
        ctx.rooms.streams,
        ctx.rooms.server_name,
        &content.sender,
        &event_type,
        content.message_id.as_str(),
        &messages,
    )
    .await
}
