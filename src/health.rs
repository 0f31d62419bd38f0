//! Whether this process can serve: what `/health` (and, later, metrics and the admin API)
//! report. Today that is whether the database answers; a process without it can answer
//! nothing but errors.

use sqlx::PgPool;

pub enum Health {
    Serving,
    DatabaseUnreachable(String),
}

pub async fn check(pool: &PgPool) -> Health {
    match crate::db::ping(pool).await {
        Ok(()) => Health::Serving,
        Err(error) => Health::DatabaseUnreachable(error.to_string()),
    }
}
