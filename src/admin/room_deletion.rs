//! Shutting a room down (`DELETE /_synapse/admin/v2/rooms/{roomId}`): optionally block it,
//! make every local member leave (and forget it), move them and the room's local aliases to a
//! replacement room with an explanation, and take the room out of the directory. The work runs
//! in the background; its progress is kept in `room_deletions` for the status endpoints.
//!
//! Then, unless the admin asks not to (`purge: false`, as Synapse's default is to purge), every
//! row of the room leaves the database: events, state, memberships, receipts, push actions,
//! relations, room account data. A block, the task's status and abuse reports are kept.

use crate::db;
use crate::db::admin_rooms::RoomTask;
use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::rooms::build::EventTemplate;
use crate::rooms::create::{CreateRoom, Preset, create_room};
use crate::rooms::membership::{MembershipChange, member_content, set_membership_of};
use crate::rooms::membership_action::MembershipAction;
use crate::rooms::send::append;
use crate::time::now_ms;
use crate::users::actor::Actor;
use crate::users::{accounts, tokens};
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const DEFAULT_ROOM_NAME: &str = "Content Violation Notification";
const DEFAULT_MESSAGE: &str =
    "Sharing illegal content on this server is not permitted and rooms in violation will be blocked.";

/// What an admin asks of a shutdown (Synapse's body).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ShutdownRequest {
    pub new_room_user_id: Option<OwnedUserId>,
    pub room_name: Option<String>,
    pub message: Option<String>,
    #[serde(default)]
    pub block: bool,
    /// Remove the room from the database after everyone left (default: yes).
    pub purge: Option<bool>,
    /// Purge even if some local members could not be made to leave.
    pub force_purge: Option<bool>,
}

/// Synapse's `shutdown_room` object.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct ShutdownOutcome {
    pub kicked_users: Vec<String>,
    pub failed_to_kick_users: Vec<String>,
    pub local_aliases: Vec<String>,
    pub new_room_id: Option<OwnedRoomId>,
}

/// One deletion task as the status endpoints show it.
pub(crate) use crate::db::admin_rooms::RoomDeletion;

/// Checks the request and records the task as scheduled, and who asked; returns its id. The
/// caller then runs [`run`] in the background, with `by` = `actor.describe()`.
pub(crate) async fn schedule(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    request: &ShutdownRequest,
    actor: Actor<'_>,
) -> Result<String> {
    if let Some(user) = &request.new_room_user_id
        && user.server_name() != ctx.server_name
    {
        return Err(Error::invalid_param("User must be our own"));
    }
    if db::rooms::version(ctx.pool, room_id.as_str()).await?.is_none() {
        return Err(Error::not_found("Room not found"));
    }
    let delete_id = tokens::random_alphanumeric(16);
    db::admin_rooms::insert_task(
        ctx.pool,
        RoomTask::Deletion,
        &delete_id,
        room_id.as_str(),
        &actor.describe(),
        now_ms(),
    )
    .await?;
    Ok(delete_id)
}

/// Runs a scheduled shutdown to its end, recording the outcome (or the failure).
pub(crate) async fn run(
    ctx: RoomCtx<'_>,
    default_version: &RoomVersionId,
    delete_id: &str,
    room_id: &RoomId,
    request: ShutdownRequest,
    by: &str,
) {
    let outcome = match db::admin_rooms::set_deletion_status(ctx.pool, delete_id, "active", None, None).await {
        Ok(()) => shut_down(ctx, default_version, room_id, &request, by).await,
        Err(error) => Err(error.into()),
    };
    let recorded = match &outcome {
        Ok(outcome) => {
            let outcome = serde_json::to_value(outcome).unwrap_or(Value::Null);
            db::admin_rooms::set_deletion_status(ctx.pool, delete_id, "complete", None, Some(&outcome)).await
        }
        Err(error) => {
            tracing::warn!(%room_id, delete_id, error = %error, "a room shutdown failed");
            db::admin_rooms::set_deletion_status(ctx.pool, delete_id, "failed", Some(&error.to_string()), None).await
        }
    };
    if let Err(error) = recorded {
        tracing::error!(%room_id, delete_id, error = %error, "could not record how a room shutdown ended");
    }
}

