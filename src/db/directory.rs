//! Room aliases, the public room directory and the user directory.

use sqlx::{FromRow, PgConnection, PgExecutor};

/// Escapes `%`, `_` and `\` so that user input matches literally inside a `LIKE` pattern
/// (backslash is PostgreSQL's default escape character).
fn like_escape(term: &str) -> String {
    let mut escaped = String::with_capacity(term.len());
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// `%term%`, lower-cased, for a case-insensitive substring match against `lower(column)`.
fn contains_pattern(term: &str) -> String {
    format!("%{}%", like_escape(&term.to_lowercase()))
}

// ---------------------------------------------------------------------------------------
// Aliases

/// Stores a new alias; `false` when the alias is taken (the primary key decides, so two
/// concurrent creations of one alias cannot both succeed).
pub(crate) async fn insert_alias(
    db: impl PgExecutor<'_>,
    room_alias: &str,
    room_id: &str,
    creator: &str,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO room_aliases (room_alias, room_id, creator, created_ts) VALUES ($1, $2, $3, $4)
         ON CONFLICT (room_alias) DO NOTHING",
    )
    .bind(room_alias)
    .bind(room_id)
    .bind(creator)
    .bind(now_ms)
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

#[derive(Clone, Debug, FromRow)]
pub(crate) struct Alias {
    pub room_id: String,
    pub creator: String,
}

pub(crate) async fn alias(db: impl PgExecutor<'_>, room_alias: &str) -> sqlx::Result<Option<Alias>> {
    sqlx::query_as("SELECT room_id, creator FROM room_aliases WHERE room_alias = $1")
        .bind(room_alias)
        .fetch_optional(db)
        .await
}

/// Removes an alias; returns the room it pointed to, `None` if there was no such alias.
pub(crate) async fn delete_alias(db: impl PgExecutor<'_>, room_alias: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("DELETE FROM room_aliases WHERE room_alias = $1 RETURNING room_id")
        .bind(room_alias)
        .fetch_optional(db)
        .await
}

/// The local aliases of a room, oldest first.
pub(crate) async fn aliases_for_room(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT room_alias FROM room_aliases WHERE room_id = $1 ORDER BY created_ts, room_alias COLLATE \"C\"",
    )
    .bind(room_id)
    .fetch_all(db)
    .await
}

// ---------------------------------------------------------------------------------------
// Publication in the room directory

/// Whether the room is published; `None` for a room this server does not know.
pub(crate) async fn is_published(db: impl PgExecutor<'_>, room_id: &str) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar("SELECT published FROM rooms WHERE room_id = $1").bind(room_id).fetch_optional(db).await
}

