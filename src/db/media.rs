//! Media metadata (migration 0022): one row per mxc URI, thumbnails per content hash.

use sqlx::{FromRow, PgExecutor};

#[derive(Clone, Debug, FromRow)]
pub struct Media {
    pub origin: String,
    pub media_id: String,
    pub uploader: String,
    pub created_at: i64,
    pub unused_expires_at: Option<i64>,
    pub uploaded_at: Option<i64>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub authenticated_only: bool,
    pub quarantined: bool,
    /// Protected by an admin: quarantine leaves it alone.
    pub safe_from_quarantine: bool,
}

#[derive(Clone, Debug, FromRow)]
pub struct Thumbnail {
    pub sha256: String,
    pub requested_width: i32,
    pub requested_height: i32,
    pub method: String,
    pub width: i32,
    pub height: i32,
    pub content_type: String,
    pub size: i64,
}

/// The bytes of an upload, as stored.
pub(crate) struct Content<'a> {
    pub sha256: &'a str,
    pub size: i64,
    pub content_type: Option<&'a str>,
    pub filename: Option<&'a str>,
}

/// Serializes work on one content hash across processes (storing it versus deleting its last
/// reference), for the rest of the transaction.
pub(crate) async fn lock_content(db: impl PgExecutor<'_>, sha256: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('media:' || $1, 0))").bind(sha256).execute(db).await?;
    Ok(())
}

pub(crate) async fn get(db: impl PgExecutor<'_>, origin: &str, media_id: &str) -> sqlx::Result<Option<Media>> {
    sqlx::query_as("SELECT * FROM media WHERE origin = $1 AND media_id = $2")
        .bind(origin)
        .bind(media_id)
        .fetch_optional(db)
        .await
}

/// Records a finished upload under a new media id.
pub(crate) async fn insert_uploaded(
    db: impl PgExecutor<'_>,
    origin: &str,
    media_id: &str,
    uploader: &str,
    content: &Content<'_>,
    authenticated_only: bool,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO media (origin, media_id, uploader, created_at, uploaded_at, content_type, filename, size,
                            sha256, authenticated_only)
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9)",
    )
    .bind(origin)
    .bind(media_id)
    .bind(uploader)
    .bind(now_ms)
    .bind(content.content_type)
    .bind(content.filename)
    .bind(content.size)
    .bind(content.sha256)
    .bind(authenticated_only)
    .execute(db)
    .await?;
    Ok(())
}

/// Records another server's media fetched from it; its uploader is that server. A row
/// inserted meanwhile (another process fetched it too) is kept.
pub(crate) async fn insert_remote(
    db: impl PgExecutor<'_>,
    origin: &str,
    media_id: &str,
    content: &Content<'_>,
    authenticated_only: bool,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO media (origin, media_id, uploader, created_at, uploaded_at, content_type, filename, size,
                            sha256, authenticated_only)
         VALUES ($1, $2, $1, $3, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (origin, media_id) DO NOTHING",
    )
    .bind(origin)
    .bind(media_id)
    .bind(now_ms)
    .bind(content.content_type)
    .bind(content.filename)
    .bind(content.size)
    .bind(content.sha256)
    .bind(authenticated_only)
    .execute(db)
    .await?;
    Ok(())
}

/// Records a media id handed out for a later upload.
pub(crate) async fn insert_pending(
    db: impl PgExecutor<'_>,
    origin: &str,
    media_id: &str,
    uploader: &str,
    now_ms: i64,
    expires_at: i64,
    authenticated_only: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO media (origin, media_id, uploader, created_at, unused_expires_at, authenticated_only)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(origin)
    .bind(media_id)
    .bind(uploader)
    .bind(now_ms)
    .bind(expires_at)
    .bind(authenticated_only)
    .execute(db)
    .await?;
    Ok(())
}

/// How many unexpired pending ids a user holds.
pub(crate) async fn count_pending(db: impl PgExecutor<'_>, uploader: &str, now_ms: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM media WHERE uploader = $1 AND uploaded_at IS NULL AND unused_expires_at > $2",
    )
    .bind(uploader)
    .bind(now_ms)
    .fetch_one(db)
    .await
}

/// Fills a pending id with its bytes; false if it was no longer pending (uploaded meanwhile,
/// or expired).
pub(crate) async fn fill_pending(
    db: impl PgExecutor<'_>,
    origin: &str,
    media_id: &str,
    content: &Content<'_>,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE media SET uploaded_at = $3, content_type = $4, filename = $5, size = $6, sha256 = $7,
                          unused_expires_at = NULL
         WHERE origin = $1 AND media_id = $2 AND uploaded_at IS NULL AND unused_expires_at > $3",
    )
    .bind(origin)
    .bind(media_id)
    .bind(now_ms)
    .bind(content.content_type)
    .bind(content.filename)
    .bind(content.size)
    .bind(content.sha256)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Forgets pending ids that were never uploaded to in time.
pub(crate) async fn delete_expired_pending(db: impl PgExecutor<'_>, now_ms: i64) -> sqlx::Result<u64> {
    let deleted = sqlx::query("DELETE FROM media WHERE uploaded_at IS NULL AND unused_expires_at <= $1")
        .bind(now_ms)
        .execute(db)
        .await?;
    Ok(deleted.rows_affected())
}

pub(crate) async fn delete(db: impl PgExecutor<'_>, origin: &str, media_id: &str) -> sqlx::Result<Option<Media>> {
    sqlx::query_as("DELETE FROM media WHERE origin = $1 AND media_id = $2 RETURNING *")
        .bind(origin)
        .bind(media_id)
        .fetch_optional(db)
        .await
}

