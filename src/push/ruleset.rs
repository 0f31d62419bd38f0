//! A user's rule set as the server-default rules of the current spec version with the user's
//! stored differences applied, and back. Only differences are stored (`db::push_rules`): a
//! default rule that a later spec version adds reaches every user at their next read, with
//! their own rules and their changes to other defaults kept.
//!
//! Both directions work on ruma's JSON form of the rule set, kind by kind, so every rule kind
//! is handled alike.

use crate::db::push_rules::StoredRule;
use ruma::UserId;
use ruma::push::Ruleset;
use serde_json::{Map, Value, json};

/// The rule kinds of the client API, most important first.
pub(crate) const KINDS: [&str; 5] = ["override", "content", "room", "sender", "underride"];

/// `.m.rule.master` stays the first override rule: the user's own rules come after it.
const MASTER: &str = ".m.rule.master";

/// The user's rule set: the server defaults with `stored` applied. A stored rule that no
/// longer parses (or a change to a default rule the server no longer has) is passed over.
pub(crate) fn assemble(user_id: &UserId, stored: &[StoredRule]) -> Ruleset {
    let mut assembled = Map::new();
    let defaults = kinds_of(&Ruleset::server_default(user_id));
    for kind in KINDS {
        let mut rules = rules_of(&defaults, kind).to_vec();
        for rule in &mut rules {
            let change = stored.iter().find(|s| s.kind == kind && s.rule.is_none() && rule["rule_id"] == s.rule_id);
            if let Some(change) = change {
                if let Some(enabled) = change.enabled {
                    rule["enabled"] = json!(enabled);
                }
                if let Some(actions) = &change.actions {
                    rule["actions"] = actions.clone();
                }
            }
        }
        let mut own: Vec<&StoredRule> = stored.iter().filter(|s| s.kind == kind && s.rule.is_some()).collect();
        own.sort_by_key(|s| s.priority);
        let at = usize::from(rules.first().is_some_and(|first| first["rule_id"] == MASTER));
        rules.splice(at..at, own.into_iter().filter_map(|s| s.rule.clone()).filter(|rule| parses(kind, rule)));
        assembled.insert(kind.to_owned(), Value::Array(rules));
    }
    match serde_json::from_value(Value::Object(assembled)) {
        Ok(ruleset) => ruleset,
        Err(error) => {
            tracing::warn!(%user_id, %error, "stored push rules do not parse; serving the defaults");
            Ruleset::server_default(user_id)
        }
    }
}

/// Whether one stored rule parses as a rule of its kind (one bad rule must not cost the user
/// all their rules).
fn parses(kind: &str, rule: &Value) -> bool {
    serde_json::from_value::<Ruleset>(json!({ kind: [rule] })).is_ok()
}

/// What of `ruleset` differs from the server defaults, to store.
pub(crate) fn differences(user_id: &UserId, ruleset: &Ruleset) -> Vec<StoredRule> {
    let defaults = kinds_of(&Ruleset::server_default(user_id));
    let current = kinds_of(ruleset);
    let mut stored = Vec::new();
    for kind in KINDS {
        let defaults_of_kind = rules_of(&defaults, kind);
        let mut priority = 0;
        for rule in rules_of(&current, kind) {
            let Some(rule_id) = rule["rule_id"].as_str() else { continue };
            if rule["default"] == true {
                let Some(default) = defaults_of_kind.iter().find(|d| d["rule_id"] == rule_id) else { continue };
                let enabled = (rule["enabled"] != default["enabled"]).then(|| rule["enabled"].as_bool()).flatten();
                let actions = (rule["actions"] != default["actions"]).then(|| rule["actions"].clone());
                if enabled.is_some() || actions.is_some() {
                    stored.push(StoredRule {
                        kind: kind.to_owned(),
                        rule_id: rule_id.to_owned(),
                        priority: None,
                        rule: None,
                        enabled,
                        actions,
                    });
                }
            } else {
                stored.push(StoredRule {
                    kind: kind.to_owned(),
                    rule_id: rule_id.to_owned(),
                    priority: Some(priority),
                    rule: Some(rule.clone()),
                    enabled: None,
                    actions: None,
                });
                priority += 1;
            }
        }
    }
    stored
}

