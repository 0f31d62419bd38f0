//! Whether this process can serve: what `/health` (and, later, metrics and the admin API)
//! report. That is whether the database answers *and takes writes*: a server that can read
//! but not write (a read-only or recovering PostgreSQL, a lost connection that cannot be
//! replaced) would accept every message and fail it, so it is not healthy.

use crate::store::Store;
use crate::streams::Streams;

pub(crate) enum Health {
    Serving,
    DatabaseUnreachable(String),
    CannotWrite(String),
}

pub(crate) async fn check(pool: &Store, streams: &Streams) -> Health {
    if let Err(error) = crate::db::ping(pool).await {
        return Health::DatabaseUnreachable(error.to_string());
    }
    // Through the stream writer's own connection: every write needs it, and the check
    // replaces it if it was cut.
    match streams.tracker.check_writable().await {
        Ok(()) => Health::Serving,
        Err(error) => Health::CannotWrite(error.to_string()),
    }
}