async fn shut_down(
    ctx: RoomCtx<'_>,
    default_version: &RoomVersionId,
    room_id: &RoomId,
    request: &ShutdownRequest,
    by: &str,
) -> Result<ShutdownOutcome> {
    if request.block {
        db::admin_rooms::block(ctx.pool, room_id.as_str(), by, now_ms()).await?;
    }
    let mut outcome = ShutdownOutcome::default();
    let new_room = match &request.new_room_user_id {
        Some(owner) => Some((owner, replacement_room(ctx, default_version, owner, request).await?)),
        None => None,
    };
    outcome.new_room_id = new_room.as_ref().map(|(_, room)| room.clone());

    let members = db::admin_rooms::members_with(ctx.pool, room_id.as_str(), &["join", "invite", "knock"]).await?;
    let local =
        members.iter().filter_map(|user| UserId::parse(user).ok()).filter(|user| user.server_name() == ctx.server_name);
    for user in local {
        match move_out(ctx, room_id, &user, new_room.as_ref().map(|(owner, room)| (owner.as_ref(), room.as_ref())))
            .await
        {
            Ok(()) => outcome.kicked_users.push(user.to_string()),
            Err(error) => {
                tracing::warn!(%room_id, %user, error = %error, "could not remove a member from a room being shut down");
                outcome.failed_to_kick_users.push(user.to_string());
            }
        }
    }

    let mut tx = ctx.pool.begin().await?;
    outcome.local_aliases = db::directory::aliases_for_room(&mut *tx, room_id.as_str()).await?;
    match &new_room {
        Some((_, new_room_id)) => {
            db::directory::move_aliases(&mut tx, room_id.as_str(), new_room_id.as_str()).await?;
        }
        None => {
            for alias in &outcome.local_aliases {
                db::directory::delete_alias(&mut *tx, alias).await?;
            }
        }
    }
    db::directory::set_published(&mut tx, room_id.as_str(), false).await?;
    if request.purge.unwrap_or(true) {
        // As Synapse: a member still in the room would find it vanished under them.
        if !outcome.failed_to_kick_users.is_empty() && !request.force_purge.unwrap_or(false) {
            return Err(Error::unknown("Not purging the room: some local members are still in it (use force_purge)"));
        }
        let started = std::time::Instant::now();
        let events = db::room_purge::purge_room(&mut tx, room_id.as_str()).await?;
        tracing::info!(%room_id, events, elapsed_ms = started.elapsed().as_millis(), "purged a room");
    }
    tx.commit().await?;
    Ok(outcome)
}

/// The room members are moved to: created by `owner` (an account made for it if needed), where
/// everyone else is muted, with the explanation as its first message.
async fn replacement_room(
    ctx: RoomCtx<'_>,
    default_version: &RoomVersionId,
    owner: &UserId,
    request: &ShutdownRequest,
) -> Result<OwnedRoomId> {
    if !db::users::exists(ctx.pool, owner.as_str()).await? {
        let mut tx = ctx.pool.begin().await?;
        accounts::insert_account(&mut tx, owner, None, false, false).await?;
        tx.commit().await?;
    }
    let create = CreateRoom {
        preset: Some(Preset::PublicChat),
        name: Some(request.room_name.clone().unwrap_or_else(|| DEFAULT_ROOM_NAME.to_owned())),
        power_level_content_override: Some(json!({ "users_default": -10 })),
        ..CreateRoom::default()
    };
    let room_id = create_room(ctx, default_version, owner, create).await?;
    let body = request.message.clone().unwrap_or_else(|| DEFAULT_MESSAGE.to_owned());
    let message = EventTemplate::message("m.room.message", json!({ "msgtype": "m.text", "body": body }));
    append(ctx, &room_id, owner, message, None).await?;
    Ok(room_id)
}

/// One local member out of the room (they leave, and forget it), into the replacement room if
/// there is one (invited by its owner, then joined).
async fn move_out(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    user: &UserId,
    new_room: Option<(&UserId, &RoomId)>,
) -> Result<()> {
    if let Some((owner, new_room_id)) = new_room
        && owner != user
    {
        let invite = MembershipChange {
            room_id: new_room_id,
            sender: owner,
            target: user,
            action: MembershipAction::Invite,
            reason: None,
            is_direct: false,
        };
        set_membership_of(ctx, invite).await?;
        let join = member_content(ctx.pool, user, MembershipState::Join, None).await?;
        append(ctx, new_room_id, user, EventTemplate::state("m.room.member", user.as_str(), join), None).await?;
    }
    crate::rooms::membership::leave(ctx, room_id, user, Some("This room has been shut down by a server administrator"))
        .await?;
    db::rooms::forget(ctx.pool, room_id.as_str(), user.as_str()).await?;
    Ok(())
}

/// `GET /v2/rooms/{roomId}/delete_status`: the room's deletion tasks (M_NOT_FOUND without any).
pub(crate) async fn statuses_of_room(ctx: RoomCtx<'_>, room_id: &RoomId) -> Result<Vec<RoomDeletion>> {
    let deletions = db::admin_rooms::deletions_of_room(ctx.pool, room_id.as_str()).await?;
    if deletions.is_empty() {
        return Err(Error::not_found(format!("No delete task for room_id '{room_id}' found")));
    }
    Ok(deletions)
}

/// `GET /v2/rooms/delete_status/{deleteId}`.
pub(crate) async fn status(ctx: RoomCtx<'_>, delete_id: &str) -> Result<RoomDeletion> {
    db::admin_rooms::deletion(ctx.pool, delete_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("delete id '{delete_id}' not found")))
}