/// The rule set as the client API shows it: every kind present, empty ones as `[]` (as
/// Synapse serves them; ruma leaves empty kinds out).
pub(crate) fn client_json(ruleset: &Ruleset) -> Value {
    let kinds = kinds_of(ruleset);
    let object: Map<String, Value> =
        KINDS.iter().map(|kind| (kind.to_string(), Value::Array(rules_of(&kinds, kind).to_vec()))).collect();
    Value::Object(object)
}

/// The rule set's JSON, kind by kind.
fn kinds_of(ruleset: &Ruleset) -> Map<String, Value> {
    let Ok(Value::Object(kinds)) = serde_json::to_value(ruleset) else { return Map::new() };
    kinds
}

/// The rules of one kind in [`kinds_of`]'s map.
fn rules_of<'a>(kinds: &'a Map<String, Value>, kind: &str) -> &'a [Value] {
    kinds.get(kind).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::push::{NewPushRule, RuleKind};
    use ruma::user_id;

    fn stored(kind: &str, rule_id: &str) -> StoredRule {
        StoredRule {
            kind: kind.to_owned(),
            rule_id: rule_id.to_owned(),
            priority: None,
            rule: None,
            enabled: None,
            actions: None,
        }
    }

    fn ids(ruleset: &Ruleset, kind: &str) -> Vec<String> {
        rules_of(&kinds_of(ruleset), kind)
            .iter()
            .map(|rule| rule["rule_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn differences_round_trip_and_only_differences_are_kept() {
        let user = user_id!("@alice:example.org");
        let mut ruleset = Ruleset::server_default(user);
        assert!(differences(user, &ruleset).is_empty(), "the defaults differ in nothing");
        let word = ruma::push::NewPatternedPushRule::new("pizza".into(), "pizza".into(), vec![]);
        ruleset.insert(NewPushRule::Content(word), None, None).unwrap();
        let conditions = vec![];
        let rule = ruma::push::NewConditionalPushRule::new("mine".into(), conditions, vec![]);
        ruleset.insert(NewPushRule::Override(rule), None, None).unwrap();
        ruleset.set_enabled(RuleKind::Underride, ".m.rule.message", false).unwrap();

        let stored = differences(user, &ruleset);
        assert_eq!(stored.len(), 3, "{stored:?}");
        let again = assemble(user, &stored);
        assert_eq!(kinds_of(&again), kinds_of(&ruleset));
        assert_eq!(ids(&again, "override")[..2], [".m.rule.master", "mine"]);
    }

    #[test]
    fn stored_changes_the_server_no_longer_knows_are_passed_over_and_new_defaults_appear() {
        let user = user_id!("@alice:example.org");
        let mut gone = stored("override", ".m.rule.retired_long_ago");
        gone.enabled = Some(false);
        let mut broken = stored("content", "broken");
        broken.priority = Some(0);
        broken.rule = Some(json!({"rule_id": "broken", "actions": "not a list"}));
        let mut kept = stored("underride", ".m.rule.message");
        kept.actions = Some(json!([]));
        let ruleset = assemble(user, &[gone, broken, kept]);
        // Every default of this server version is there, whatever was stored before it.
        assert_eq!(ids(&ruleset, "override"), ids(&Ruleset::server_default(user), "override"));
        assert!(ids(&ruleset, "content").is_empty(), "a rule that does not parse is dropped alone");
        let message = ruleset.get(RuleKind::Underride, ".m.rule.message").unwrap();
        assert!(message.actions().is_empty(), "the stored change to a default stands");
    }
}
