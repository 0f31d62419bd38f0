//! `unsigned.transaction_id` on the timeline events of a sync answer that the requesting
//! device sent (spec: "Transaction identifiers"). Added as a room's entry is built, so that the
//! initial-sync cache keeps (and serves again) the device's entries annotated, with nothing
//! read or parsed again.

use crate::error::Result;
use crate::rooms::transaction_ids::sent_with;
use crate::store::Store;
use crate::sync::response::{SyncEvent, SyncRoom};
use ruma::{DeviceId, UserId};
use std::collections::{HashMap, HashSet};

/// What was read ahead of the device's transaction ids (an initial sync reads them with the
/// rooms' pages): the event ids asked about, and the transaction ids found for them.
#[derive(Default)]
pub(super) struct KnownSent {
    pub asked: HashSet<String>,
    pub sent: HashMap<String, String>,
}

/// Annotates the timelines of `rooms` (as built, before the initial-sync cache keeps them),
/// asking only about the device's events that `known` was not asked about.
pub(super) async fn annotate_rooms<'a>(
    pool: &Store,
    user: &UserId,
    device: &DeviceId,
    rooms: impl Iterator<Item = &'a mut SyncRoom>,
    known: KnownSent,
) -> Result<()> {
    let mut timelines: Vec<&mut Vec<SyncEvent>> = rooms.map(|room| &mut room.timeline.events).collect();
    let KnownSent { asked, mut sent } = known;
    let own: Vec<String> = timelines
        .iter()
        .flat_map(|events| own_event_ids(user, events))
        .filter(|event_id| !asked.contains(event_id))
        .collect();
    sent.extend(sent_with(pool, user, device, &own).await?);
    if sent.is_empty() {
        return Ok(());
    }
    for events in &mut timelines {
        set_all(events, &sent)?;
    }
    Ok(())
}

/// Annotates one list of events (a sliding sync room's timeline).
pub(super) async fn annotate(pool: &Store, user: &UserId, device: &DeviceId, events: &mut [SyncEvent]) -> Result<()> {
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
