//! What a request costs the database: the statements PostgreSQL's `pg_stat_statements` (the
//! test cluster preloads it) counts in a test's own database. A count of statements does not
//! depend on the machine's load, so it can guard a path's cost in CI.

use crate::common::TestServer;

/// Makes the counts readable in the test's database.
pub async fn enable(server: &TestServer) {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&server.state.pool).await.unwrap();
}

/// What the typing sweep runs, on its own clock, inside a `BEGIN` … `ROLLBACK` of its own when
/// nothing has expired.
const TYPING_SWEEP: &str = "FROM typing WHERE typing AND expires_ts <=";

/// Statements executed in this test's database since the last reset, most called first —
/// without the typing sweep's, which is no part of any request and may fall into any window.
pub async fn statements(server: &TestServer) -> Vec<(i64, String)> {
    let all: Vec<(i64, String)> = sqlx::query_as(
        "SELECT calls, query FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query NOT LIKE '%pg_stat_statements%'
         ORDER BY calls DESC, query",
    )
    .fetch_all(&server.state.pool)
    .await
    .unwrap();
    let sweeps: i64 = all.iter().filter(|(_, query)| query.contains(TYPING_SWEEP)).map(|(calls, _)| calls).sum();
    all.into_iter()
        .filter(|(_, query)| !query.contains(TYPING_SWEEP))
        .map(|(calls, query)| match query.as_str() {
            "BEGIN" | "ROLLBACK" => (calls - sweeps, query),
            _ => (calls, query),
        })
        .filter(|(calls, _)| *calls > 0)
        .collect()
}

/// How many times the statements containing `fragment` ran, together.
pub fn calls(statements: &[(i64, String)], fragment: &str) -> i64 {
    statements.iter().filter(|(_, query)| query.contains(fragment)).map(|(calls, _)| calls).sum()
}

/// Starts counting afresh.
pub async fn reset(server: &TestServer) {
    sqlx::query(
        "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
    )
    .execute(&server.state.pool)
    .await
    .unwrap();
}

/// The total of `statements`, and one line per statement for a failure message.
pub fn listing(statements: &[(i64, String)]) -> (i64, String) {
    let total = statements.iter().map(|(calls, _)| calls).sum();
    let lines: Vec<String> = statements
        .iter()
        .map(|(calls, query)| format!("{calls:>3}  {}", query.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    (total, lines.join("\n"))
}

/// How many times the statements containing `fragment` ran, and the shared buffers they
/// touched together (found in PostgreSQL's cache or read): what their plans cost, whatever
/// the machine's speed.
pub async fn buffers(server: &TestServer, fragment: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT COALESCE(SUM(calls), 0)::bigint, COALESCE(SUM(shared_blks_hit + shared_blks_read), 0)::bigint
         FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND strpos(query, $1) > 0",
    )
    .bind(fragment)
    .fetch_one(&server.state.pool)
    .await
    .unwrap()
}
