//! `createRoom`: the create event, the creator's join, power levels, the preset's rules,
//! initial state, name, topic and invitations — in the order the spec prescribes.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::aliases;
use crate::rooms::build::{EventTemplate, Placement, build_and_sign};
use crate::rooms::membership::{member_content, member_content_of, unknown_user};
use crate::rooms::pdu::Pdu;
use crate::rooms::send::committed::{commit_events, commit_new_rooms};
use crate::rooms::send::locks::HeldRoomLock;
use crate::rooms::send::{Appended, NewRoomEvents, Transaction, persist_all};
use crate::rooms::{RoomCtx, rules_for};
use crate::time::now_ms;
use crate::users::tokens;
use ruma::events::StateEventType;
use ruma::events::room::member::MembershipState;
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::check_state_independent_auth_rules;
use ruma::{EventId, OwnedEventId, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::{Map, Value, json};
use sqlx::PgConnection;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    PrivateChat,
    TrustedPrivateChat,
    PublicChat,
}

#[derive(Clone, Debug, Default)]
pub struct CreateRoom {
    pub version: Option<RoomVersionId>,
    pub preset: Option<Preset>,
    pub public: bool,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    /// `(type, state_key, content)`.
    pub initial_state: Vec<(String, String, Value)>,
    pub power_level_content_override: Option<Value>,
    pub creation_content: Option<Value>,
    /// `room_alias_name` as a whole alias on this server (see `aliases::alias_from_name`).
    pub alias: Option<OwnedRoomAliasId>,
    /// A message the creator sends in the room as its last event, in the same commit (a
    /// broadcast's new DM: the invite and the message arrive together or not at all).
    pub first_message: Option<FirstMessage>,
    /// Leave out the preset's history visibility and guest access (a broadcast's new DM, made
    /// by the thousand, where each event costs): without them a room's history visibility is
    /// `shared` (the spec's default, which the private presets set anyway) and guests cannot
    /// join (the spec's default; a DM has no use for guests). Join rules and power levels
    /// stay: clients and other servers read them.
    pub lean: bool,
}

/// The creator's first message in a new room, idempotent by its client transaction id as a
/// send to the room is.
#[derive(Clone, Debug)]
pub struct FirstMessage {
    pub template: EventTemplate,
    pub device_id: String,
    pub txn_id: String,
}

/// What [`create_room_with_message`] made.
#[derive(Clone, Debug)]
pub struct CreatedRoom {
    pub room_id: OwnedRoomId,
    /// The id of the request's `first_message`.
    pub first_message: Option<OwnedEventId>,
}

/// Tries at building a create event whose room id is not taken yet (see `create_room`).
const MAX_CREATE_ATTEMPTS: u32 = 10;

/// The signed create event and the room id it gives the room: its hash from room v12 on, a
/// random one before.
fn create_event(
    ctx: RoomCtx<'_>,
    rules: &RoomVersionRules,
    creator: &UserId,
    template: &EventTemplate,
) -> Result<(Pdu, OwnedRoomId)> {
    let random_room_id = if rules.authorization.room_create_event_id_as_room_id {
        None
    } else {
        Some(
            RoomId::parse(format!("!{}:{}", tokens::random_alphanumeric(18), ctx.server_name))
                .map_err(|e| Error::internal(format!("generated room id: {e}")))?,
        )
    };
    let placement = Placement { room_id: random_room_id.as_deref(), prev_events: &[], auth_events: &[], depth: 1 };
    let create = build_and_sign(template, creator, &placement, rules, ctx.server_name, ctx.key)?;
    check_state_independent_auth_rules(&rules.authorization, &create, |_: &EventId| None::<Pdu>)
        .map_err(|reason| Error::bad_json(format!("Invalid create event: {reason}")))?;
    let room_id = match random_room_id {
        Some(room_id) => room_id,
        None => RoomId::parse(format!("!{}", &create.event_id.as_str()[1..]))
            .map_err(|e| Error::internal(format!("room id from create event: {e}")))?,
    };
    Ok((create, room_id))
}

pub async fn create_room(
    ctx: RoomCtx<'_>,
    default_version: &RoomVersionId,
    creator: &UserId,
    request: CreateRoom,
) -> Result<OwnedRoomId> {
    Ok(create_room_with_message(ctx, default_version, creator, request).await?.room_id)
}

