//! The push rules API through real HTTP (spec: "Push Rules: API"): the server-default rules of
//! the current spec version, a user's own rules and their changes to the defaults, the errors
//! the spec and Synapse give, and every change reaching the user's other devices through
//! `/sync` as `m.push_rules` account data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PW: &str = "push-rules-test-password";
const RULES: &str = "/_matrix/client/v3/pushrules";

fn ids(rules: &Value) -> Vec<&str> {
    rules.as_array().expect("a list of rules").iter().map(|rule| rule["rule_id"].as_str().expect("rule_id")).collect()
}

async fn global(server: &TestServer, user: &TestUser) -> Value {
    let (status, body) = server.get(&format!("{RULES}/"), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["global"].clone()
}

async fn put_rule(server: &TestServer, user: &TestUser, path: &str, body: Value) -> (StatusCode, Value) {
    server.put(&format!("{RULES}/global/{path}"), user.token(), body).await
}

#[tokio::test]
async fn the_defaults_are_the_current_specs_with_every_kind_present() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let rules = global(&server, &alice).await;
    for kind in ["override", "content", "room", "sender", "underride"] {
        assert!(rules[kind].is_array(), "{kind} is listed even when empty: {rules}");
    }
    let overrides = ids(&rules["override"]);
    assert_eq!(overrides.first(), Some(&".m.rule.master"), "{overrides:?}");
    for id in [
        ".m.rule.suppress_notices",
        ".m.rule.invite_for_me",
        ".m.rule.member_event",
        ".m.rule.is_user_mention",
        ".m.rule.is_room_mention",
        ".m.rule.tombstone",
        ".m.rule.reaction",
        ".m.rule.room.server_acl",
        ".m.rule.suppress_edits",
        ".org.matrix.msc3930.rule.poll_response",
    ] {
        assert!(overrides.contains(&id), "{id} in {overrides:?}");
    }
    let underrides = ids(&rules["underride"]);
    for id in [
        ".m.rule.call",
        ".m.rule.encrypted_room_one_to_one",
        ".m.rule.room_one_to_one",
        ".m.rule.message",
        ".m.rule.encrypted",
        ".org.matrix.msc3930.rule.poll_start_one_to_one",
        ".org.matrix.msc3930.rule.poll_start",
        ".org.matrix.msc3930.rule.poll_end_one_to_one",
        ".org.matrix.msc3930.rule.poll_end",
    ] {
        assert!(underrides.contains(&id), "{id} in {underrides:?}");
    }
    // The user's own id is in the rules about them.
    let mention = rules["override"].as_array().unwrap().iter().find(|r| r["rule_id"] == ".m.rule.is_user_mention");
    assert_eq!(mention.unwrap()["conditions"][0]["value"], alice.user_id);

    // The same through /pushrules/global/, the r0 paths, and one rule at a time.
    let (status, body) = server.get(&format!("{RULES}/global/"), alice.token()).await;
    assert_eq!((status, &body), (StatusCode::OK, &rules));
    let (status, body) = server.get("/_matrix/client/r0/pushrules/", alice.token()).await;
    assert_eq!((status, &body["global"]), (StatusCode::OK, &rules));
    let (status, body) = server.get(&format!("{RULES}/global/override/.m.rule.master"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["enabled"].clone(), body["default"].clone()), (json!(false), json!(true)));
    // Without a token: the spec's 401.
    assert_error(&server.get(&format!("{RULES}/"), None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn own_rules_are_created_ordered_changed_and_deleted() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let notify = json!(["notify", {"set_tweak": "highlight"}]);
    for word in ["pizza", "pasta"] {
        let response =
            put_rule(&server, &alice, &format!("content/{word}"), json!({"pattern": word, "actions": notify})).await;
        assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    }
    // Without before/after a new rule is the most important of its kind.
    assert_eq!(ids(&global(&server, &alice).await["content"]), ["pasta", "pizza"]);
    let response =
        put_rule(&server, &alice, "content/bread?after=pizza", json!({"pattern": "bread", "actions": ["notify"]}))
            .await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    let response =
        put_rule(&server, &alice, "content/rice?before=pizza", json!({"pattern": "rice", "actions": ["notify"]})).await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    assert_eq!(ids(&global(&server, &alice).await["content"]), ["pasta", "rice", "pizza", "bread"]);

    let (status, rule) = server.get(&format!("{RULES}/global/content/rice"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{rule}");
    assert_eq!(
        rule,
        json!({"rule_id": "rice", "pattern": "rice", "actions": ["notify"], "enabled": true, "default": false})
    );

    // Enabled and actions, read and changed.
    let path = format!("{RULES}/global/content/rice");
    let (status, body) = server.put(&format!("{path}/enabled"), alice.token(), json!({"enabled": false})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.get(&format!("{path}/enabled"), alice.token()).await.1, json!({"enabled": false}));
    let actions = json!(["notify", {"set_tweak": "sound", "value": "ping"}]);
    let (status, body) = server.put(&format!("{path}/actions"), alice.token(), json!({"actions": actions})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.get(&format!("{path}/actions"), alice.token()).await.1, json!({"actions": actions}));
    // Replacing a rule keeps its place and whether it is enabled.
    let response = put_rule(&server, &alice, "content/rice", json!({"pattern": "risotto", "actions": []})).await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    let content = global(&server, &alice).await["content"].clone();
    assert_eq!(ids(&content), ["pasta", "rice", "pizza", "bread"]);
    assert_eq!((content[1]["pattern"].clone(), content[1]["enabled"].clone()), (json!("risotto"), json!(false)));

    // Rules of every kind.
    let room = server.create_room(&alice, json!({})).await;
    let response = put_rule(&server, &alice, &format!("room/{}", encode(&room)), json!({"actions": []})).await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    let response = put_rule(&server, &alice, "sender/@bob:localhost", json!({"actions": ["notify"]})).await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    let conditions = json!([{"kind": "event_match", "key": "content.body", "pattern": "urgent"}]);
    let response =
        put_rule(&server, &alice, "override/urgent", json!({"conditions": conditions, "actions": ["notify"]})).await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    let response = put_rule(&server, &alice, "underride/calm", json!({"conditions": [], "actions": []})).await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    let rules = global(&server, &alice).await;
    assert_eq!(ids(&rules["room"]), [room.as_str()]);
    assert_eq!(ids(&rules["sender"]), ["@bob:localhost"]);
    // An own override rule comes right after the master rule, before the other defaults.
    assert_eq!(ids(&rules["override"])[..3], [".m.rule.master", "urgent", ".m.rule.suppress_notices"]);
    assert_eq!(ids(&rules["underride"])[0], "calm");

    // Deleted, it is gone for good.
    let (status, body) = server.delete(&format!("{RULES}/global/content/pizza"), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&global(&server, &alice).await["content"]), ["pasta", "rice", "bread"]);
    let gone = server.get(&format!("{RULES}/global/content/pizza"), alice.token()).await;
    assert_error(&gone, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // Another user's rules are their own.
    let bob = server.register("bob", PW).await;
    assert!(global(&server, &bob).await["content"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn changes_to_default_rules_are_kept_and_stored_as_differences_only() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let message = format!("{RULES}/global/underride/.m.rule.message");
    let (status, body) = server.put(&format!("{message}/actions"), alice.token(), json!({"actions": []})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .put(&format!("{RULES}/global/override/.m.rule.master/enabled"), alice.token(), json!({"enabled": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, rule) = server.get(&message, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{rule}");
    assert_eq!((rule["actions"].clone(), rule["default"].clone()), (json!([]), json!(true)));
    assert_eq!(
        server.get(&format!("{RULES}/global/override/.m.rule.master/enabled"), alice.token()).await.1["enabled"],
        true
    );
    // Only the two changes are stored: every other default comes from the server at each read,
    // so a default rule a newer spec version adds reaches this user too.
    let stored = server.count(&format!("SELECT COUNT(*) FROM push_rules WHERE user_id = '{}'", alice.user_id)).await;
    assert_eq!(stored, 2);
    // Setting a default back to what it was stores nothing for it.
    let (status, body) = server
        .put(&format!("{RULES}/global/override/.m.rule.master/enabled"), alice.token(), json!({"enabled": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stored = server.count(&format!("SELECT COUNT(*) FROM push_rules WHERE user_id = '{}'", alice.user_id)).await;
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn bad_requests_get_the_specs_errors_and_change_nothing() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let response = put_rule(&server, &alice, "content/pizza", json!({"pattern": "pizza", "actions": ["notify"]})).await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    let before = global(&server, &alice).await;
    let ok = json!({"pattern": "x", "actions": ["notify"]});

    // Unknown rules.
    for path in ["content/nope", "override/.m.rule.nope", "content/nope/enabled", "content/nope/actions"] {
        let response = server.get(&format!("{RULES}/global/{path}"), alice.token()).await;
        assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    }
    let response =
        server.put(&format!("{RULES}/global/content/nope/enabled"), alice.token(), json!({"enabled": true})).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response =
        server.put(&format!("{RULES}/global/content/nope/actions"), alice.token(), json!({"actions": []})).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response = server.delete(&format!("{RULES}/global/content/nope"), alice.token(), None).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // A server-default rule cannot be deleted (Synapse: 404) nor replaced, pattern and all.
    let response = server.delete(&format!("{RULES}/global/override/.m.rule.master"), alice.token(), None).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response = put_rule(&server, &alice, "override/.m.rule.master", json!({"conditions": [], "actions": []})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let response = put_rule(&server, &alice, "content/.mine", ok.clone()).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    // Bad before/after: unknown, a default rule, or out of order.
    for query in ["before=nope", "after=nope", "before=.m.rule.master", "after=.m.rule.message"] {
        let response = put_rule(&server, &alice, &format!("content/x?{query}"), ok.clone()).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    let response = put_rule(&server, &alice, "content/y", ok.clone()).await;
    assert_eq!(response.0, StatusCode::OK);
    let response = put_rule(&server, &alice, "content/x?before=y&after=pizza", ok.clone()).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let response = server.delete(&format!("{RULES}/global/content/y"), alice.token(), None).await;
    assert_eq!(response.0, StatusCode::OK);
    // Bodies that are not a rule of the kind, and kinds that do not exist.
    let response = put_rule(&server, &alice, "content/x", json!({"actions": ["notify"]})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let response = put_rule(&server, &alice, "override/x", json!({"actions": ["notify"]})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let response = put_rule(&server, &alice, "room/not-a-room", json!({"actions": []})).await;
    assert_eq!(response.0, StatusCode::BAD_REQUEST, "{}", response.1);
    let response = put_rule(&server, &alice, "sideways/x", ok.clone()).await;
    assert_eq!(response.0, StatusCode::BAD_REQUEST, "{}", response.1);
    let response =
        server.put(&format!("{RULES}/global/content/pizza/enabled"), alice.token(), json!({"enabled": "yes"})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let response = server.put(&format!("{RULES}/global/content/pizza/actions"), alice.token(), json!({})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    // The rules are as they were, and the account data endpoint still refuses to set them.
    assert_eq!(global(&server, &alice).await, before);
    let path = format!("/_matrix/client/v3/user/{}/account_data/m.push_rules", alice.user_id);
    let response = server.put(&path, alice.token(), json!({"global": {}})).await;
    assert_eq!(response.0, StatusCode::METHOD_NOT_ALLOWED, "{}", response.1);
    // Read through account data, the rules are the rules.
    let (status, body) = server.get(&path, alice.token()).await;
    assert_eq!((status, &body["global"]), (StatusCode::OK, &before));
}

fn push_rules_in(sync: &Value) -> Option<Value> {
    let events = sync["account_data"]["events"].as_array()?;
    events.iter().find(|event| event["type"] == "m.push_rules").map(|event| event["content"]["global"].clone())
}

#[tokio::test]
async fn changes_reach_the_users_other_devices_through_sync_and_wake_their_long_poll() {
    let server = TestServer::start().await;
    let phone = server.register("alice", PW).await;
    let laptop = server.login("alice", PW).await;

    // An initial sync always carries the rules (matrix-js-sdk waits for them).
    let (status, initial) = server.get("/_matrix/client/v3/sync", laptop.token()).await;
    assert_eq!(status, StatusCode::OK, "{initial}");
    let rules = push_rules_in(&initial).expect("m.push_rules in the initial sync");
    assert_eq!(rules, global(&server, &laptop).await);
    let since = initial["next_batch"].as_str().expect("next_batch").to_owned();
    // Nothing changed: an incremental sync does not repeat them.
    let (_, quiet) = server.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=0"), laptop.token()).await;
    assert_eq!(push_rules_in(&quiet), None, "{quiet}");

    // The laptop waits; the phone adds a keyword.
    let waiting = {
        let url = server.url(&format!("/_matrix/client/v3/sync?since={since}&timeout=20000"));
        let token = laptop.access_token.clone();
        let http = server.http.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let response = http.get(url).bearer_auth(token).send().await.expect("sync answers");
            (response.json::<Value>().await.expect("JSON"), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = put_rule(&server, &phone, "content/pizza", json!({"pattern": "pizza", "actions": ["notify"]})).await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    let (woken, waited) = waiting.await.expect("sync task");
    assert!(waited < Duration::from_secs(15), "the long-poll woke for the change, after {waited:?}");
    let rules = push_rules_in(&woken).expect("m.push_rules after the change");
    assert_eq!(ids(&rules["content"]), ["pizza"]);

    // A change to a default rule reaches it the same way.
    let since = woken["next_batch"].as_str().expect("next_batch").to_owned();
    let (status, body) = server
        .put(&format!("{RULES}/global/underride/.m.rule.message/enabled"), phone.token(), json!({"enabled": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, next) = server.get(&format!("/_matrix/client/v3/sync?since={since}&timeout=0"), laptop.token()).await;
    let rules = push_rules_in(&next).expect("m.push_rules after the second change");
    let message = rules["underride"].as_array().unwrap().iter().find(|r| r["rule_id"] == ".m.rule.message").cloned();
    assert_eq!(message.expect("the message rule")["enabled"], false);
}
