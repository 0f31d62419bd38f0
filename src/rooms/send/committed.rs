//! The one way every writer of room events commits them: local sends, room creation, and
//! (later) inbound federation all finish through [`commit_events`], so none can leave out what
//! must go with a new event.
//!
//! - Before the commit, in the same transaction: what each local member's push rules say of
//!   the events (`push::record_notifications`), and the local ones queued for every remote
//!   server in the room (`outbox::federation::enqueue_pdus`), so a crash can lose neither.
//! - After it: the wake-up of every `/sync` that may now deliver them (`Reservation::committed_sparing`);
//!   the same notifier wakes the pushers and the federation sender (`crate::outbox`), each
//!   only if the commit gave it work.
//!   In-memory room windows are to hang off here too.

use crate::db::push_actions::NewEvent;
use crate::error::Result;
use crate::outbox::federation::Outgoing;
use crate::rooms::RoomCtx;
use crate::rooms::pdu::Pdu;
use crate::rooms::send::Appended;
use crate::streams::{OutboxKind, Reservation};
use ruma::events::TimelineEventType;
use ruma::{RoomId, ServerName, UserId};
use sqlx::{Postgres, Transaction};

/// Commits `tx`, in which `events` were appended to `room_id` (with positions from
/// `reservation`), together with what depends on them.
pub async fn commit_events<'e>(
    ctx: RoomCtx<'_>,
    tx: Transaction<'_, Postgres>,
    reservation: Reservation<'_>,
    room_id: &RoomId,
    events: impl IntoIterator<Item = &'e Appended>,
) -> Result<()> {
    commit_events_knowing(ctx, tx, reservation, room_id, events, KnownRoom::default()).await
}

/// What a writer learnt of the room under its lock, which spares [`commit_events`] work.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct KnownRoom {
    /// Whether another server has a member in the room (`None`: not known). When none has, and
    /// no event is aimed at a remote user, the federation queue is not asked (one statement
    /// less per commit).
    pub has_remote_servers: Option<bool>,
    /// No local member but each event's sender could hear of it: push evaluation (one
    /// statement reading the room's local members) is skipped.
    pub nobody_hears: bool,
}

/// [`commit_events`] by a writer that knows things of the room (see [`KnownRoom`]).
pub(super) async fn commit_events_knowing<'e>(
    ctx: RoomCtx<'_>,
    tx: Transaction<'_, Postgres>,
    reservation: Reservation<'_>,
    room_id: &RoomId,
    events: impl IntoIterator<Item = &'e Appended>,
    known: KnownRoom,
) -> Result<()> {
    let room = RoomCommit { room_id, events: events.into_iter().collect(), known };
    commit_rooms_knowing(ctx, tx, reservation, &[room]).await
}

/// One room's share of a commit: the events appended to it in the transaction, and what its
/// writer learnt of it under its lock.
pub(super) struct RoomCommit<'e> {
    pub room_id: &'e RoomId,
    pub events: Vec<&'e Appended>,
    pub known: KnownRoom,
}

