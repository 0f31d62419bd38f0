//! What the admin API reads and keeps about rooms: listings with the facts Synapse shows,
//! blocked rooms, background room deletions, forward extremities.

use serde_json::Value;
use sqlx::{FromRow, PgExecutor};

/// A room as an admin sees it, from its current state and memberships.
#[derive(Clone, Debug, FromRow)]
pub(crate) struct RoomSummary {
    pub room_id: String,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub avatar: Option<String>,
    pub canonical_alias: Option<String>,
    pub joined_members: i64,
    pub joined_local_members: i64,
    pub version: String,
    pub creator: String,
    pub encryption: Option<String>,
    pub federatable: bool,
    pub public: bool,
    pub join_rules: Option<String>,
    pub guest_access: Option<String>,
    pub history_visibility: Option<String>,
    pub state_events: i64,
    pub room_type: Option<String>,
}

/// A field of a current state event's content, as text. Stored events are canonical JSON
/// text; one holding an escaped U+0000 (which jsonb refuses) reads as absent instead of failing
/// the whole listing.
pub(crate) fn state_field(event_type: &str, field: &str) -> String {
    format!(
        "(SELECT CASE WHEN strpos(e.json, '\\u0000') > 0 THEN NULL ELSE (e.json::jsonb)->'content'->>'{field}' END
          FROM state_keys k JOIN current_state cs ON cs.state_key_nid = k.state_key_nid AND cs.room_id = r.room_id
          JOIN events e ON e.event_nid = cs.event_nid
          WHERE k.event_type = '{event_type}' AND k.state_key = '')"
    )
}

/// The listing's statement: every room with its facts, as `listed`. `$1` is this server's
/// name (for local members).
fn summaries() -> String {
    let federate = state_field("m.room.create", "m.federate");
    format!(
        "SELECT r.room_id, {name} AS name, {topic} AS topic, {avatar} AS avatar,
            {alias} AS canonical_alias,
            (SELECT count(*) FROM room_memberships m WHERE m.room_id = r.room_id AND m.membership = 'join')
                AS joined_members,
            (SELECT count(*) FROM room_memberships m WHERE m.room_id = r.room_id AND m.membership = 'join'
                AND split_part(m.user_id, ':', 2) = $1) AS joined_local_members,
            r.room_version AS version, r.creator, {encryption} AS encryption,
            coalesce({federate} <> 'false', TRUE) AS federatable, r.published AS public,
            {join_rules} AS join_rules, {guest_access} AS guest_access,
            {history_visibility} AS history_visibility,
            (SELECT count(*) FROM current_state cs WHERE cs.room_id = r.room_id) AS state_events,
            {room_type} AS room_type
         FROM rooms r",
        name = state_field("m.room.name", "name"),
        topic = state_field("m.room.topic", "topic"),
        avatar = state_field("m.room.avatar", "url"),
        alias = state_field("m.room.canonical_alias", "alias"),
        encryption = state_field("m.room.encryption", "algorithm"),
        join_rules = state_field("m.room.join_rules", "join_rule"),
        guest_access = state_field("m.room.guest_access", "guest_access"),
        history_visibility = state_field("m.room.history_visibility", "history_visibility"),
        room_type = state_field("m.room.create", "type"),
    )
}

/// A column rooms can be listed by (Synapse's `order_by` values); the SQL is fixed here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoomOrder {
    Name,
    CanonicalAlias,
    JoinedMembers,
    JoinedLocalMembers,
    Version,
    Creator,
    Encryption,
    Federatable,
    Public,
    JoinRules,
    GuestAccess,
    HistoryVisibility,
    StateEvents,
}

impl RoomOrder {
    /// Counts (and versions) list largest first going forwards, as Synapse does.
    fn largest_first(self) -> bool {
        matches!(
            self,
            RoomOrder::JoinedMembers | RoomOrder::JoinedLocalMembers | RoomOrder::Version | RoomOrder::StateEvents
        )
    }

    fn column(self) -> &'static str {
        match self {
            RoomOrder::Name => "name",
            RoomOrder::CanonicalAlias => "canonical_alias",
            RoomOrder::JoinedMembers => "joined_members",
            RoomOrder::JoinedLocalMembers => "joined_local_members",
            RoomOrder::Version => "version",
            RoomOrder::Creator => "creator",
            RoomOrder::Encryption => "encryption",
            RoomOrder::Federatable => "federatable",
            RoomOrder::Public => "public",
            RoomOrder::JoinRules => "join_rules",
            RoomOrder::GuestAccess => "guest_access",
            RoomOrder::HistoryVisibility => "history_visibility",
            RoomOrder::StateEvents => "state_events",
        }
    }
}

/// Rooms whose name, canonical alias or id contains `$2` (any case), if given.
const SEARCH: &str = " WHERE ($2::text IS NULL OR strpos(lower(coalesce(name, '')), lower($2)) > 0
    OR strpos(lower(coalesce(canonical_alias, '')), lower($2)) > 0 OR strpos(room_id, $2) > 0)";