/// Publishes or unpublishes a room; `false` for a room this server does not know.
pub(crate) async fn set_published(conn: &mut PgConnection, room_id: &str, published: bool) -> sqlx::Result<bool> {
    let updated = sqlx::query("UPDATE rooms SET published = $2 WHERE room_id = $1")
        .bind(room_id)
        .bind(published)
        .execute(conn)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// One room of the public directory, with what its current state says about it. Every text
/// field is `None` when the state is absent or the content field is not a string.
#[derive(Clone, Debug, FromRow)]
pub(crate) struct PublicRoom {
    pub room_id: String,
    pub joined_members: i64,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub canonical_alias: Option<String>,
    pub avatar_url: Option<String>,
    pub join_rule: Option<String>,
    pub history_visibility: Option<String>,
    pub guest_access: Option<String>,
    pub room_type: Option<String>,
}

/// Which published rooms a listing shows.
#[derive(Clone, Debug, Default)]
pub(crate) struct PublicRoomsFilter<'a> {
    /// Matched case-insensitively as a substring of the name, topic or canonical alias.
    pub search_term: Option<&'a str>,
    /// `Some((types, include_untyped))` keeps rooms whose `m.room.create` type is one of
    /// `types`, or which have no type if `include_untyped`.
    pub room_types: Option<(&'a [String], bool)>,
}

/// Published rooms with their directory fields from current state, then only those a
/// directory shows (as Synapse: joinable by anyone — public or knock join rules — or
/// world-readable, and not empty), filtered. `$1`–`$4` are the filter.
macro_rules! matching_public_rooms {
    () => {
        "WITH listed AS (
            SELECT r.room_id,
                (SELECT count(*) FROM room_memberships m
                 WHERE m.room_id = r.room_id AND m.membership = 'join') AS joined_members,
                st.name, st.topic, st.canonical_alias, st.avatar_url, st.join_rule,
                st.history_visibility, st.guest_access, st.room_type
            FROM rooms r
            CROSS JOIN LATERAL (
                SELECT
                    max(s.value) FILTER (WHERE s.event_type = 'm.room.name') AS name,
                    max(s.value) FILTER (WHERE s.event_type = 'm.room.topic') AS topic,
                    max(s.value) FILTER (WHERE s.event_type = 'm.room.canonical_alias') AS canonical_alias,
                    max(s.value) FILTER (WHERE s.event_type = 'm.room.avatar') AS avatar_url,
                    max(s.value) FILTER (WHERE s.event_type = 'm.room.join_rules') AS join_rule,
                    max(s.value) FILTER (WHERE s.event_type = 'm.room.history_visibility') AS history_visibility,
                    max(s.value) FILTER (WHERE s.event_type = 'm.room.guest_access') AS guest_access,
                    max(s.value) FILTER (WHERE s.event_type = 'm.room.create') AS room_type
                FROM (
                    SELECT k.event_type,
                        CASE WHEN jsonb_typeof(c.content -> f.field) = 'string'
                             THEN c.content ->> f.field END AS value
                    FROM current_state cs
                    JOIN state_keys k ON k.state_key_nid = cs.state_key_nid
                    JOIN (VALUES
                        ('m.room.name', 'name'),
                        ('m.room.topic', 'topic'),
                        ('m.room.canonical_alias', 'alias'),
                        ('m.room.avatar', 'url'),
                        ('m.room.join_rules', 'join_rule'),
                        ('m.room.history_visibility', 'history_visibility'),
                        ('m.room.guest_access', 'guest_access'),
                        ('m.room.create', 'type')
                    ) AS f (event_type, field) ON f.event_type = k.event_type
                    JOIN events e ON e.event_nid = cs.event_nid
                    CROSS JOIN LATERAL (SELECT e.json::jsonb -> 'content' AS content) c
                    WHERE cs.room_id = r.room_id AND k.state_key = ''
                ) s
            ) st
            WHERE r.published
        ),
        matching AS (
            SELECT * FROM listed
            WHERE (join_rule IN ('public', 'knock', 'knock_restricted') OR history_visibility = 'world_readable')
              AND joined_members > 0
              AND ($1::text IS NULL
                   OR lower(name) LIKE $1 OR lower(topic) LIKE $1 OR lower(canonical_alias) LIKE $1)
              AND (NOT $2::boolean OR room_type = ANY($3::text[]) OR ($4::boolean AND room_type IS NULL))
        )"
    };
}

