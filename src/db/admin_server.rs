//! What the admin API reads about the server as a whole: event reports, federation
//! destinations, media per user.

use crate::db::media::Media;
use sqlx::{FromRow, PgExecutor};

/// A report of an event, with the facts an admin reviews it by.
#[derive(Clone, Debug, FromRow)]
pub(crate) struct EventReport {
    pub id: i64,
    pub received_ts: i64,
    pub room_id: String,
    pub event_id: String,
    pub user_id: String,
    pub reason: Option<String>,
    pub score: Option<i32>,
    pub sender: Option<String>,
    pub name: Option<String>,
    pub canonical_alias: Option<String>,
    /// The reported event as stored (canonical JSON text), if this server has it.
    pub event_json: Option<String>,
}

fn report_columns() -> String {
    format!(
        "SELECT r.report_id AS id, r.created_ts AS received_ts, r.room_id, r.event_id, r.reporter AS user_id,
            r.reason, r.score, e.sender, {name} AS name, {alias} AS canonical_alias, e.json AS event_json
         FROM reports r
         LEFT JOIN event_ids i ON i.event_id = r.event_id
         LEFT JOIN events e ON e.event_nid = i.event_nid",
        name = crate::db::admin_rooms::state_field("m.room.name", "name"),
        alias = crate::db::admin_rooms::state_field("m.room.canonical_alias", "alias"),
    )
}

/// Event reports (room and user reports are kept too, but Synapse lists those elsewhere):
/// `$1` reporter contains, `$2` room id contains.
const REPORT_FILTER: &str = " WHERE r.event_id IS NOT NULL AND r.room_id IS NOT NULL
    AND ($1::text IS NULL OR strpos(r.reporter, $1) > 0) AND ($2::text IS NULL OR strpos(r.room_id, $2) > 0)";