/// As [`create_room`], with the request's `first_message` sent in the room too.
pub async fn create_room_with_message(
    ctx: RoomCtx<'_>,
    default_version: &RoomVersionId,
    creator: &UserId,
    request: CreateRoom,
) -> Result<CreatedRoom> {
    let join = member_content(ctx.pool, creator, MembershipState::Join, None).await?;
    let planned = plan(ctx, default_version, creator, request, join, Invitees::OneByOne).await?;
    // The whole room commits in one transaction, or nothing of it does: an event the auth rules
    // refuse half-way (say, malformed power_level_content_override) leaves no half-made room.
    let mut tx = ctx.pool.begin().await?;
    let mut reservation = ctx.streams.reserve();
    let (events, created) = build_in(ctx, &mut tx, creator, planned).await?;
    let (held, appended) = events.persist(&mut tx, &mut reservation).await?;
    commit_events(ctx, tx, reservation, &created.room_id, &appended).await?;
    drop(held);
    tracing::info!(room_id = %created.room_id, %creator, "created room");
    Ok(created)
}

/// Rooms to create for one creator, each with its first message: as many
/// [`create_room_with_message`], in one transaction and one commit. A room that cannot be made
/// (its invitee refuses invites, say) fails alone; when the shared transaction fails, each
/// room is tried again in its own, so one bad room never costs the others theirs. The results
/// are in the order of `requests`.
pub async fn create_rooms_with_messages(
    ctx: RoomCtx<'_>,
    default_version: &RoomVersionId,
    creator: &UserId,
    requests: Vec<CreateRoom>,
) -> Result<Vec<Result<CreatedRoom>>> {
    // The creator's join is the same in every room, and the invitees are read together.
    let join = member_content(ctx.pool, creator, MembershipState::Join, None).await?;
    let (mut refused, contents) = read_invitees(ctx, creator, &requests).await?;
    let mut results: Vec<Option<Result<CreatedRoom>>> = Vec::with_capacity(requests.len());
    let mut planned = Vec::with_capacity(requests.len());
    for (index, request) in requests.iter().enumerate() {
        if let Some(error) = request.invite.iter().find_map(|invitee| refused.remove(invitee)) {
            results.push(Some(Err(error)));
            continue;
        }
        match plan(ctx, default_version, creator, request.clone(), join.clone(), Invitees::Read(&contents)).await {
            Ok(room) => {
                results.push(None);
                planned.push((index, room));
            }
            Err(error) => results.push(Some(Err(error))),
        }
    }
    let indices: Vec<usize> = planned.iter().map(|(index, _)| *index).collect();
    match create_together(ctx, creator, planned).await {
        Ok(created) => {
            for (index, room) in indices.iter().zip(created) {
                results[*index] = Some(Ok(room));
            }
        }
        Err(Error::Unavailable(error)) => return Err(Error::Unavailable(error)),
        Err(error) => {
            tracing::warn!(%error, rooms = indices.len(), "creating rooms together failed; one by one instead");
            for index in indices {
                let request = requests.get(index).cloned().unwrap_or_default();
                results[index] = Some(create_room_with_message(ctx, default_version, creator, request).await);
            }
        }
    }
    Ok(results.into_iter().map(|result| result.unwrap_or_else(|| Err(Error::internal("a room left out")))).collect())
}

/// The planned rooms in one transaction, committed together.
async fn create_together(
    ctx: RoomCtx<'_>,
    creator: &UserId,
    planned: Vec<(usize, Planned)>,
) -> Result<Vec<CreatedRoom>> {
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = ctx.pool.begin().await?;
    let mut reservation = ctx.streams.reserve();
    let opened = open_together(ctx, &mut tx, creator, &planned).await?;
    let mut built = Vec::with_capacity(planned.len());
    let mut created = Vec::with_capacity(planned.len());
    for ((_, room), (create, held)) in planned.into_iter().zip(opened) {
        let (events, room) = build_events(ctx, &mut tx, creator, room, create, held).await?;
        built.push(events);
        created.push(room);
    }
    let persisted = persist_all(built, &mut tx, &mut reservation).await?;
    let rooms: Vec<(&RoomId, &[Appended])> =
        persisted.iter().map(|(held, appended)| (held.room_id(), appended.as_slice())).collect();
    commit_new_rooms(ctx, tx, reservation, &rooms).await?;
    drop(persisted);
    tracing::info!(rooms = created.len(), %creator, "created rooms together");
    Ok(created)
}

/// A room creation validated, with everything it reads from the database read: what
/// [`create_in`] needs to make it inside a transaction.
struct Planned {
    version: RoomVersionId,
    rules: RoomVersionRules,
    request: CreateRoom,
    preset: Preset,
    /// The signed create event's template.
    create: EventTemplate,
    /// The creator's join.
    join: Value,
    /// The local invitees' invites.
    invites: Vec<(OwnedUserId, Value)>,
}

