//! The one step every writer of room events takes once its transaction has committed:
//! local sends, room creation, and (later) inbound federation. Whatever must follow a
//! committed event hangs off [`events_committed`] — today the wake-up of every `/sync` that
//! may now deliver it; push delivery, the federation sender and in-memory room windows are
//! to join it here, so that no writer can leave one of them out.

use crate::error::Result;
use crate::rooms::send::Appended;
use crate::streams::Reservation;
use ruma::RoomId;
use ruma::events::TimelineEventType;

/// Call right after the commit of the transaction `reservation` belongs to, with the events it
/// appended to `room_id` (retransmissions among them are ignored).
pub async fn events_committed<'e>(
    reservation: Reservation<'_>,
    room_id: &RoomId,
    events: impl IntoIterator<Item = &'e Appended>,
) -> Result<()> {
    reservation.committed_for(audience(room_id, events)).await
}

/// Who must hear of the events: the room's members, and the subject of each membership
/// change, who may not be (or no longer be) a member.
fn audience<'e>(room_id: &RoomId, events: impl IntoIterator<Item = &'e Appended>) -> Vec<String> {
    let mut audience = vec![room_id.to_string()];
    for event in events {
        if let Appended::New { pdu, .. } = event
            && pdu.kind == TimelineEventType::RoomMember
            && let Some(subject) = &pdu.state_key
            && !audience.contains(subject)
        {
            audience.push(subject.clone());
        }
    }
    audience
}
