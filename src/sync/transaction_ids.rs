//! `unsigned.transaction_id` on the timeline events of a sync answer that the requesting
//! device sent (spec: "Transaction identifiers"). Added last, per device, to events built for
//! anyone (the initial-sync cache shares a room's entry between the user's devices): only the
//! entries holding one of the device's own sends are copied and changed.

use crate::error::Result;
use crate::rooms::transaction_ids::sent_with;
use crate::store::Store;
use crate::sync::response::{SyncBody, SyncEvent};
use ruma::{DeviceId, UserId};
use std::collections::HashMap;
use std::sync::Arc;

/// Annotates the timelines of every joined and left room of `body`.
pub async fn annotate_body(pool: &Store, user: &UserId, device: &DeviceId, body: &mut SyncBody) -> Result<()> {
    let timelines =
        body.rooms.join.values().map(|room| &room.timeline).chain(body.rooms.leave.values().map(|room| &room.timeline));
    let own: Vec<String> = timelines.flat_map(|timeline| own_event_ids(user, &timeline.events)).collect();
    let sent = sent_with(pool, user, device, &own).await?;
    if sent.is_empty() {
        return Ok(());
    }
    for room in body.rooms.join.values_mut() {
        if room.timeline.events.iter().any(|event| event.event_id.as_ref().is_some_and(|id| sent.contains_key(id))) {
            set_all(&mut Arc::make_mut(room).timeline.events, &sent)?;
        }
    }
    for room in body.rooms.leave.values_mut() {
        set_all(&mut room.timeline.events, &sent)?;
    }
    Ok(())
}

/// Annotates one list of events (a sliding sync room's timeline).
pub async fn annotate(pool: &Store, user: &UserId, device: &DeviceId, events: &mut [SyncEvent]) -> Result<()> {
    let own: Vec<String> = own_event_ids(user, events).collect();
    let sent = sent_with(pool, user, device, &own).await?;
    set_all(events, &sent)
}

/// Only the user's own events can have a transaction id: nothing is read unless some are here.
fn own_event_ids<'a>(user: &'a UserId, events: &'a [SyncEvent]) -> impl Iterator<Item = String> + 'a {
    events
        .iter()
        .filter(|event| event.sender.as_deref() == Some(user.as_str()))
        .filter_map(|event| event.event_id.clone())
}

fn set_all(events: &mut [SyncEvent], sent: &HashMap<String, String>) -> Result<()> {
    for event in events {
        if let Some(transaction_id) = event.event_id.as_ref().and_then(|id| sent.get(id)) {
            let transaction_id = transaction_id.clone();
            event.set_transaction_id(&transaction_id)?;
        }
    }
    Ok(())
}
