//! A user's push rules as they differ from the server-default rules (`push_rules`, see
//! migration 0012), and the version of each user's rules: the stream position of their
//! `m.push_rules` account data row, which every change moves.

use serde_json::Value;
use sqlx::{FromRow, PgExecutor};

/// One stored difference: a rule of the user's own (`priority` and `rule` set) or a change
/// to a server-default rule (`enabled` and/or `actions` set).
#[derive(Clone, Debug, PartialEq, FromRow)]
pub(crate) struct StoredRule {
    pub kind: String,
    pub rule_id: String,
    pub priority: Option<i32>,
    pub rule: Option<Value>,
    pub enabled: Option<bool>,
    pub actions: Option<Value>,
}

/// [`StoredRule`] with its owner, for reads of several users at once.
#[derive(Debug, FromRow)]
pub(crate) struct OwnedStoredRule {
    pub user_id: String,
    #[sqlx(flatten)]
    pub stored: StoredRule,
}

/// The user's stored rules, each kind's own rules in priority order.
pub(crate) async fn for_user(db: impl PgExecutor<'_>, user_id: &str) -> sqlx::Result<Vec<StoredRule>> {
    sqlx::query_as(
        "SELECT kind, rule_id, priority, rule, enabled, actions FROM push_rules
         WHERE user_id = $1 ORDER BY kind, priority NULLS LAST, rule_id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await
}

/// The stored rules of several users, in one statement.
pub(crate) async fn for_users(db: impl PgExecutor<'_>, user_ids: &[String]) -> sqlx::Result<Vec<OwnedStoredRule>> {
    sqlx::query_as(
        "SELECT user_id, kind, rule_id, priority, rule, enabled, actions FROM push_rules
         WHERE user_id = ANY($1) ORDER BY user_id, kind, priority NULLS LAST, rule_id",
    )
    .bind(user_ids)
    .fetch_all(db)
    .await
}

/// Replaces all of the user's stored rules (a user has a few dozen at most: rewriting them is
/// simpler than diffing, and keeps priorities dense).
pub(crate) async fn replace(db: &mut sqlx::PgConnection, user_id: &str, rules: &[StoredRule]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM push_rules WHERE user_id = $1").bind(user_id).execute(&mut *db).await?;
    if rules.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = rules.iter().map(|r| r.kind.as_str()).collect();
    let ids: Vec<&str> = rules.iter().map(|r| r.rule_id.as_str()).collect();
    let priorities: Vec<Option<i32>> = rules.iter().map(|r| r.priority).collect();
    let bodies: Vec<Option<&Value>> = rules.iter().map(|r| r.rule.as_ref()).collect();
    let enabled: Vec<Option<bool>> = rules.iter().map(|r| r.enabled).collect();
    let actions: Vec<Option<&Value>> = rules.iter().map(|r| r.actions.as_ref()).collect();
    sqlx::query(
        "INSERT INTO push_rules (user_id, kind, rule_id, priority, rule, enabled, actions)
         SELECT $1, k, i, p, r, e, a
         FROM UNNEST($2::text[], $3::text[], $4::int[], $5::jsonb[], $6::boolean[], $7::jsonb[]) AS t(k, i, p, r, e, a)",
    )
    .bind(user_id)
    .bind(&kinds)
    .bind(&ids)
    .bind(&priorities)
    .bind(&bodies)
    .bind(&enabled)
    .bind(&actions)
    .execute(db)
    .await?;
    Ok(())
}