/// How a creation learns of its local invitees.
enum Invitees<'r> {
    /// Each checked and read on its own (one room at a time).
    OneByOne,
    /// Checked already (see [`read_invitees`]), with each one's invite content.
    Read(&'r HashMap<OwnedUserId, Value>),
}

/// Checks the local invitees of every request at once, as `validate` checks those of one
/// (two statements whatever their number): who refuses (or has no account) and why, and the
/// invite content of the others.
async fn read_invitees(
    ctx: RoomCtx<'_>,
    creator: &UserId,
    requests: &[CreateRoom],
) -> Result<(HashMap<OwnedUserId, Error>, HashMap<OwnedUserId, Value>)> {
    let mut local: Vec<&UserId> = requests
        .iter()
        .flat_map(|request| &request.invite)
        .filter(|invitee| invitee.server_name() == ctx.server_name)
        .map(|invitee| invitee.as_ref())
        .collect();
    local.sort_unstable();
    local.dedup();
    let ids: Vec<&str> = local.iter().map(|user| user.as_str()).collect();
    let accounts = db::users::accounts_and_profiles(ctx.pool, &ids).await?;
    let (existing, unknown): (Vec<&UserId>, Vec<&UserId>) =
        local.into_iter().partition(|user| accounts.contains_key(user.as_str()));
    let mut refused = crate::users::invite_permission::invites_refused(ctx.pool, &existing, creator).await?;
    refused.extend(unknown.into_iter().map(|user| (user.to_owned(), unknown_user(user))));
    let contents = existing
        .into_iter()
        .filter(|user| !refused.contains_key(*user))
        .map(|user| {
            let profile = accounts.get(user.as_str()).and_then(Option::as_ref);
            (user.to_owned(), member_content_of(profile, MembershipState::Invite, None))
        })
        .collect();
    Ok((refused, contents))
}

/// Validates a creation and reads what it needs; `join` is the creator's member content.
async fn plan(
    ctx: RoomCtx<'_>,
    default_version: &RoomVersionId,
    creator: &UserId,
    request: CreateRoom,
    join: Value,
    invitees: Invitees<'_>,
) -> Result<Planned> {
    let version = request.version.clone().unwrap_or_else(|| default_version.clone());
    let rules = rules_for(&version)?;
    let preset = request.preset.unwrap_or(if request.public { Preset::PublicChat } else { Preset::PrivateChat });
    validate(ctx, creator, &request, matches!(invitees, Invitees::OneByOne)).await?;

    // 1. The create event.
    let mut create_content = match &request.creation_content {
        Some(Value::Object(content)) => content.clone(),
        Some(_) => return Err(Error::bad_json("creation_content must be an object")),
        None => Map::new(),
    };
    create_content.insert("room_version".into(), json!(version.as_str()));
    if !rules.authorization.use_room_create_sender {
        create_content.insert("creator".into(), json!(creator));
    }
    let trusted_invitees = preset == Preset::TrustedPrivateChat;
    if rules.authorization.additional_room_creators && trusted_invitees && !request.invite.is_empty() {
        // Room v12: in a trusted private chat the invitees are creators too.
        create_content.insert("additional_creators".into(), json!(request.invite));
    }
    let create = EventTemplate::state(StateEventType::RoomCreate, "", Value::Object(create_content));

    // 8. (read ahead) Invitations of local users; those of other servers need their server's
    // signature first, which the caller asks for once the room exists
    // (`federation::membership::invite`).
    let mut invites = Vec::new();
    for invitee in request.invite.iter().filter(|invitee| invitee.server_name() == ctx.server_name) {
        let mut content = match invitees {
            Invitees::OneByOne => member_content(ctx.pool, invitee, MembershipState::Invite, None).await?,
            Invitees::Read(contents) => {
                contents.get(invitee).cloned().ok_or_else(|| Error::internal("an invitee left unread"))?
            }
        };
        if request.is_direct {
            content["is_direct"] = json!(true);
        }
        invites.push((invitee.clone(), content));
    }
    Ok(Planned { version, rules, request, preset, create, join, invites })
}

