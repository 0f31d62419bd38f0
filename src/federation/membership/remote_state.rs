//! Checking a room's state and auth chain as another server answered them (`send_join`), before
//! anything of them is believed: each event's format, signatures and content hash (the inbound
//! pipeline's [`check_fetched`], with keys from the key ring), and that the answer is of this
//! room and holds its create event. Each event is then judged against its own auth events when
//! it is stored ([`crate::federation::inbound::store_outliers`], in `joined_room`).

use crate::error::{Error, Result};
use crate::federation::inbound::check_fetched;
use crate::federation::inbound::outliers::in_room;
use crate::federation::membership::keys::KeySource;
use crate::rooms::pdu::Pdu;
use ruma::events::TimelineEventType;
use ruma::{OwnedEventId, RoomId, RoomVersionId};
use serde_json::value::RawValue as RawJsonValue;

/// A resident server's answer, checked.
pub struct CheckedRoomState {
    /// Every checked event of the state and the auth chain.
    pub events: Vec<Pdu>,
    /// The ids of the checked state events, in the order sent.
    pub state: Vec<OwnedEventId>,
    pub create: Pdu,
}

/// Checks `state` and `auth_chain` of `room_id` (of version `room_version`).
pub async fn check_room_state(
    keys: &impl KeySource,
    room_id: &RoomId,
    room_version: &RoomVersionId,
    state: &[Box<RawJsonValue>],
    auth_chain: &[Box<RawJsonValue>],
) -> Result<CheckedRoomState> {
    let state_events = check_fetched(keys, room_version, state).await;
    let state_ids = state_events.iter().map(|pdu| pdu.event_id.clone()).collect();
    let events: Vec<Pdu> =
        state_events.into_iter().chain(check_fetched(keys, room_version, auth_chain).await).collect();
    let create = events
        .iter()
        .find(|pdu| pdu.kind == TimelineEventType::RoomCreate && pdu.state_key.as_deref() == Some(""))
        .cloned()
        .ok_or_else(|| Error::bad_gateway("The room's state has no valid create event"))?;
    if !in_room(&create, room_id) {
        return Err(Error::bad_gateway(format!("The create event {} is not of {room_id}", create.event_id)));
    }
    if events.iter().any(|pdu| !in_room(pdu, room_id)) {
        return Err(Error::bad_gateway("The state holds events of another room"));
    }
    Ok(CheckedRoomState { events, state: state_ids, create })
}
