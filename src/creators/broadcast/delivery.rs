//! Delivering a broadcast: a background job that takes the pending recipients a chunk at a
//! time and sends the message to each one's DM with the creator through the ordinary send
//! path — the DM in the creator's `m.direct`, or a new one created as an invite, with the
//! message in it for when the recipient accepts (for a user of another server, the
//! invitation goes through their server, then the message follows).
//!
//! Durable and free of duplicates across a crash: each recipient's message is appended with
//! the transaction id of the broadcast (the send path keys retransmissions by room, so each DM
//! gets its own), so an append repeated after a crash returns the first event instead of
//! sending again. A new DM commits with the message in it, so a crash leaves both or neither;
//! a recipient without a recorded room or an `m.direct` one is first looked for among the
//! two-member rooms the creator shares with them (where a DM made just before a crash is).
//! Outcomes (with each new DM's room) are recorded once per chunk.
//!
//! Fair to other traffic: appends in flight are bounded per broadcast and across all
//! broadcasts of the process ([`BroadcastCtx::slots`]), so the database pool and the CPU stay
//! available to other users' requests; every recipient's DM is its own room, so their room
//! locks are never held against anyone else.
//!
//! Only the creator learns counts, never who was skipped: recipients who ignore (block) the
//! creator, no longer subscribe nor share a room, or refuse invites are `skipped`.

use super::BroadcastCtx;
use crate::db;
use crate::db::broadcast::{Broadcast, Outcome, PendingRecipient};
use crate::error::{Error, Result};
use crate::federation::membership::invite::invite;
use crate::rooms::build::EventTemplate;
use crate::rooms::create::{CreateRoom, CreatedRoom, FirstMessage, Preset, create_room, create_rooms_with_messages};
use crate::rooms::membership::{MembershipChange, leave};
use crate::rooms::membership_action::MembershipAction;
use crate::rooms::send::{Transaction, append};
use crate::users::account_data::{Change, change};
use futures_util::StreamExt;
use ruma::api::error::ErrorKind;
use ruma::events::MessageLikeEventType;
use ruma::{OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, UserId};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{SemaphorePermit, watch};

