//! Queuing EDUs for other servers (migration 0032). Each writer runs inside the transaction of
//! the change the EDU announces, at that change's stream position; the rows are read and
//! acknowledged with the PDUs of the same destination (`federation_queue`).

use sqlx::PgConnection;

/// Which servers an EDU goes to: those with a joined member in a room, or those sharing a
/// joined room with a user.
pub(crate) enum Servers<'a> {
    OfRoom(&'a str),
    SharingWith(&'a str),
}

/// Queues `edu` for `servers`, never for `local`.
pub(crate) async fn enqueue_for(
    conn: &mut PgConnection,
    servers: Servers<'_>,
    local: &str,
    edu: &str,
    stream_position: i64,
) -> sqlx::Result<u64> {
    let (room_id, user_id) = match servers {
        Servers::OfRoom(room_id) => (Some(room_id), None),
        Servers::SharingWith(user_id) => (None, Some(user_id)),
    };
    let queued = sqlx::query(
        "INSERT INTO federation_edu_queue (destination, stream_position, edu)
         SELECT DISTINCT server_name, $4, $5 FROM (
             SELECT room_id, server_name FROM room_servers
             UNION ALL SELECT room_id, unnest(servers_in_room) FROM partial_state_rooms
         ) servers
         WHERE server_name <> $3
           AND (room_id = $1 OR room_id IN (SELECT room_id FROM room_memberships
                                            WHERE user_id = $2 AND membership = 'join'))",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(local)
    .bind(stream_position)
    .bind(edu)
    .execute(conn)
    .await?;
    Ok(queued.rows_affected())
}

/// Queues `edu` for one destination.
pub(crate) async fn enqueue_to(
    conn: &mut PgConnection,
    destination: &str,
    edu: &str,
    stream_position: i64,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO federation_edu_queue (destination, stream_position, edu) VALUES ($1, $2, $3)")
        .bind(destination)
        .bind(stream_position)
        .bind(edu)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether any server other than `local` has a joined member in `room_id` (so a change there
/// has somewhere to go).
pub(crate) async fn room_has_remote_servers(conn: &mut PgConnection, room_id: &str, local: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM room_servers WHERE room_id = $1 AND server_name <> $2)")
        .bind(room_id)
        .bind(local)
        .fetch_one(conn)
        .await
}
