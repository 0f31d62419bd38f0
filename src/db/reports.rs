//! Reports of abusive content, kept for server administrators.

use sqlx::PgExecutor;

pub(crate) struct NewReport<'a> {
    pub reporter: &'a str,
    pub room_id: Option<&'a str>,
    pub event_id: Option<&'a str>,
    pub reported_user: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub score: Option<i32>,
    pub now_ms: i64,
}

pub(crate) async fn insert(db: impl PgExecutor<'_>, report: &NewReport<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO reports (reporter, room_id, event_id, reported_user, reason, score, created_ts)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING report_id",
    )
    .bind(report.reporter)
    .bind(report.room_id)
    .bind(report.event_id)
    .bind(report.reported_user)
    .bind(report.reason)
    .bind(report.score)
    .bind(report.now_ms)
    .fetch_one(db)
    .await
}