pub(crate) async fn event_reports(
    db: impl PgExecutor<'_>,
    reporter: Option<&str>,
    room_id: Option<&str>,
    newest_first: bool,
    offset: i64,
    limit: i64,
) -> sqlx::Result<Vec<EventReport>> {
    let direction = if newest_first { "DESC" } else { "ASC" };
    let sql = format!(
        "{}{REPORT_FILTER} ORDER BY r.created_ts {direction}, r.report_id {direction} LIMIT $3 OFFSET $4",
        report_columns()
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(reporter).bind(room_id).bind(limit).bind(offset).fetch_all(db).await
}

pub(crate) async fn count_event_reports(
    db: impl PgExecutor<'_>,
    reporter: Option<&str>,
    room_id: Option<&str>,
) -> sqlx::Result<i64> {
    let sql = format!("SELECT count(*) FROM reports r{REPORT_FILTER}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(reporter).bind(room_id).fetch_one(db).await
}

pub(crate) async fn event_report(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<EventReport>> {
    let sql =
        format!("{} WHERE r.report_id = $1 AND r.event_id IS NOT NULL AND r.room_id IS NOT NULL", report_columns());
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db).await
}

pub(crate) async fn delete_event_report(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<bool> {
    let deleted =
        sqlx::query("DELETE FROM reports WHERE report_id = $1 AND event_id IS NOT NULL").bind(id).execute(db).await?;
    Ok(deleted.rows_affected() == 1)
}

/// A federation destination as `federation_destination_status` shows it.
pub(crate) use crate::db::federation_queue::DestinationStatus;

pub(crate) async fn destinations(
    db: impl PgExecutor<'_>,
    contains: Option<&str>,
    offset: i64,
    limit: i64,
) -> sqlx::Result<Vec<DestinationStatus>> {
    sqlx::query_as(
        "SELECT destination, depth, last_success_ts, failing_since_ts, failures, last_error, backoff_ms, retry_at_ts
         FROM federation_destination_status WHERE ($1::text IS NULL OR strpos(destination, $1) > 0)
         ORDER BY destination LIMIT $2 OFFSET $3",
    )
    .bind(contains)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

pub(crate) async fn count_destinations(db: impl PgExecutor<'_>, contains: Option<&str>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM federation_destination_status WHERE ($1::text IS NULL OR strpos(destination, $1) > 0)",
    )
    .bind(contains)
    .fetch_one(db)
    .await
}

/// A room that federates with a destination, as the admin API lists it.
#[derive(Clone, Debug, FromRow)]
pub(crate) struct DestinationRoom {
    pub room_id: String,
    /// The room's newest local event that no longer waits in the destination's queue (so it
    /// was delivered or needed no delivery); `None` before the room has any.
    pub stream_ordering: Option<i64>,
}

/// The rooms in which `destination` has joined members, by room id (`descending` reverses).
pub(crate) async fn destination_rooms(
    db: impl PgExecutor<'_>,
    destination: &str,
    local_server: &str,
    descending: bool,
    offset: i64,
    limit: i64,
) -> sqlx::Result<Vec<DestinationRoom>> {
    let order = if descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT rs.room_id,
            (SELECT max(e.stream_position) FROM events e
             WHERE e.room_id = rs.room_id AND e.stream_position IS NOT NULL
               AND user_server_name(e.sender) = $2
               AND NOT EXISTS (SELECT 1 FROM federation_queue q
                               WHERE q.destination = $1 AND q.event_nid = e.event_nid)) AS stream_ordering
         FROM room_servers rs WHERE rs.server_name = $1
         ORDER BY rs.room_id COLLATE \"C\" {order} LIMIT $3 OFFSET $4"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(destination)
        .bind(local_server)
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await
}

pub(crate) async fn count_destination_rooms(db: impl PgExecutor<'_>, destination: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM room_servers WHERE server_name = $1").bind(destination).fetch_one(db).await
}

/// Forgets a destination's backoff, so the sender tries it again at its next look; false if
/// the destination is unknown.
pub(crate) async fn reset_backoff(db: impl PgExecutor<'_>, destination: &str) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE federation_destinations
         SET failures = 0, failing_since_ts = NULL, backoff_ms = 0, retry_at_ts = NULL WHERE destination = $1",
    )
    .bind(destination)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// A page of a user's uploads, newest first.
pub(crate) async fn media_of(
    db: impl PgExecutor<'_>,
    uploader: &str,
    offset: i64,
    limit: i64,
) -> sqlx::Result<Vec<Media>> {
    sqlx::query_as("SELECT * FROM media WHERE uploader = $1 ORDER BY created_at DESC, media_id LIMIT $2 OFFSET $3")
        .bind(uploader)
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await
}

pub(crate) async fn count_media_of(db: impl PgExecutor<'_>, uploader: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM media WHERE uploader = $1").bind(uploader).fetch_one(db).await
}

/// Per local uploader: `(user_id, displayname, media_count, media_length)`, largest first.
#[derive(Clone, Debug, FromRow)]
pub(crate) struct UploaderStats {
    pub user_id: String,
    pub displayname: Option<String>,
    pub media_count: i64,
    pub media_length: i64,
}

pub(crate) async fn media_statistics(
    db: impl PgExecutor<'_>,
    origin: &str,
    offset: i64,
    limit: i64,
) -> sqlx::Result<Vec<UploaderStats>> {
    sqlx::query_as(
        "SELECT m.uploader AS user_id, u.profile->>'displayname' AS displayname, count(*) AS media_count,
                coalesce(sum(m.size), 0)::BIGINT AS media_length
         FROM media m LEFT JOIN users u ON u.user_id = m.uploader
         WHERE m.origin = $1 GROUP BY m.uploader, u.profile
         ORDER BY media_length DESC, user_id LIMIT $2 OFFSET $3",
    )
    .bind(origin)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

pub(crate) async fn count_uploaders(db: impl PgExecutor<'_>, origin: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(DISTINCT uploader) FROM media WHERE origin = $1").bind(origin).fetch_one(db).await
}

/// Local media ids created before `before_ts` and larger than `size_gt` bytes (pending ids,
/// with no bytes yet, count as size 0), oldest first.
pub(crate) async fn local_media_before(
    db: impl PgExecutor<'_>,
    origin: &str,
    before_ts: i64,
    size_gt: i64,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT media_id FROM media WHERE origin = $1 AND created_at < $2 AND coalesce(size, 0) > $3
         ORDER BY created_at, media_id",
    )
    .bind(origin)
    .bind(before_ts)
    .bind(size_gt)
    .fetch_all(db)
    .await
}
