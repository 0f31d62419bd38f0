//! Global (`room_id = ''`) and per-room account data.

use crate::db::json::StoredJson;
use serde_json::Value;
use sqlx::PgExecutor;

/// Stores the content at `stream_position` (taken from the stream tracker).
pub(crate) async fn put(
    db: impl PgExecutor<'_>,
    user_id: &str,
    room_id: &str,
    data_type: &str,
    content: &Value,
    stream_position: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO account_data (user_id, room_id, data_type, content, stream_position) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (user_id, room_id, data_type)
           DO UPDATE SET content = EXCLUDED.content, stream_position = EXCLUDED.stream_position",
    )
    .bind(user_id)
    .bind(room_id)
    .bind(data_type)
    .bind(content)
    .bind(stream_position)
    .execute(db)
    .await?;
    Ok(())
}

/// The content, or `None`; content that cannot be read counts as none (see [`StoredJson`]).
pub(crate) async fn get(
    db: impl PgExecutor<'_>,
    user_id: &str,
    room_id: &str,
    data_type: &str,
) -> sqlx::Result<Option<Value>> {
    let found: Option<StoredJson> =
        sqlx::query_scalar("SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3")
            .bind(user_id)
            .bind(room_id)
            .bind(data_type)
            .fetch_optional(db)
            .await?;
    Ok(found.and_then(StoredJson::into_value))
}

/// The global account data of these types of several users: `(user_id, data_type, content)`
/// for each that exists and can be read.
pub(crate) async fn global_of_users(
    db: impl PgExecutor<'_>,
    user_ids: &[&str],
    data_types: &[&str],
) -> sqlx::Result<Vec<(String, String, Value)>> {
    let rows: Vec<(String, String, StoredJson)> = sqlx::query_as(
        "SELECT user_id, data_type, content FROM account_data
         WHERE user_id = ANY($1) AND room_id = '' AND data_type = ANY($2)",
    )
    .bind(user_ids)
    .bind(data_types)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().filter_map(|(user, kind, content)| Some((user, kind, content.into_value()?))).collect())
}

/// The size (as JSON text) of all the user's account data but one entry: what a rewrite of
/// that entry adds its new size to.
pub(crate) async fn total_bytes_except(
    db: impl PgExecutor<'_>,
    user_id: &str,
    room_id: &str,
    data_type: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COALESCE(SUM(octet_length(content::text)), 0)::BIGINT FROM account_data
         WHERE user_id = $1 AND NOT (room_id = $2 AND data_type = $3)",
    )
    .bind(user_id)
    .bind(room_id)
    .bind(data_type)
    .fetch_one(db)
    .await
}

/// Where a keyed member of account data lives: `content[field][member]` of one entry
/// (`m.tag`'s `tags`, `m.ignored_user_list`'s `ignored_users`).
#[derive(Clone, Copy)]
pub(crate) struct ObjectMember<'a> {
    pub user_id: &'a str,
    pub room_id: &'a str,
    pub data_type: &'a str,
    pub field: &'a str,
    pub member: &'a str,
}

/// The entry with `content[field][member]` set to `value`, everything else kept; one
/// statement, so concurrent changes of different members both stay.
pub(crate) async fn set_member(
    db: impl PgExecutor<'_>,
    at: ObjectMember<'_>,
    value: &Value,
    stream_position: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO account_data (user_id, room_id, data_type, content, stream_position)
         VALUES ($1, $2, $3, jsonb_build_object($4::text, jsonb_build_object($5::text, $6::jsonb)), $7)
         ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET
           content = jsonb_set(
             account_data.content || jsonb_build_object($4::text, COALESCE(
               CASE WHEN jsonb_typeof(account_data.content -> $4::text) = 'object' THEN account_data.content -> $4::text END,
               '{}'::jsonb)),
             ARRAY[$4::text, $5::text], $6::jsonb),
           stream_position = EXCLUDED.stream_position",
    )
    .bind(at.user_id)
    .bind(at.room_id)
    .bind(at.data_type)
    .bind(at.field)
    .bind(at.member)
    .bind(value)
    .bind(stream_position)
    .execute(db)
    .await?;
    Ok(())
}

/// Appends rooms to a user's global `m.direct` (`additions`: `{user_id: [room_id, ...]}`),
/// every other entry and room kept; one statement, so a concurrent change of another entry
/// stays (an entry that is not an array is replaced).
///
/// A creator's `m.direct` after a broadcast to thousands is a large value, stored compressed
/// out of line: each mention of the stored column decompresses all of it again, which, twice
/// per added entry, made a chunk of 500 cost a second at 10,000 entries. It is decompressed
/// once here (the materialised `current`) and looked into from memory.
pub(crate) async fn add_direct_rooms(
    db: impl PgExecutor<'_>,
    user_id: &str,
    additions: &Value,
    stream_position: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO account_data (user_id, room_id, data_type, content, stream_position)
         VALUES ($1, '', 'm.direct', $2::jsonb, $3)
         ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET
           content = (
             WITH current AS MATERIALIZED (SELECT account_data.content || '{}'::jsonb AS content)
             SELECT current.content || (
                 SELECT COALESCE(jsonb_object_agg(added.key, COALESCE(
                          CASE WHEN jsonb_typeof(current.content -> added.key) = 'array'
                               THEN current.content -> added.key END,
                          '[]'::jsonb) || added.value), '{}'::jsonb)
                 FROM jsonb_each(EXCLUDED.content) AS added)
             FROM current),
           stream_position = EXCLUDED.stream_position",
    )
    .bind(user_id)
    .bind(additions)
    .bind(stream_position)
    .execute(db)
    .await?;
    Ok(())
}

/// The entry without `content[field][member]`; `false` if the user has no such entry.
pub(crate) async fn remove_member(
    db: impl PgExecutor<'_>,
    at: ObjectMember<'_>,
    stream_position: i64,
) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "UPDATE account_data SET content = content #- ARRAY[$4::text, $5::text], stream_position = $6
         WHERE user_id = $1 AND room_id = $2 AND data_type = $3",
    )
    .bind(at.user_id)
    .bind(at.room_id)
    .bind(at.data_type)
    .bind(at.field)
    .bind(at.member)
    .bind(stream_position)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Where a room tag lives.
fn tag_at<'a>(user_id: &'a str, room_id: &'a str, tag: &'a str) -> ObjectMember<'a> {
    ObjectMember { user_id, room_id, data_type: "m.tag", field: "tags", member: tag }
}

/// The room's `m.tag` account data with `tag` set to `info`, the other tags kept.
pub(crate) async fn set_tag(
    db: impl PgExecutor<'_>,
    user_id: &str,
    room_id: &str,
    tag: &str,
    info: &Value,
    stream_position: i64,
) -> sqlx::Result<()> {
    set_member(db, tag_at(user_id, room_id, tag), info, stream_position).await
}

/// The room's `m.tag` account data without `tag`; `false` if the user has no tags there.
pub(crate) async fn remove_tag(
    db: impl PgExecutor<'_>,
    user_id: &str,
    room_id: &str,
    tag: &str,
    stream_position: i64,
) -> sqlx::Result<bool> {
    remove_member(db, tag_at(user_id, room_id, tag), stream_position).await
}
