//! The stream writers table and the global stream position (see migration 0007).

use sqlx::{PgConnection, PgExecutor};

/// Two-key advisory lock class for writer liveness locks (key 2 is the writer id).
pub(crate) const WRITER_LOCK_CLASS: i32 = 0x4845_5354; // "HEST"

/// Registers a writer and takes its liveness lock on `conn`, which must stay open for the
/// writer's lifetime.
pub(crate) async fn register_writer(conn: &mut PgConnection, now_ms: i64) -> sqlx::Result<i32> {
    let writer_id: i32 = sqlx::query_scalar("INSERT INTO stream_writers (started_ts) VALUES ($1) RETURNING writer_id")
        .bind(now_ms)
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query("SELECT pg_advisory_lock($1, $2)").bind(WRITER_LOCK_CLASS).bind(writer_id).execute(conn).await?;
    Ok(writer_id)
}

/// Takes `writer_id`'s liveness lock again on a new connection, after the one that held it
/// failed. True when the writer's row is still there (nobody reaped it meanwhile): then the
/// writer goes on under the same id. False leaves no lock taken.
pub(crate) async fn reclaim_writer(conn: &mut PgConnection, writer_id: i32) -> sqlx::Result<bool> {
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(WRITER_LOCK_CLASS)
        .bind(writer_id)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(false);
    }
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM stream_writers WHERE writer_id = $1)")
        .bind(writer_id)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        sqlx::query("SELECT pg_advisory_unlock($1, $2)").bind(WRITER_LOCK_CLASS).bind(writer_id).execute(conn).await?;
    }
    Ok(exists)
}

/// Commits on this connection stop waiting for the WAL flush (they are still atomic and
/// immediately visible).
pub(crate) async fn relax_durability(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SET synchronous_commit TO off").execute(conn).await?;
    Ok(())
}

/// Forgets writers whose process has died (their liveness lock is free). Their unfinished
/// transactions died with their connections, so they block nothing any more.
pub(crate) async fn remove_dead_writers(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    let removed = sqlx::query(
        "DELETE FROM stream_writers w WHERE NOT EXISTS (
             SELECT 1 FROM pg_locks l
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1::bigint
               AND l.objid::bigint = w.writer_id::bigint AND l.objsubid = 2)",
    )
    .bind(i64::from(WRITER_LOCK_CLASS) & 0xffff_ffff)
    .execute(db)
    .await?;
    Ok(removed.rows_affected())
}

/// Publishes (or, with `None`, clears) the writer's lowest possibly-in-flight position.
pub(crate) async fn set_blocking_from(
    db: impl PgExecutor<'_>,
    writer_id: i32,
    blocking_from: Option<i64>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE stream_writers SET blocking_from = $2 WHERE writer_id = $1")
        .bind(writer_id)
        .bind(blocking_from)
        .execute(db)
        .await?;
    Ok(())
}

/// Publishes as the writer's floor the lowest position `nextval` can still return, and returns
/// it, in one round trip.
pub(crate) async fn publish_next_position_floor(db: impl PgExecutor<'_>, writer_id: i32) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "UPDATE stream_writers
         SET blocking_from = (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM stream_positions)
         WHERE writer_id = $1
         RETURNING blocking_from",
    )
    .bind(writer_id)
    .fetch_one(db)
    .await
}

/// [`set_blocking_from`], then [`notify`], in one round trip. Both take effect at the
/// statement's commit, so a listener woken by the notification sees the new floor.
pub(crate) async fn set_blocking_from_and_notify(
    db: impl PgExecutor<'_>,
    writer_id: i32,
    blocking_from: Option<i64>,
    payload: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "WITH floor AS (UPDATE stream_writers SET blocking_from = $2 WHERE writer_id = $1)
         SELECT pg_notify('hearth_stream', $3)",
    )
    .bind(writer_id)
    .bind(blocking_from)
    .bind(payload)
    .execute(db)
    .await?;
    Ok(())
}

/// A write that changes nothing, to learn whether the database takes writes at all.
pub(crate) async fn touch_writer(conn: &mut PgConnection, writer_id: i32) -> sqlx::Result<()> {
    sqlx::query("UPDATE stream_writers SET blocking_from = blocking_from WHERE writer_id = $1")
        .bind(writer_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn allocate_position(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT nextval('stream_positions')").fetch_one(conn).await
}

/// `count` new positions in one round trip, ascending.
pub(crate) async fn allocate_positions(conn: &mut PgConnection, count: i64) -> sqlx::Result<Vec<i64>> {
    let mut positions: Vec<i64> = sqlx::query_scalar("SELECT nextval('stream_positions') FROM generate_series(1, $1)")
        .bind(count)
        .fetch_all(conn)
        .await?;
    positions.sort_unstable();
    Ok(positions)
}

/// How [`allocate_on_control`] moves the writer's floor before it takes positions.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NewFloor {
    /// The published floor already covers every position `nextval` can return.
    Keep,
    /// Publish this floor.
    At(i64),
    /// Publish the lowest position `nextval` can still return.
    Next,
}

/// Takes `count` positions (ascending) on the writer's own connection (autocommit), after
/// publishing `floor`, in one round trip: the floor's update is committed — visible to every
/// reader — before the positions exist, as the ordering argument of `streams::tracker` needs.
/// Returns the floor published (`None` with [`NewFloor::Keep`]) and the positions.
pub(crate) async fn allocate_on_control(
    conn: &mut PgConnection,
    writer_id: i32,
    floor: NewFloor,
    count: i64,
) -> sqlx::Result<(Option<i64>, Vec<i64>)> {
    use sqlx::Row;
    let value = match floor {
        NewFloor::Keep => return Ok((None, allocate_positions(conn, count).await?)),
        NewFloor::At(floor) => floor.to_string(),
        NewFloor::Next => {
            "(SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM stream_positions)".to_owned()
        }
    };
    // A simple query carries no parameters: the values are integers, written as literals. Its
    // statements run in order, and the `COMMIT` ends the floor's transaction before `nextval`.
    // The first column tells the floor's row (missing if the writer was reaped) from positions.
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; UPDATE stream_writers SET blocking_from = {value} WHERE writer_id = {writer_id} \
         RETURNING 0, blocking_from; COMMIT; SELECT 1, nextval('stream_positions') FROM generate_series(1, {count})"
    )))
    .fetch_all(conn)
    .await?;
    let mut published = None;
    let mut positions = Vec::with_capacity(rows.len());
    for row in &rows {
        let value: i64 = row.try_get(1)?;
        match row.try_get::<i32, _>(0)? {
            0 => published = Some(value),
            _ => positions.push(value),
        }
    }
    // Positions taken without their floor are never used: they are gaps, which readers skip.
    let published = published.ok_or(sqlx::Error::RowNotFound)?;
    positions.sort_unstable();
    Ok((Some(published), positions))
}

/// The highest position handed out so far (0 before any).
pub(crate) async fn last_allocated(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM stream_positions")
        .fetch_one(db)
        .await
}

/// The lowest position any live writer may still commit.
pub(crate) async fn lowest_blocking(db: impl PgExecutor<'_>) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT min(blocking_from) FROM stream_writers").fetch_one(db).await
}

/// Tells every Hearth process listening on the stream channel what changed.
pub(crate) async fn notify(db: impl PgExecutor<'_>, payload: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify('hearth_stream', $1)").bind(payload).execute(db).await?;
    Ok(())
}
