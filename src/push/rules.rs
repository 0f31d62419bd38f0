//! The push rules API (spec: "Push Rules: API"): reading a user's rules and changing them.
//! Every change takes a stream position for the user's `m.push_rules` account data, so it
//! reaches their other devices through `/sync` and wakes their long-polls, like any other
//! account data change.

use crate::db;
use crate::error::{Error, Result};
use crate::push::ruleset::{assemble, client_json, differences};
use crate::store::Store;
use crate::streams::Streams;
use ruma::UserId;
use ruma::push::{
    Action, AnyPushRule, InsertPushRuleError, NewPushRule, RemovePushRuleError, RuleKind, RuleNotFoundError, Ruleset,
};
use serde_json::{Value, json};
use sqlx::PgExecutor;

/// The account data type that carries the rules to clients.
pub(crate) const PUSH_RULES_TYPE: &str = "m.push_rules";

/// The user's rule set.
pub(crate) async fn ruleset(db: impl PgExecutor<'_>, user_id: &UserId) -> Result<Ruleset> {
    let stored = db::push_rules::for_user(db, user_id.as_str()).await?;
    Ok(assemble(user_id, &stored))
}

/// The content of the user's `m.push_rules` account data: `{"global": {...}}`.
pub(crate) async fn account_data_content(db: impl PgExecutor<'_>, user_id: &UserId) -> Result<Value> {
    Ok(json!({ "global": client_json(&ruleset(db, user_id).await?) }))
}

/// The user's rule set as the client API shows it (every kind present).
pub(crate) async fn global(pool: &Store, user_id: &UserId) -> Result<Value> {
    Ok(client_json(&ruleset(pool, user_id).await?))
}

/// One rule.
pub(crate) async fn rule(pool: &Store, user_id: &UserId, kind: RuleKind, rule_id: &str) -> Result<AnyPushRule> {
    let ruleset = ruleset(pool, user_id).await?;
    Ok(ruleset.get(kind, rule_id).ok_or_else(unknown_rule)?.to_owned())
}

/// Creates or replaces a rule of the user's own, placed before or after another of theirs.
pub(crate) async fn put(
    pool: &Store,
    streams: &Streams,
    user_id: &UserId,
    rule: NewPushRule,
    before: Option<&str>,
    after: Option<&str>,
) -> Result<()> {
    change(pool, streams, user_id, |ruleset| ruleset.insert(rule, after, before).map_err(insert_error)).await
}

/// Deletes a rule of the user's own.
pub(crate) async fn delete(
    pool: &Store,
    streams: &Streams,
    user_id: &UserId,
    kind: RuleKind,
    rule_id: &str,
) -> Result<()> {
    change(pool, streams, user_id, |ruleset| {
        ruleset.remove(kind, rule_id).map_err(|error| match error {
            // Synapse answers 404 here too: a server-default rule is not the user's to delete.
            RemovePushRuleError::ServerDefault => Error::not_found("Server-default rules cannot be deleted"),
            _ => unknown_rule(),
        })
    })
    .await
}

pub(crate) async fn set_enabled(
    pool: &Store,
    streams: &Streams,
    user_id: &UserId,
    kind: RuleKind,
    rule_id: &str,
    enabled: bool,
) -> Result<()> {
    change(pool, streams, user_id, |ruleset| ruleset.set_enabled(kind, rule_id, enabled).map_err(not_found)).await
}

pub(crate) async fn set_actions(
    pool: &Store,
    streams: &Streams,
    user_id: &UserId,
    kind: RuleKind,
    rule_id: &str,
    actions: Vec<Action>,
) -> Result<()> {
    change(pool, streams, user_id, |ruleset| ruleset.set_actions(kind, rule_id, actions).map_err(not_found)).await
}

/// Whether a rule is enabled.
pub(crate) async fn enabled(pool: &Store, user_id: &UserId, kind: RuleKind, rule_id: &str) -> Result<bool> {
    let ruleset = ruleset(pool, user_id).await?;
    Ok(ruleset.get(kind, rule_id).ok_or_else(unknown_rule)?.enabled())
}

/// A rule's actions.
pub(crate) async fn actions(pool: &Store, user_id: &UserId, kind: RuleKind, rule_id: &str) -> Result<Vec<Action>> {
    let ruleset = ruleset(pool, user_id).await?;
    Ok(ruleset.get(kind, rule_id).ok_or_else(unknown_rule)?.actions().to_vec())
}

/// Applies `edit` to the user's rule set and stores the result, with a new stream position
/// for their `m.push_rules`, in one transaction.
async fn change(
    pool: &Store,
    streams: &Streams,
    user_id: &UserId,
    edit: impl FnOnce(&mut Ruleset) -> Result<()>,
) -> Result<()> {
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let position = reservation.next(&mut tx).await?;
    // Written first: the row lock it takes orders concurrent changes of one user's rules, so
    // none is lost between the read below and the write.
    db::account_data::put(&mut *tx, user_id.as_str(), "", PUSH_RULES_TYPE, &json!({}), position).await?;
    let mut ruleset = ruleset(&mut *tx, user_id).await?;
    edit(&mut ruleset)?;
    db::push_rules::replace(&mut tx, user_id.as_str(), &differences(user_id, &ruleset)).await?;
    tx.commit().await?;
    reservation.committed_for(vec![user_id.to_string()]).await?;
    Ok(())
}

fn unknown_rule() -> Error {
    Error::not_found("Unknown push rule")
}

fn not_found(_: RuleNotFoundError) -> Error {
    unknown_rule()
}

fn insert_error(error: InsertPushRuleError) -> Error {
    match error {
        InsertPushRuleError::ServerDefaultRuleId => {
            Error::invalid_param("Rule ids starting with '.' are reserved for server-default rules")
        }
        InsertPushRuleError::InvalidRuleId => Error::invalid_param("Rule ids may not contain slashes"),
        InsertPushRuleError::RelativeToServerDefaultRule => {
            Error::invalid_param("A rule cannot be placed relative to a server-default rule")
        }
        InsertPushRuleError::UnknownRuleId => Error::invalid_param("The before or after rule does not exist"),
        InsertPushRuleError::BeforeHigherThanAfter => {
            Error::invalid_param("The before rule has a higher priority than the after rule")
        }
        other => Error::invalid_param(other.to_string()),
    }
}