/// A page of the directory in its order — most joined members first, then room id
/// descending (as Synapse) — after the `(joined_members, room_id)` bound when given.
/// Backwards pages are the rooms before the bound, still returned in directory order.
pub(crate) async fn public_rooms(
    db: impl PgExecutor<'_>,
    filter: &PublicRoomsFilter<'_>,
    bound: Option<(i64, &str)>,
    forwards: bool,
    limit: i64,
) -> sqlx::Result<Vec<PublicRoom>> {
    const FORWARDS: &str = concat!(
        matching_public_rooms!(),
        " SELECT room_id, joined_members, name, topic, canonical_alias, avatar_url, join_rule,
                 history_visibility, guest_access, room_type
          FROM matching
          WHERE $5::bigint IS NULL OR joined_members < $5
             OR (joined_members = $5 AND room_id COLLATE \"C\" < $6::text COLLATE \"C\")
          ORDER BY joined_members DESC, room_id COLLATE \"C\" DESC
          LIMIT $7"
    );
    const BACKWARDS: &str = concat!(
        matching_public_rooms!(),
        " SELECT room_id, joined_members, name, topic, canonical_alias, avatar_url, join_rule,
                 history_visibility, guest_access, room_type
          FROM matching
          WHERE $5::bigint IS NULL OR joined_members > $5
             OR (joined_members = $5 AND room_id COLLATE \"C\" > $6::text COLLATE \"C\")
          ORDER BY joined_members ASC, room_id COLLATE \"C\" ASC
          LIMIT $7"
    );
    let (types, untyped) = filter.room_types.unwrap_or((&[], false));
    let mut rooms: Vec<PublicRoom> = sqlx::query_as(if forwards { FORWARDS } else { BACKWARDS })
        .bind(filter.search_term.map(contains_pattern))
        .bind(filter.room_types.is_some())
        .bind(types)
        .bind(untyped)
        .bind(bound.map(|(members, _)| members))
        .bind(bound.map(|(_, room_id)| room_id))
        .bind(limit)
        .fetch_all(db)
        .await?;
    if !forwards {
        rooms.reverse();
    }
    Ok(rooms)
}

/// How many rooms the filtered directory lists in all.
pub(crate) async fn count_public_rooms(db: impl PgExecutor<'_>, filter: &PublicRoomsFilter<'_>) -> sqlx::Result<i64> {
    let (types, untyped) = filter.room_types.unwrap_or((&[], false));
    sqlx::query_scalar(concat!(matching_public_rooms!(), " SELECT count(*) FROM matching"))
        .bind(filter.search_term.map(contains_pattern))
        .bind(filter.room_types.is_some())
        .bind(types)
        .bind(untyped)
        .fetch_one(db)
        .await
}

// ---------------------------------------------------------------------------------------
// The user directory

#[derive(Clone, Debug, FromRow)]
pub(crate) struct DirectoryUser {
    pub user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

/// Users whose id or display name contains `term` (case-insensitively) and whom `searcher`
/// may find: those who share a room with them, and the members of public rooms (join rule
/// `public` or history `world_readable`) — Synapse's default. Local users are found if active,
/// with their profile; remote users (this server has no account for them) with the name and
/// avatar of their newest join among those rooms, as the room shows them. Best matches first:
/// an exact id localpart or display name, then prefixes, then the rest.
pub(crate) async fn search_users(
    db: impl PgExecutor<'_>,
    searcher: &str,
    term: &str,
    limit: i64,
) -> sqlx::Result<Vec<DirectoryUser>> {
    let lowered = term.to_lowercase();
    let prefix = format!("{}%", like_escape(&lowered));
    sqlx::query_as(
        "WITH shared AS (
            SELECT other.user_id, other.event_nid, other.stream_position
            FROM room_memberships mine
            JOIN room_memberships other ON other.room_id = mine.room_id AND other.membership = 'join'
            WHERE mine.user_id = $1 AND mine.membership = 'join' AND other.user_id <> $1
        ),
        public_rooms AS (
            SELECT cs.room_id
            FROM state_keys k
            JOIN current_state cs ON cs.state_key_nid = k.state_key_nid
            JOIN events e ON e.event_nid = cs.event_nid
            WHERE k.state_key = ''
              AND ((k.event_type = 'm.room.join_rules'
                    AND e.json::jsonb -> 'content' ->> 'join_rule' = 'public')
                OR (k.event_type = 'm.room.history_visibility'
                    AND e.json::jsonb -> 'content' ->> 'history_visibility' = 'world_readable'))
        ),
        in_public AS (
            SELECT m.user_id, m.event_nid, m.stream_position FROM room_memberships m
            JOIN public_rooms p ON p.room_id = m.room_id
            WHERE m.membership = 'join'
        ),
        candidates AS (SELECT * FROM shared UNION SELECT * FROM in_public),
        found AS (
            SELECT u.user_id,
                CASE WHEN jsonb_typeof(u.profile -> 'displayname') = 'string'
                     THEN u.profile ->> 'displayname' END AS display_name,
                CASE WHEN jsonb_typeof(u.profile -> 'avatar_url') = 'string'
                     THEN u.profile ->> 'avatar_url' END AS avatar_url
            FROM (SELECT DISTINCT user_id FROM candidates) c JOIN users u ON u.user_id = c.user_id
            WHERE NOT u.deactivated
            UNION ALL
            SELECT * FROM (
                SELECT DISTINCT ON (c.user_id) c.user_id,
                    CASE WHEN jsonb_typeof(e.json::jsonb -> 'content' -> 'displayname') = 'string'
                         THEN e.json::jsonb -> 'content' ->> 'displayname' END AS display_name,
                    CASE WHEN jsonb_typeof(e.json::jsonb -> 'content' -> 'avatar_url') = 'string'
                         THEN e.json::jsonb -> 'content' ->> 'avatar_url' END AS avatar_url
                FROM candidates c JOIN events e ON e.event_nid = c.event_nid
                WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = c.user_id)
                ORDER BY c.user_id, c.stream_position DESC
            ) remote
        )
        SELECT user_id, display_name, avatar_url FROM found
        WHERE lower(user_id) LIKE $2 OR lower(display_name) LIKE $2
        ORDER BY
            CASE WHEN lower(display_name) = $3 OR lower(split_part(user_id, ':', 1)) = '@' || $3
                      OR lower(user_id) = $3 THEN 0
                 WHEN lower(display_name) LIKE $4 OR lower(user_id) LIKE '@' || $4
                      OR lower(user_id) LIKE $4 THEN 1
                 ELSE 2 END,
            user_id COLLATE \"C\"
        LIMIT $5",
    )
    .bind(searcher)
    .bind(contains_pattern(term))
    .bind(&lowered)
    .bind(&prefix)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Points every local alias of `from` at `to` (room upgrades); returns how many moved.
pub(crate) async fn move_aliases(conn: &mut PgConnection, from: &str, to: &str) -> sqlx::Result<u64> {
    let moved = sqlx::query("UPDATE room_aliases SET room_id = $2 WHERE room_id = $1")
        .bind(from)
        .bind(to)
        .execute(conn)
        .await?;
    Ok(moved.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_user_input_literally() {
        assert_eq!(contains_pattern("Tea"), "%tea%");
        assert_eq!(contains_pattern("100%_a\\b"), "%100\\%\\_a\\\\b%");
    }
}
