//! Storage: all SQL lives below this module, and only SQL.
//!
//! Functions take any executor (`&PgPool` or `&mut *transaction`) so that the domain can
//! compose several writes into one transaction: a request commits whole or not at all.

pub(crate) mod account_data;
pub(crate) mod admin_rooms;
pub(crate) mod admin_server;
pub(crate) mod admin_users;
pub(crate) mod advisory_locks;
pub(crate) mod backfill;
pub mod broadcast;
pub(crate) mod cluster_keeper;
pub(crate) mod connection_health;
pub(crate) mod devices;
pub(crate) mod directory;
pub(crate) mod e2ee_cross_signing;
pub(crate) mod e2ee_device_lists;
pub(crate) mod e2ee_keys;
pub mod embedded;
pub(crate) mod ephemeral;
pub mod events;
pub(crate) mod federation_edu_queue;
pub mod federation_inbound;
pub mod federation_queue;
pub(crate) mod filters;
pub(crate) mod initial_reads;
pub(crate) mod json;
pub(crate) mod key_backup;
pub(crate) mod media;
pub(crate) mod new_room;
pub(crate) mod outside_room_state;
pub(crate) mod partial_state;
pub(crate) mod presence;
pub mod push_actions;
pub(crate) mod push_delivery;
pub(crate) mod push_rules;
pub(crate) mod pushers;
pub(crate) mod registration;
pub(crate) mod relations;
pub(crate) mod remote_device_lists;
pub(crate) mod reports;
pub(crate) mod room_purge;
pub mod rooms;
pub(crate) mod scram;
pub(crate) mod server_keys;
pub(crate) mod server_notices;
pub(crate) mod sliding_sync;
pub mod state;
pub(crate) mod streams;
pub(crate) mod sync;
pub(crate) mod tips;
pub(crate) mod to_device;
pub(crate) mod uia;
pub(crate) mod unread;
pub mod users;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Postgres};
use std::time::Duration;

pub(crate) type Transaction = sqlx::Transaction<'static, Postgres>;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool and brings the schema up to date (each migration in its own transaction;
/// sqlx serialises concurrent migrators with an advisory lock).
pub async fn open_pool(options: PgConnectOptions, max_connections: u32) -> anyhow::Result<PgPool> {
    // Generic plans, always: PostgreSQL otherwise weighs a fresh custom plan against the
    // generic one at every execution of a prepared statement, and for these multi-probe
    // statements it kept choosing custom ones — half of its CPU in a fan-out went to planning
    // (measured with perf: 24 % of all samples in `GetCachedPlan`, 7 % in execution). The
    // statements are written as index probes whose plan does not depend on the values.
    let options =
        options.options([("plan_cache_mode", "force_generic_plan")]).log_statements(tracing::log::LevelFilter::Trace);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        // No ping before every use: it doubled the round trips of every request (a /sync
        // makes dozens of queries). A connection that died meanwhile fails its next query
        // instead, and the pool then drops it.
        .test_before_acquire(false)
        // ...except after a connection was found dead: see `connection_health`.
        .before_acquire(|connection, metadata| {
            Box::pin(async move {
                if !connection_health::may_be_dead(metadata.idle_for) {
                    return Ok(true);
                }
                Ok(connection.ping().await.is_ok())
            })
        })
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")?;
    MIGRATOR.run(&pool).await.context("running database migrations")?;
    Ok(pool)
}

/// `options` with PostgreSQL's `synchronous_commit` set to `setting` (`"on"` or `"off"`, as
/// `database.synchronous_commit` allows) for every connection made from them. It travels in
/// the startup packet with the other session settings, so unlike a `SET` after connecting it
/// costs no round trip.
pub fn with_synchronous_commit(options: PgConnectOptions, setting: &str) -> PgConnectOptions {
    options.options([("synchronous_commit", setting)])
}

/// Creates `database` on the server behind `admin` (a connection to any other database)
/// unless it exists.
pub async fn ensure_database(admin: PgConnectOptions, database: &str) -> anyhow::Result<()> {
    let mut connection = PgConnection::connect_with(&admin).await.context("connecting to PostgreSQL")?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(database)
        .fetch_one(&mut connection)
        .await?;
    if !exists {
        let quoted = database.replace('"', "\"\"");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{quoted}\"")))
            .execute(&mut connection)
            .await
            .with_context(|| format!("creating database {database}"))?;
    }
    connection.close().await?;
    Ok(())
}

/// Cheap liveness probe for `/health`. A pooled connection that died while idle (its backend
/// terminated, PostgreSQL restarted) is not an unreachable database: its failure tells the pool
/// to test the other idle connections before use (`connection_health`), and the probe asks
/// once more. Without that, a probe right after a restart could meet a dead connection the
/// pool did not yet suspect and report a serving database as down.
pub(crate) async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    let select_one = || async { sqlx::query("SELECT 1").execute(pool).await.map(|_| ()) };
    match select_one().await {
        Err(error) if crate::error::database_unavailable(&error) => {
            connection_health::connection_failed();
            select_one().await
        }
        result => result,
    }
}