/// The planned rooms' create events, with their rooms locked and recorded in `tx` in two
/// statements whatever their number. A room id taken already (see [`open_in`]) fails them
/// all; made one by one, each tries again with another.
async fn open_together(
    ctx: RoomCtx<'_>,
    tx: &mut PgConnection,
    creator: &UserId,
    planned: &[(usize, Planned)],
) -> Result<Vec<(Pdu, HeldRoomLock)>> {
    let mut creates = Vec::with_capacity(planned.len());
    for (_, room) in planned {
        creates.push(create_event(ctx, &room.rules, creator, &room.create)?);
    }
    let room_ids: Vec<&RoomId> = creates.iter().map(|(_, room_id)| room_id.as_ref()).collect();
    // Two rooms of the same content made in the same millisecond are one room id: this task
    // would wait for itself on the second's lock.
    let distinct: std::collections::HashSet<&RoomId> = room_ids.iter().copied().collect();
    if distinct.len() != room_ids.len() {
        return Err(Error::internal("room id collision among rooms created together"));
    }
    let held = ctx.locks.lock_new_in(&mut *tx, &room_ids).await?;
    let rows: Vec<(&str, &str)> =
        room_ids.iter().zip(planned).map(|(room_id, (_, room))| (room_id.as_str(), room.version.as_str())).collect();
    let inserted = db::rooms::insert_many(&mut *tx, &rows, creator.as_str(), now_ms()).await?;
    if inserted.len() != rows.len() {
        return Err(Error::internal("room id collision among rooms created together"));
    }
    Ok(creates.into_iter().map(|(create, _)| create).zip(held).collect())
}

/// Opens a planned room in `tx` (its lock and its `rooms` row) and builds its events, to be
/// stored with [`NewRoomEvents::persist`] or [`persist_all`] in the same transaction.
async fn build_in<'a>(
    ctx: RoomCtx<'a>,
    tx: &mut PgConnection,
    creator: &'a UserId,
    planned: Planned,
) -> Result<(NewRoomEvents<'a>, CreatedRoom)> {
    let (create, held) = open_in(ctx, tx, creator, &planned).await?;
    build_events(ctx, tx, creator, planned, create, held).await
}