/// A page of rooms, ordered by `order` (then by room id, so pages are stable).
pub(crate) async fn list(
    db: impl PgExecutor<'_>,
    server_name: &str,
    search: Option<&str>,
    order: RoomOrder,
    descending: bool,
    offset: i64,
    limit: i64,
) -> sqlx::Result<Vec<RoomSummary>> {
    let direction = if descending != order.largest_first() { "DESC" } else { "ASC" };
    // Only fixed text is formatted into the statement: the column comes from `RoomOrder`.
    let sql = format!(
        "SELECT * FROM ({}) AS listed{SEARCH} ORDER BY {} {direction}, room_id ASC LIMIT $3 OFFSET $4",
        summaries(),
        order.column()
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(server_name).bind(search).bind(limit).bind(offset).fetch_all(db).await
}

pub(crate) async fn count(db: impl PgExecutor<'_>, server_name: &str, search: Option<&str>) -> sqlx::Result<i64> {
    let sql = format!("SELECT count(*) FROM ({}) AS listed{SEARCH}", summaries());
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(server_name).bind(search).fetch_one(db).await
}

pub(crate) async fn get(
    db: impl PgExecutor<'_>,
    server_name: &str,
    room_id: &str,
) -> sqlx::Result<Option<RoomSummary>> {
    let sql = format!("SELECT * FROM ({}) AS listed WHERE room_id = $2", summaries());
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(server_name).bind(room_id).fetch_optional(db).await
}

/// Who currently holds a membership in the room (of the given kinds), local or not.
pub(crate) async fn members_with(
    db: impl PgExecutor<'_>,
    room_id: &str,
    memberships: &[&str],
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT user_id FROM room_memberships WHERE room_id = $1 AND membership = ANY($2) ORDER BY user_id",
    )
    .bind(room_id)
    .bind(memberships)
    .fetch_all(db)
    .await
}

/// Who blocked the room, if it is blocked.
pub(crate) async fn blocked_by(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT blocked_by FROM blocked_rooms WHERE room_id = $1").bind(room_id).fetch_optional(db).await
}

pub(crate) async fn block(db: impl PgExecutor<'_>, room_id: &str, by: &str, now_ms: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO blocked_rooms (room_id, blocked_by, blocked_ts) VALUES ($1, $2, $3)
         ON CONFLICT (room_id) DO NOTHING",
    )
    .bind(room_id)
    .bind(by)
    .bind(now_ms)
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) async fn unblock(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM blocked_rooms WHERE room_id = $1").bind(room_id).execute(db).await?;
    Ok(())
}

/// One background deletion of a room.
#[derive(Clone, Debug, FromRow)]
pub(crate) struct RoomDeletion {
    pub delete_id: String,
    pub room_id: String,
    pub status: String,
    pub error: Option<String>,
    pub outcome: Option<Value>,
}

/// The admin API's background tasks on rooms, each kept in a table of its own for its status
/// endpoints.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RoomTask {
    /// `DELETE /v2/rooms/{roomId}` (`room_deletions`, starting as 'scheduled').
    Deletion,
    /// `POST /v1/purge_history/{roomId}` (`history_purges`, starting as 'active').
    HistoryPurge,
}

/// Records a new task of `kind` on the room.
pub(crate) async fn insert_task(
    db: impl PgExecutor<'_>,
    kind: RoomTask,
    task_id: &str,
    room_id: &str,
    requested_by: &str,
    now_ms: i64,
) -> sqlx::Result<()> {
    let insert = match kind {
        RoomTask::Deletion => {
            "INSERT INTO room_deletions (delete_id, room_id, requested_by, status, created_ts)
             VALUES ($1, $2, $3, 'scheduled', $4)"
        }
        RoomTask::HistoryPurge => {
            "INSERT INTO history_purges (purge_id, room_id, requested_by, status, created_ts)
             VALUES ($1, $2, $3, 'active', $4)"
        }
    };
    sqlx::query(insert).bind(task_id).bind(room_id).bind(requested_by).bind(now_ms).execute(db).await?;
    Ok(())
}

pub(crate) async fn set_deletion_status(
    db: impl PgExecutor<'_>,
    delete_id: &str,
    status: &str,
    error: Option<&str>,
    outcome: Option<&Value>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE room_deletions SET status = $2, error = $3, outcome = coalesce($4, outcome) WHERE delete_id = $1",
    )
    .bind(delete_id)
    .bind(status)
    .bind(error)
    .bind(outcome)
    .execute(db)
    .await?;
    Ok(())
}

const DELETION: &str = "SELECT delete_id, room_id, status, error, outcome FROM room_deletions";

pub(crate) async fn deletion(db: impl PgExecutor<'_>, delete_id: &str) -> sqlx::Result<Option<RoomDeletion>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{DELETION} WHERE delete_id = $1")))
        .bind(delete_id)
        .fetch_optional(db)
        .await
}

pub(crate) async fn deletions_of_room(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<Vec<RoomDeletion>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{DELETION} WHERE room_id = $1 ORDER BY created_ts, delete_id")))
        .bind(room_id)
        .fetch_all(db)
        .await
}

/// A forward extremity of a room: `(event_id, depth, received_ts)`.
pub(crate) async fn forward_extremities(
    db: impl PgExecutor<'_>,
    room_id: &str,
) -> sqlx::Result<Vec<(String, i64, i64)>> {
    sqlx::query_as(
        "SELECT i.event_id, e.depth, e.origin_server_ts
         FROM forward_extremities f
         JOIN events e ON e.event_nid = f.event_nid
         JOIN event_ids i ON i.event_nid = f.event_nid
         WHERE f.room_id = $1 ORDER BY e.depth, i.event_id",
    )
    .bind(room_id)
    .fetch_all(db)
    .await
}
