//! Statements counted by PostgreSQL's `pg_stat_statements` (the test cluster preloads it): a
//! cost that does not depend on the machine's load, so tests can guard it in CI.

use sqlx::PgPool;

/// Makes the counts readable in this test's database.
pub async fn enable(pool: &PgPool) {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(pool).await.unwrap();
}

/// Statements executed in this test's database since the last reset, most called first.
pub async fn statements(pool: &PgPool) -> Vec<(i64, String)> {
    sqlx::query_as(
        "SELECT calls, query FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND query NOT LIKE '%pg_stat_statements%'
         ORDER BY calls DESC, query",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Forgets this test database's counts (other tests' databases keep theirs).
pub async fn reset(pool: &PgPool) {
    sqlx::query(
        "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// One line per statement: its calls, then its text on one line.
pub fn listing(statements: &[(i64, String)]) -> Vec<String> {
    statements
        .iter()
        .map(|(calls, query)| format!("{calls:>3}  {}", query.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect()
}