/// A planned room's create event, with the room locked and recorded in `tx`.
async fn open_in(
    ctx: RoomCtx<'_>,
    tx: &mut PgConnection,
    creator: &UserId,
    planned: &Planned,
) -> Result<(Pdu, HeldRoomLock)> {
    let mut attempts = 0;
    loop {
        let (create, room_id) = create_event(ctx, &planned.rules, creator, &planned.create)?;
        let held = ctx.locks.lock_in(&mut *tx, &room_id).await?;
        let version = planned.version.as_str();
        if db::rooms::insert(&mut *tx, room_id.as_str(), version, creator.as_str(), now_ms()).await? {
            return Ok((create, held));
        }
        // Where the room id is the create event's hash, the same user creating two rooms with
        // the same content in the same millisecond makes the same event: the second waits
        // for the next millisecond, whose timestamp makes its event (and room) another one.
        attempts += 1;
        if attempts >= MAX_CREATE_ATTEMPTS {
            return Err(Error::internal("room id collision"));
        }
        drop(held);
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// Builds the events of a planned room opened in `tx` (its create event and lock): its
/// alias and directory entry are written, the rest is built in memory.
async fn build_events<'a>(
    ctx: RoomCtx<'a>,
    tx: &mut PgConnection,
    creator: &'a UserId,
    planned: Planned,
    create: Pdu,
    held: HeldRoomLock,
) -> Result<(NewRoomEvents<'a>, CreatedRoom)> {
    let Planned { version, rules, request, preset, create: _, join, invites } = planned;
    let trusted_invitees = preset == Preset::TrustedPrivateChat;
    let room_id = held.room_id().to_owned();
    // An alias taken since `validate` fails the whole creation.
    if let Some(alias) = &request.alias {
        aliases::insert_for_new_room(&mut *tx, alias, &room_id, creator).await?;
    }
    if request.public {
        db::directory::set_published(&mut *tx, room_id.as_str(), true).await?;
    }

    // 2. The creator joins. The events are built here and stored together at the end.
    let mut room = NewRoom { events: NewRoomEvents::new(ctx, held, rules.clone(), create), creator };
    room.add(StateEventType::RoomMember, creator.as_str(), join)?;
    // 3. Power levels.
    let mut power_levels = default_power_levels();
    if !rules.authorization.explicitly_privilege_room_creators {
        power_levels["users"][creator.as_str()] = json!(100);
        if trusted_invitees {
            for invitee in &request.invite {
                power_levels["users"][invitee.as_str()] = json!(100);
            }
        }
    }
    if let Some(Value::Object(overrides)) = &request.power_level_content_override {
        for (key, value) in overrides {
            power_levels[key] = value.clone();
        }
    }
    room.add(StateEventType::RoomPowerLevels, "", power_levels)?;

    // 4. The canonical alias, unless initial_state sets it itself (as Synapse).
    if let Some(alias) = &request.alias
        && !request.initial_state.iter().any(|(t, k, _)| t == "m.room.canonical_alias" && k.is_empty())
    {
        let content = aliases::canonical_alias_content(alias);
        room.add(StateEventType::RoomCanonicalAlias, "", content)?;
    }

    // 5. The preset's rules, unless initial_state sets them itself.
    let (join_rule, guest_access) = match preset {
        Preset::PublicChat => ("public", "forbidden"),
        Preset::PrivateChat | Preset::TrustedPrivateChat => ("invite", "can_join"),
    };
    let preset_state = [
        (StateEventType::RoomJoinRules, json!({"join_rule": join_rule})),
        (StateEventType::RoomHistoryVisibility, json!({"history_visibility": "shared"})),
        (StateEventType::RoomGuestAccess, json!({"guest_access": guest_access})),
    ];
    for (kind, content) in preset_state {
        let overridden = request.initial_state.iter().any(|(t, k, _)| *t == kind.to_string() && k.is_empty());
        let left_out = request.lean && kind != StateEventType::RoomJoinRules;
        if !overridden && !left_out {
            room.add(kind, "", content)?;
        }
    }

    // 6. Initial state, then 7. name and topic (which win over initial_state).
    for (kind, state_key, content) in &request.initial_state {
        let replaced_by_field =
            (kind == "m.room.name" && request.name.is_some()) || (kind == "m.room.topic" && request.topic.is_some());
        if !replaced_by_field {
            room.add(kind.as_str().into(), state_key, content.clone())?;
        }
    }
    if let Some(name) = &request.name {
        room.add(StateEventType::RoomName, "", json!({"name": name}))?;
    }
    if let Some(topic) = &request.topic {
        room.add(StateEventType::RoomTopic, "", json!({"topic": topic}))?;
    }

    // 8. Invitations of local users, read ahead (see `plan`).
    for (invitee, content) in invites {
        room.add(StateEventType::RoomMember, invitee.as_str(), content)?;
    }
    // 9. The first message, last.
    let first_message = match &request.first_message {
        Some(message) => {
            let transaction = Transaction { device_id: &message.device_id, txn_id: &message.txn_id };
            Some(room.events.add(creator, message.template.clone(), Some(transaction))?.to_owned())
        }
        None => None,
    };
    tracing::debug!(%room_id, %creator, version = %version, "room built");
    Ok((room.events, CreatedRoom { room_id, first_message }))
}

/// A room being created: its events are the creator's, built in order in memory and stored
/// together inside the creation's transaction, which holds the room's lock.
struct NewRoom<'a> {
    events: NewRoomEvents<'a>,
    creator: &'a UserId,
}

impl NewRoom<'_> {
    fn add(&mut self, kind: StateEventType, state_key: &str, content: Value) -> Result<()> {
        let template = EventTemplate::state(kind, state_key, content);
        self.events.add(self.creator, template, None)?;
        Ok(())
    }
}

/// Refuses what would fail half-way, before anything is written; the local invitees too, when
/// `check_invitees` (else they were checked together with other rooms').
async fn validate(ctx: RoomCtx<'_>, creator: &UserId, request: &CreateRoom, check_invitees: bool) -> Result<()> {
    for (kind, _, content) in &request.initial_state {
        if !content.is_object() {
            return Err(Error::bad_json(format!("initial_state content for {kind} must be an object")));
        }
        if kind == "m.room.create" || kind == "m.room.member" {
            return Err(Error::bad_json(format!("initial_state may not contain {kind}")));
        }
        if kind == "m.room.canonical_alias" {
            aliases::validate_initial_canonical_alias(content, request.alias.as_deref())?;
        }
    }
    if let Some(alias) = &request.alias {
        aliases::ensure_free(ctx.pool, alias).await?;
    }
    if let Some(overrides) = &request.power_level_content_override
        && !overrides.is_object()
    {
        return Err(Error::bad_json("power_level_content_override must be an object"));
    }
    for invitee in request.invite.iter().filter(|invitee| check_invitees && invitee.server_name() == ctx.server_name) {
        // Before anything is written: an invitee who cannot be invited fails the whole creation.
        crate::rooms::membership::ensure_invitable(ctx, invitee, creator).await?;
    }
    Ok(())
}

/// Synapse's defaults, which clients have come to expect.
fn default_power_levels() -> Value {
    json!({
        "users": {},
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
    })
}
