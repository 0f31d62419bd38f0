//! Device-list changes: which users' devices or keys changed at which stream position, and
//! who shares rooms with whom, for `/sync`'s `device_lists` and `/keys/changes`.

use sqlx::PgExecutor;

pub(crate) async fn record_change(db: impl PgExecutor<'_>, user_id: &str, stream_position: i64) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO device_list_changes (stream_position, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(stream_position)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(())
}

/// The position of `user_id`'s latest device-list change before `position`: the `prev_id` of
/// the change at `position` as other servers hear of it.
pub(crate) async fn previous_change(
    db: impl PgExecutor<'_>,
    user_id: &str,
    position: i64,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT MAX(stream_position) FROM device_list_changes WHERE user_id = $1 AND stream_position < $2",
    )
    .bind(user_id)
    .bind(position)
    .fetch_one(db)
    .await
}

/// Users `user` should re-fetch keys for after the window `(since, upto]`: those who share a
/// joined room with them (or are them) and whose keys changed in the window, and those who
/// came to share a room in it (either side joined).
pub(crate) async fn changed(db: impl PgExecutor<'_>, user: &str, since: i64, upto: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "WITH mine AS (
             SELECT room_id, joined_position FROM room_memberships WHERE user_id = $1 AND membership = 'join'
         ),
         peers AS (
             SELECT m.user_id, m.joined_position AS their_join, mine.joined_position AS my_join
             FROM room_memberships m JOIN mine USING (room_id)
             WHERE m.membership = 'join'
         )
         SELECT DISTINCT c.user_id FROM device_list_changes c
         WHERE c.stream_position > $2 AND c.stream_position <= $3
           AND (c.user_id = $1 OR c.user_id IN (SELECT user_id FROM peers))
         UNION
         SELECT user_id FROM peers
         WHERE user_id <> $1
           AND ((their_join > $2 AND their_join <= $3) OR (my_join > $2 AND my_join <= $3))
         ORDER BY 1",
    )
    .bind(user)
    .bind(since)
    .bind(upto)
    .fetch_all(db)
    .await
}

/// Users who stopped sharing any joined room with `user` through a leave in `(since, upto]`
/// (theirs, or `user`'s own).
pub(crate) async fn left(db: impl PgExecutor<'_>, user: &str, since: i64, upto: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "WITH candidates AS (
             SELECT m.user_id FROM room_memberships m
             JOIN room_memberships me ON me.room_id = m.room_id AND me.user_id = $1 AND me.membership = 'join'
             WHERE m.membership IN ('leave', 'ban') AND m.stream_position > $2 AND m.stream_position <= $3
             UNION
             SELECT m.user_id FROM room_memberships m
             JOIN room_memberships me ON me.room_id = m.room_id AND me.user_id = $1
                 AND me.membership IN ('leave', 'ban')
             WHERE me.stream_position > $2 AND me.stream_position <= $3
               AND (m.membership = 'join' OR m.stream_position > $2)
         )
         SELECT DISTINCT c.user_id FROM candidates c
         WHERE c.user_id <> $1 AND NOT EXISTS (
             SELECT 1 FROM room_memberships a
             JOIN room_memberships b ON b.room_id = a.room_id AND b.user_id = c.user_id AND b.membership = 'join'
             WHERE a.user_id = $1 AND a.membership = 'join'
         )
         ORDER BY 1",
    )
    .bind(user)
    .bind(since)
    .bind(upto)
    .fetch_all(db)
    .await
}

/// Whose syncs a change to these users' device lists concerns, as wake-up keys: the users
/// themselves (their other devices) and the rooms they are in (everyone sharing one).
pub(crate) async fn audience(db: impl PgExecutor<'_>, users: &[String]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT DISTINCT room_id FROM room_memberships WHERE user_id = ANY($1) AND membership = 'join'
         UNION SELECT UNNEST($1::text[])",
    )
    .bind(users)
    .fetch_all(db)
    .await
}