/// Whether any media id still names this content.
pub(crate) async fn content_referenced(db: impl PgExecutor<'_>, sha256: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM media WHERE sha256 = $1)").bind(sha256).fetch_one(db).await
}

pub(crate) async fn set_quarantined(
    db: impl PgExecutor<'_>,
    origin: &str,
    media_id: &str,
    quarantined: bool,
) -> sqlx::Result<bool> {
    // Protected media stays as it is, and the media exists all the same (Synapse answers 200).
    let updated = sqlx::query(
        "UPDATE media SET quarantined = CASE WHEN $3 AND safe_from_quarantine THEN quarantined ELSE $3 END
         WHERE origin = $1 AND media_id = $2",
    )
    .bind(origin)
    .bind(media_id)
    .bind(quarantined)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Protects media from quarantine (or lifts the protection); false if there is no such media.
pub(crate) async fn set_protected(
    db: impl PgExecutor<'_>,
    origin: &str,
    media_id: &str,
    protected: bool,
) -> sqlx::Result<bool> {
    let updated = sqlx::query("UPDATE media SET safe_from_quarantine = $3 WHERE origin = $1 AND media_id = $2")
        .bind(origin)
        .bind(media_id)
        .bind(protected)
        .execute(db)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Quarantines everything `uploader` uploaded that is not protected; returns how many media
/// ids were newly quarantined.
pub(crate) async fn quarantine_uploads_of(db: impl PgExecutor<'_>, uploader: &str) -> sqlx::Result<u64> {
    let updated = sqlx::query(
        "UPDATE media SET quarantined = TRUE WHERE uploader = $1 AND NOT quarantined AND NOT safe_from_quarantine",
    )
    .bind(uploader)
    .execute(db)
    .await?;
    Ok(updated.rows_affected())
}

/// Quarantines every media the room's events name (`mxc://` URIs anywhere in them: images,
/// files, thumbnails, avatars) that is not protected; returns how many were newly quarantined.
pub(crate) async fn quarantine_named_in_room(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<u64> {
    let sql = format!(
        "UPDATE media m SET quarantined = TRUE
         FROM ({NAMED_IN_ROOM}) named
         WHERE m.origin = named.uri[1] AND m.media_id = named.uri[2]
           AND NOT m.quarantined AND NOT m.safe_from_quarantine"
    );
    let updated = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id).execute(db).await?;
    Ok(updated.rows_affected())
}

/// The distinct `mxc://` URIs named anywhere in the events of room `$1`, as `uri[1]` (the
/// origin) and `uri[2]` (the media id).
const NAMED_IN_ROOM: &str =
    "SELECT DISTINCT regexp_matches(e.json, 'mxc://([A-Za-z0-9.:\\[\\]-]+)/([A-Za-z0-9_-]+)', 'g') AS uri
     FROM events e WHERE e.room_id = $1";

/// The media a room's events name, as (origin, media id), whether stored here or not.
pub(crate) async fn named_in_room(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<Vec<(String, String)>> {
    let sql = format!("SELECT named.uri[1], named.uri[2] FROM ({NAMED_IN_ROOM}) named ORDER BY 1, 2");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(room_id).fetch_all(db).await
}

/// A user's uploads, newest first (for the admin API).
pub(crate) async fn list_by_uploader(db: impl PgExecutor<'_>, uploader: &str, limit: i64) -> sqlx::Result<Vec<Media>> {
    sqlx::query_as("SELECT * FROM media WHERE uploader = $1 ORDER BY created_at DESC, media_id LIMIT $2")
        .bind(uploader)
        .bind(limit)
        .fetch_all(db)
        .await
}

pub(crate) async fn get_thumbnail(
    db: impl PgExecutor<'_>,
    sha256: &str,
    width: i32,
    height: i32,
    method: &str,
) -> sqlx::Result<Option<Thumbnail>> {
    sqlx::query_as(
        "SELECT sha256, requested_width, requested_height, method, width, height, content_type, size
         FROM media_thumbnails
         WHERE sha256 = $1 AND requested_width = $2 AND requested_height = $3 AND method = $4",
    )
    .bind(sha256)
    .bind(width)
    .bind(height)
    .bind(method)
    .fetch_optional(db)
    .await
}

/// Records a thumbnail; a concurrent identical one wins quietly (the bytes are the same).
pub(crate) async fn insert_thumbnail(db: impl PgExecutor<'_>, thumbnail: &Thumbnail, now_ms: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO media_thumbnails
             (sha256, requested_width, requested_height, method, width, height, content_type, size, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT DO NOTHING",
    )
    .bind(&thumbnail.sha256)
    .bind(thumbnail.requested_width)
    .bind(thumbnail.requested_height)
    .bind(&thumbnail.method)
    .bind(thumbnail.width)
    .bind(thumbnail.height)
    .bind(&thumbnail.content_type)
    .bind(thumbnail.size)
    .bind(now_ms)
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets every thumbnail of a content, returning them so their bytes can be deleted.
pub(crate) async fn delete_thumbnails(db: impl PgExecutor<'_>, sha256: &str) -> sqlx::Result<Vec<Thumbnail>> {
    sqlx::query_as(
        "DELETE FROM media_thumbnails WHERE sha256 = $1
         RETURNING sha256, requested_width, requested_height, method, width, height, content_type, size",
    )
    .bind(sha256)
    .fetch_all(db)
    .await
}