/// Recipients read, checked and recorded together: batched lookups and one write of outcomes.
const CHUNK: i64 = 500;
/// Appends in flight for one broadcast (the process-wide bound is `BroadcastCtx::slots`).
const IN_FLIGHT: usize = 8;
/// New DMs made in one transaction and commit: enough to share the commit's costs, few
/// enough that the stream positions it holds back (until it commits) are not held long.
const NEW_DMS_PER_COMMIT: usize = 32;
/// Batches of new DMs in flight for one broadcast (each takes one of `BroadcastCtx::slots`).
const NEW_DM_BATCHES_IN_FLIGHT: usize = 3;
/// The device of the transaction ids broadcasts are appended with: no real device, so never
/// deleted with one (which would forget the ids and let a resumed delivery send again).
const BROADCAST_DEVICE: &str = "io.hearth.broadcast";
/// How long to wait when the database is unavailable before trying the chunk again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Delivers a broadcast until no recipient is pending or `stopped` says so; a broadcast
/// another task (or process) is delivering already is left to it.
pub(crate) async fn deliver(ctx: BroadcastCtx<'_>, broadcast_id: &str, stopped: watch::Receiver<bool>) -> Result<()> {
    let pool = ctx.fed.rooms.pool;
    let Some(broadcast) = db::broadcast::broadcast(pool, broadcast_id).await? else { return Ok(()) };
    if broadcast.state != "running" {
        return Ok(());
    }
    // The lock lives as long as this connection, which is closed rather than pooled again.
    let mut lock = pool.acquire().await?;
    lock.close_on_drop();
    if !db::broadcast::try_lock_delivery(&mut lock, broadcast_id).await? {
        return Ok(());
    }
    let creator = UserId::parse(&broadcast.creator).map_err(|error| Error::internal(error.to_string()))?;
    loop {
        if *stopped.borrow() {
            return Ok(());
        }
        let pending = db::broadcast::pending(pool, broadcast_id, CHUNK).await?;
        if pending.is_empty() {
            db::broadcast::finish(pool, broadcast_id, crate::time::now_ms()).await?;
            tracing::info!(broadcast_id, "broadcast delivered");
            return Ok(());
        }
        let all_settled = match deliver_chunk(ctx, &broadcast, &creator, pending, &stopped).await {
            Ok(all_settled) => all_settled,
            // The database is back soon; the chunk's recipients are still pending.
            Err(Error::Unavailable(error)) => {
                tracing::warn!(broadcast_id, %error, "broadcast delivery waits for the database");
                false
            }
            Err(error) => return Err(error),
        };
        if !all_settled && !*stopped.borrow() {
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }
}

/// What became of one recipient.
#[derive(Clone)]
enum Fate {
    Sent {
        room_id: OwnedRoomId,
        event_id: String,
        new_dm: bool,
    },
    Skipped,
    Failed {
        room_id: Option<OwnedRoomId>,
    },
    /// Not settled (stopping, or the database unavailable): stays pending.
    Later,
}

/// Delivers to one chunk of recipients and records their outcomes; `false` when some are
/// left pending.
async fn deliver_chunk(
    ctx: BroadcastCtx<'_>,
    broadcast: &Broadcast,
    creator: &UserId,
    pending: Vec<PendingRecipient>,
    stopped: &watch::Receiver<bool>,
) -> Result<bool> {
    let pool = ctx.fed.rooms.pool;
    let id = broadcast.broadcast_id.as_str();
    let users: Vec<String> = pending.iter().map(|recipient| recipient.user_id.clone()).collect();
    let reachable = super::reachable(pool, ctx.fed.rooms.server_name, creator, &users).await?;
    let ignoring: HashSet<String> =
        db::broadcast::ignoring(pool, creator.as_str(), &users).await?.into_iter().collect();
    let (wanted, unwanted): (Vec<PendingRecipient>, Vec<PendingRecipient>) = pending
        .into_iter()
        .partition(|recipient| reachable.contains(&recipient.user_id) && !ignoring.contains(&recipient.user_id));
    let mut outcomes: Vec<Outcome> = unwanted
        .into_iter()
        .map(|recipient| Outcome { user_id: recipient.user_id, state: "skipped", room_id: None, event_id: None })
        .collect();

    let rooms = direct_rooms(ctx, creator, &wanted).await?;
    let template = EventTemplate::message(MessageLikeEventType::RoomMessage, broadcast.content.clone());
    let (with_dm, without_dm): (Vec<PendingRecipient>, Vec<PendingRecipient>) =
        wanted.into_iter().partition(|recipient| rooms.contains_key(&recipient.user_id));
    // New DMs are made many to a commit; a batch is CPU-bound in Hearth (its events are built
    // and signed) and then in PostgreSQL (stored), so two at a time keep both cores busy.
    // Recipients of other servers are invited through their server, one at a time.
    let (mut users_without_dm, mut remote_without_dm) = (Vec::new(), Vec::new());
    for recipient in without_dm {
        match super::remote_user(&recipient.user_id, ctx.fed.rooms.server_name) {
            Some(user) => remote_without_dm.push(user),
            None => users_without_dm.push(recipient.user_id),
        }
    }
    let batches: Vec<Vec<String>> = users_without_dm.chunks(NEW_DMS_PER_COMMIT).map(<[String]>::to_vec).collect();
    let batches: Vec<Vec<(String, Fate)>> = futures_util::stream::iter(batches)
        .map(|users| {
            let template = template.clone();
            async move { create_dms(ctx, id, creator, &users, template, stopped).await }
        })
        .buffer_unordered(NEW_DM_BATCHES_IN_FLIGHT)
        .collect()
        .await;
    let mut fates: Vec<(String, Fate)> = batches.into_iter().flatten().collect();
    let unreachable = Mutex::new(HashSet::new());
    let remote: Vec<(String, Fate)> = futures_util::stream::iter(remote_without_dm)
        .map(|recipient| {
            let template = template.clone();
            let unreachable = &unreachable;
            async move {
                let fate = create_remote_dm(ctx, id, creator, &recipient, template, stopped, unreachable).await;
                (recipient.to_string(), fate)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    fates.extend(remote);
    let sent: Vec<(String, Fate)> = futures_util::stream::iter(with_dm)
        .map(|recipient| {
            let room = rooms.get(&recipient.user_id).cloned();
            let template = template.clone();
            async move {
                let fate = deliver_one(ctx, id, creator, &recipient.user_id, room, template, stopped).await;
                (recipient.user_id, fate)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    fates.extend(sent);

    let mut new_dms = Map::new();
    let mut all_settled = true;
    for (user_id, fate) in fates {
        let outcome = match fate {
            Fate::Sent { room_id, event_id, new_dm } => {
                if new_dm {
                    new_dms.insert(user_id.clone(), json!([room_id]));
                }
                Outcome { user_id, state: "sent", room_id: Some(room_id.to_string()), event_id: Some(event_id) }
            }
            Fate::Skipped => Outcome { user_id, state: "skipped", room_id: None, event_id: None },
            Fate::Failed { room_id } => {
                Outcome { user_id, state: "failed", room_id: room_id.map(|room| room.to_string()), event_id: None }
            }
            Fate::Later => {
                all_settled = false;
                continue;
            }
        };
        outcomes.push(outcome);
    }
    // The creator's clients show the new DMs as DMs (as if the creator had started each).
    if !new_dms.is_empty() {
        let additions = Value::Object(new_dms);
        change(pool, ctx.fed.rooms.streams, creator, Change::AddDirectRooms { additions: &additions }).await?;
    }
    db::broadcast::record_outcomes(pool, id, &outcomes).await?;
    Ok(all_settled)
}

/// The DM each recipient already has with the creator: a room recorded for them by an
/// earlier attempt, one of the creator's `m.direct` rooms they are in, or a room of just the
/// two of them.
async fn direct_rooms(
    ctx: BroadcastCtx<'_>,
    creator: &UserId,
    recipients: &[PendingRecipient],
) -> Result<HashMap<String, OwnedRoomId>> {
    let pool = ctx.fed.rooms.pool;
    let mut rooms: HashMap<String, String> = recipients
        .iter()
        .filter_map(|recipient| recipient.room_id.clone().map(|room| (recipient.user_id.clone(), room)))
        .collect();
    let direct = db::account_data::get(pool, creator.as_str(), "", "m.direct").await?.unwrap_or_default();
    let candidates: Vec<(String, String)> = recipients
        .iter()
        .filter(|recipient| !rooms.contains_key(&recipient.user_id))
        .flat_map(|recipient| {
            let listed = direct.get(&recipient.user_id).and_then(Value::as_array).cloned().unwrap_or_default();
            listed.into_iter().filter_map(|room| room.as_str().map(|room| (recipient.user_id.clone(), room.to_owned())))
        })
        .collect();
    if !candidates.is_empty() {
        rooms.extend(db::broadcast::shared_rooms_among(pool, creator.as_str(), &candidates).await?);
    }
    // Not in `m.direct`: a room of just the two of them is their DM all the same — a DM made
    // just before a crash (recorded nowhere yet), or one a client's rewrite of `m.direct`
    // dropped — rather than a reason to create another.
    let unlisted: Vec<String> = recipients
        .iter()
        .filter(|recipient| !rooms.contains_key(&recipient.user_id))
        .map(|recipient| recipient.user_id.clone())
        .collect();
    if !unlisted.is_empty() {
        rooms.extend(db::broadcast::two_member_rooms(pool, creator.as_str(), &unlisted).await?);
    }
    let mut parsed = HashMap::with_capacity(rooms.len());
    for (user, room) in rooms {
        let room = RoomId::parse(&room).map_err(|error| Error::internal(format!("a stored room id: {error}")))?;
        parsed.insert(user, room);
    }
    Ok(parsed)
}

/// Sends the message to one recipient's DM.
async fn deliver_one(
    ctx: BroadcastCtx<'_>,
    broadcast_id: &str,
    creator: &UserId,
    user_id: &str,
    room: Option<OwnedRoomId>,
    template: EventTemplate,
    stopped: &watch::Receiver<bool>,
) -> Fate {
    let Some(_slot) = slot(ctx, stopped).await else { return Fate::Later };
    let Some(room_id) = room else { return Fate::Failed { room_id: None } };
    append_to(ctx, broadcast_id, creator, user_id, room_id, template, false).await
}

/// One of the process's delivery slots, unless delivery stops: then the recipient stays
/// pending. (The semaphore is closed only when the process stops.)
async fn slot<'a>(ctx: BroadcastCtx<'a>, stopped: &watch::Receiver<bool>) -> Option<SemaphorePermit<'a>> {
    if *stopped.borrow() {
        return None;
    }
    ctx.slots.acquire().await.ok()
}

/// Appends the message to `room_id` under the broadcast's transaction id, so that an append
/// repeated after a crash returns the first event.
async fn append_to(
    ctx: BroadcastCtx<'_>,
    broadcast_id: &str,
    creator: &UserId,
    user_id: &str,
    room_id: OwnedRoomId,
    template: EventTemplate,
    new_dm: bool,
) -> Fate {
    let transaction = Transaction { device_id: BROADCAST_DEVICE, txn_id: broadcast_id };
    match append(ctx.fed.rooms, &room_id, creator, template, Some(transaction)).await {
        Ok(event_id) => Fate::Sent { room_id, event_id: event_id.to_string(), new_dm },
        Err(error) => fate_of(&error, Some(room_id), user_id),
    }
}

/// New DMs of the creator with each of `users`, invited, with the message in each: one
/// commit for all (each DM exists only with its message, so a resumed delivery finds it among
/// the rooms of just the two of them, and its append with the same transaction id sends
/// nothing again). A recipient whose DM cannot be made fails (or is skipped) alone.
async fn create_dms(
    ctx: BroadcastCtx<'_>,
    broadcast_id: &str,
    creator: &UserId,
    users: &[String],
    template: EventTemplate,
    stopped: &watch::Receiver<bool>,
) -> Vec<(String, Fate)> {
    let later = || users.iter().map(|user| (user.clone(), Fate::Later)).collect();
    let Some(_slot) = slot(ctx, stopped).await else { return later() };
    let mut fates = Vec::with_capacity(users.len());
    let mut requests = Vec::with_capacity(users.len());
    let mut invitees = Vec::with_capacity(users.len());
    for user in users {
        match OwnedUserId::try_from(user.as_str()) {
            Ok(invitee) => {
                let first_message = FirstMessage {
                    template: template.clone(),
                    device_id: BROADCAST_DEVICE.to_owned(),
                    txn_id: broadcast_id.to_owned(),
                };
                requests.push(CreateRoom {
                    preset: Some(Preset::TrustedPrivateChat),
                    is_direct: true,
                    invite: vec![invitee],
                    first_message: Some(first_message),
                    lean: true,
                    ..CreateRoom::default()
                });
                invitees.push(user.clone());
            }
            Err(error) => {
                tracing::warn!(user_id = user, %error, "a broadcast recipient with an invalid user id");
                fates.push((user.clone(), Fate::Failed { room_id: None }));
            }
        }
    }
    let created = match create_rooms_with_messages(ctx.fed.rooms, ctx.default_room_version, creator, requests).await {
        Ok(created) => created,
        Err(error) => {
            let fate = fate_of(&error, None, "(a batch)");
            return users.iter().map(|user| (user.clone(), fate.clone())).collect();
        }
    };
    for (user, result) in invitees.into_iter().zip(created) {
        let fate = match result {
            Ok(CreatedRoom { room_id, first_message: Some(event_id) }) => {
                Fate::Sent { room_id, event_id: event_id.to_string(), new_dm: true }
            }
            Ok(CreatedRoom { room_id, first_message: None }) => {
                tracing::warn!(user_id = user, %room_id, "a new DM without its message");
                Fate::Failed { room_id: Some(room_id) }
            }
            Err(error) => fate_of(&error, None, &user),
        };
        fates.push((user, fate));
    }
    fates
}

/// A new DM with a user of another server: the room, then the invitation through their
/// server, then the message. In that order, a crash anywhere sends nothing twice: a room
/// whose invitation was taken is one of just the two of them, where a resumed delivery
/// appends under the same transaction id (see [`direct_rooms`]); one made just before a crash
/// holds no message and stays behind, empty. (A local DM commits with its message in it, but
/// a remote server's invitation cannot join a local transaction.) A refused or failed
/// invitation leaves the room again, so no empty rooms pile up in the creator's list.
///
/// A server that could not take an invitation (`unreachable`: down, failing, answering what no
/// server would) is not asked again for the rest of the chunk: its other recipients fail at
/// once, rather than each costing a room, its leave and a connection timeout.
async fn create_remote_dm(
    ctx: BroadcastCtx<'_>,
    broadcast_id: &str,
    creator: &UserId,
    recipient: &UserId,
    template: EventTemplate,
    stopped: &watch::Receiver<bool>,
    unreachable: &Mutex<HashSet<OwnedServerName>>,
) -> Fate {
    let Some(_slot) = slot(ctx, stopped).await else { return Fate::Later };
    let server_unreachable = || unreachable.lock().unwrap_or_else(PoisonError::into_inner);
    if server_unreachable().contains(recipient.server_name()) {
        return Fate::Failed { room_id: None };
    }
    let request = CreateRoom {
        preset: Some(Preset::TrustedPrivateChat),
        is_direct: true,
        invite: vec![recipient.to_owned()],
        ..CreateRoom::default()
    };
    let room_id = match create_room(ctx.fed.rooms, ctx.default_room_version, creator, request).await {
        Ok(room_id) => room_id,
        Err(error) => return fate_of(&error, None, recipient.as_str()),
    };
    let change = MembershipChange {
        room_id: &room_id,
        sender: creator,
        target: recipient,
        action: MembershipAction::Invite,
        reason: None,
        is_direct: true,
    };
    if let Err(error) = invite(ctx.fed, change).await {
        if let Err(error) = leave(ctx.fed.rooms, &room_id, creator, None).await {
            tracing::warn!(%room_id, %error, "could not leave a DM whose invitation failed");
        }
        return match error {
            // The recipient's server refused the invitation: as a local recipient who refuses
            // invites, a skip.
            Error::Matrix { kind: ErrorKind::Forbidden | ErrorKind::InviteBlocked, .. } => Fate::Skipped,
            Error::BadGateway(message) => {
                tracing::warn!(%room_id, %recipient, message, "a broadcast's invitation did not reach the server");
                server_unreachable().insert(recipient.server_name().to_owned());
                Fate::Failed { room_id: None }
            }
            // The database is back soon; the next attempt makes another room.
            error => fate_of(&error, None, recipient.as_str()),
        };
    }
    append_to(ctx, broadcast_id, creator, recipient.as_str(), room_id, template, true).await
}

/// A refused invite (the recipient blocks invites) is a skip the creator is not told about;
/// an unavailable database is tried again later; anything else fails this recipient.
fn fate_of(error: &Error, room_id: Option<OwnedRoomId>, user_id: &str) -> Fate {
    match error {
        Error::Matrix { kind: ErrorKind::InviteBlocked, .. } => Fate::Skipped,
        Error::Unavailable(_) => Fate::Later,
        _ => {
            tracing::warn!(user_id, %error, "a broadcast could not be delivered");
            Fate::Failed { room_id }
        }
    }
}