/// [`commit_events_knowing`] for a transaction that appended to several rooms (a commit group,
/// see `group`): one push evaluation for the rooms where anyone but the sender may hear, the
/// federation queue asked per room that needs it, one commit and one wake-up for all.
pub(super) async fn commit_rooms_knowing(
    ctx: RoomCtx<'_>,
    mut tx: Transaction<'_, Postgres>,
    reservation: Reservation<'_>,
    rooms: &[RoomCommit<'_>],
) -> Result<()> {
    let heard: Vec<NewEvent> = rooms
        .iter()
        .filter(|room| !room.known.nobody_hears)
        .flat_map(|room| stored_events(room.room_id, &room.events))
        .collect();
    let notifications = crate::push::record_notifications(&mut tx, ctx.pool, ctx.server_name, heard).await?;
    let mut any_outgoing = false;
    for room in rooms {
        let mut outgoing = outgoing_pdus(ctx.server_name, &room.events);
        if room.known.has_remote_servers == Some(false)
            && outgoing.iter().all(|event| event.membership_target.is_none())
        {
            outgoing.clear();
        }
        crate::outbox::federation::enqueue_pdus(&mut tx, ctx.server_name, room.room_id, &outgoing).await?;
        any_outgoing |= !outgoing.is_empty();
    }
    tx.commit().await?;
    let persisted = rooms.iter().flat_map(|room| &room.events).filter(|event| matches!(event, Appended::New { .. }));
    crate::telemetry::events_persisted(persisted.count());
    // An outbox this commit gave nothing is not woken: a message nobody is notified of, in a
    // room no other server is in, costs no worker a wake-up and its three statements.
    let mut spared = Vec::with_capacity(2);
    if notifications == 0 {
        spared.push(OutboxKind::Push);
    }
    if !any_outgoing {
        spared.push(OutboxKind::Federation);
    }
    let mut keys = Vec::new();
    for room in rooms {
        for key in audience(room.room_id, room.events.iter().copied()) {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    reservation.committed_sparing(keys, &spared).await
}

/// Commits `tx`, in which new rooms were created (`(room, its events)`, positions from
/// `reservation`), as [`commit_events`] would each: one push evaluation and one commit for
/// all. Only local users are in a room at its creation (remote invitees are invited once it
/// exists), so the federation queue is asked only for an event aimed at a remote user.
pub async fn commit_new_rooms(
    ctx: RoomCtx<'_>,
    mut tx: Transaction<'_, Postgres>,
    reservation: Reservation<'_>,
    rooms: &[(&RoomId, &[Appended])],
) -> Result<()> {
    let mut stored = Vec::new();
    for (room_id, events) in rooms {
        let events: Vec<&Appended> = events.iter().collect();
        stored.extend(stored_events(room_id, &events));
    }
    crate::push::record_notifications(&mut tx, ctx.pool, ctx.server_name, stored).await?;
    for (room_id, events) in rooms {
        let events: Vec<&Appended> = events.iter().collect();
        let outgoing = outgoing_pdus(ctx.server_name, &events);
        if outgoing.iter().any(|event| event.membership_target.is_some()) {
            crate::outbox::federation::enqueue_pdus(&mut tx, ctx.server_name, room_id, &outgoing).await?;
        }
    }
    tx.commit().await?;
    let mut keys = Vec::new();
    let mut persisted = 0;
    for (room_id, events) in rooms {
        persisted += events.iter().filter(|event| matches!(event, Appended::New { .. })).count();
        keys.extend(audience(room_id, events.iter()));
    }
    crate::telemetry::events_persisted(persisted);
    reservation.committed_for(keys).await
}

/// The new events among `events` as push evaluation takes them (retransmissions are not new).
fn stored_events(room_id: &RoomId, events: &[&Appended]) -> Vec<NewEvent> {
    let mut stored_events = Vec::with_capacity(events.len());
    for event in events {
        if let Appended::New { pdu, stored } = event {
            stored_events.push(NewEvent {
                event_nid: stored.event_nid,
                event_id: pdu.event_id.to_string(),
                room_id: room_id.to_string(),
                sender: pdu.sender.to_string(),
                event_type: pdu.kind.to_string(),
                origin_server_ts: i64::from(pdu.origin_server_ts.get()),
                stream_position: stored.position,
                json: pdu.canonical_json(),
            });
        }
    }
    stored_events
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

/// The events among `events` that go to other servers: only those of local senders, since a
/// remote server's events reach the others from their origin, as the spec has it.
fn outgoing_pdus<'e>(local: &ServerName, events: &[&'e Appended]) -> Vec<Outgoing<'e>> {
    events
        .iter()
        .filter_map(|appended| match appended {
            Appended::New { pdu, stored } if pdu.sender.server_name() == local => Some(Outgoing {
                event_nid: stored.event_nid,
                stream_position: stored.position,
                membership_target: membership_target(pdu, local),
            }),
            _ => None,
        })
        .collect()
}

/// The server of a remote user that `pdu` (a local user's doing) kicks, bans, unbans or
/// uninvites: it must hear of it even when none of its users is (still) joined, as Synapse
/// does. An invite is not among them: it reaches the invitee's server through `/invite`
/// (`federation::membership`), and a server outside the room would refuse it in a transaction.
fn membership_target<'p>(pdu: &'p Pdu, local: &ServerName) -> Option<&'p str> {
    if pdu.kind != TimelineEventType::RoomMember {
        return None;
    }
    let membership = pdu.content_value()["membership"].as_str().map(str::to_owned);
    if !matches!(membership.as_deref(), Some("leave" | "ban")) {
        return None;
    }
    let target = <&UserId>::try_from(pdu.state_key.as_deref()?).ok()?;
    (target.server_name() != local).then(|| target.server_name().as_str())
}
