//! The tip ledger (`creators::tips`): one row per tip, recorded before the billing webhook is
//! asked, settled by its answer.

use sqlx::{PgConnection, PgExecutor};

/// Columns as [`Tip`] reads them; `amount` as the text it was written as.
const COLUMNS: &str = "tip_id, from_user, device_id, txn_id, to_user, room_id, amount::text AS amount, currency,
     message, state, charge_id, billing_url, event_id, created_ts, post_attempts, post_error, post_given_up";

#[derive(sqlx::FromRow, Clone, Debug)]
pub struct Tip {
    pub tip_id: String,
    pub from_user: String,
    pub device_id: String,
    pub txn_id: String,
    pub to_user: String,
    pub room_id: String,
    pub amount: String,
    pub currency: String,
    pub message: Option<String>,
    pub state: String,
    pub charge_id: Option<String>,
    pub billing_url: Option<String>,
    pub event_id: Option<String>,
    pub created_ts: i64,
    /// Failed tries at posting an approved tip's event, the last one's error, and whether
    /// posting was given up after too many.
    pub post_attempts: i32,
    pub post_error: Option<String>,
    pub post_given_up: bool,
}

/// Records a new pending tip unless the same client transaction recorded one already (then
/// nothing changes; the caller reads that one with [`by_transaction`]).
pub(crate) async fn insert_pending(db: impl PgExecutor<'_>, tip: &Tip) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO tips (tip_id, from_user, device_id, txn_id, to_user, room_id, amount, currency, message,
                           state, created_ts, updated_ts)
         VALUES ($1, $2, $3, $4, $5, $6, $7::numeric, $8, $9, 'pending', $10, $10)
         ON CONFLICT (from_user, device_id, txn_id) DO NOTHING",
    )
    .bind(&tip.tip_id)
    .bind(&tip.from_user)
    .bind(&tip.device_id)
    .bind(&tip.txn_id)
    .bind(&tip.to_user)
    .bind(&tip.room_id)
    .bind(&tip.amount)
    .bind(&tip.currency)
    .bind(&tip.message)
    .bind(tip.created_ts)
    .execute(db)
    .await?;
    Ok(())
}

pub(crate) async fn by_transaction(
    db: impl PgExecutor<'_>,
    from_user: &str,
    device_id: &str,
    txn_id: &str,
) -> sqlx::Result<Option<Tip>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tips WHERE from_user = $1 AND device_id = $2 AND txn_id = $3"
    )))
    .bind(from_user)
    .bind(device_id)
    .bind(txn_id)
    .fetch_optional(db)
    .await
}

/// The tip, locked until the caller's transaction ends: whoever settles a tip (a request, a
/// retry of it, start-up recovery, another process) does so one at a time.
pub(crate) async fn lock(conn: &mut PgConnection, tip_id: &str) -> sqlx::Result<Option<Tip>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM tips WHERE tip_id = $1 FOR UPDATE")))
        .bind(tip_id)
        .fetch_optional(conn)
        .await
}

/// Records one answer (or failure) of the webhook.
pub(crate) async fn settle(
    conn: &mut PgConnection,
    tip_id: &str,
    state: &str,
    charge_id: Option<&str>,
    billing_url: Option<&str>,
    now_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE tips SET state = $2, charge_id = $3, billing_url = $4, attempts = attempts + 1, updated_ts = $5
         WHERE tip_id = $1",
    )
    .bind(tip_id)
    .bind(state)
    .bind(charge_id)
    .bind(billing_url)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn set_event(conn: &mut PgConnection, tip_id: &str, event_id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE tips SET event_id = $2 WHERE tip_id = $1").bind(tip_id).bind(event_id).execute(conn).await?;
    Ok(())
}

/// Records a refused try at posting an approved tip's event; gives posting up at the
/// `max_attempts`th. Whether it is given up now.
pub(crate) async fn post_failed(
    db: impl PgExecutor<'_>,
    tip_id: &str,
    error: &str,
    max_attempts: i32,
    now_ms: i64,
) -> sqlx::Result<bool> {
    let given_up: Option<bool> = sqlx::query_scalar(
        "UPDATE tips SET post_attempts = post_attempts + 1, post_error = $2,
                         post_given_up = post_attempts + 1 >= $3, updated_ts = $4
         WHERE tip_id = $1 AND event_id IS NULL
         RETURNING post_given_up",
    )
    .bind(tip_id)
    .bind(error)
    .bind(max_attempts)
    .bind(now_ms)
    .fetch_optional(db)
    .await?;
    Ok(given_up.unwrap_or(false))
}

/// Tips a crash or a failed webhook call left unsettled, or approved without their event yet,
/// oldest first.
pub(crate) async fn unsettled(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT tip_id FROM tips
         WHERE state IN ('pending', 'failed') OR (state = 'approved' AND event_id IS NULL AND NOT post_given_up)
         ORDER BY created_ts",
    )
    .fetch_all(db)
    .await
}

/// Approved tips `to_user` received, newest first, `limit` from `offset`.
pub(crate) async fn received(
    db: impl PgExecutor<'_>,
    to_user: &str,
    offset: i64,
    limit: i64,
) -> sqlx::Result<Vec<Tip>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM tips WHERE to_user = $1 AND state = 'approved'
         ORDER BY created_ts DESC, tip_id LIMIT $2 OFFSET $3"
    )))
    .bind(to_user)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

/// Per currency: the sum of the approved tips `to_user` received, and their number.
pub(crate) async fn received_totals(
    db: impl PgExecutor<'_>,
    to_user: &str,
) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as(
        "SELECT currency, sum(amount)::text, count(*) FROM tips WHERE to_user = $1 AND state = 'approved'
         GROUP BY currency ORDER BY currency",
    )
    .bind(to_user)
    .fetch_all(db)
    .await
}
