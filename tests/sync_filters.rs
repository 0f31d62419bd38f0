//! Sync filters cut exactly what they say, section by section.

mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "sync-filter-pw";

fn encode(value: &Value) -> String {
    value
        .to_string()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn sync(server: &TestServer, user: &TestUser, filter: Value) -> Value {
    let (status, body) = server.get(&format!("/_matrix/client/v3/sync?filter={}", encode(&filter)), user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn types(section: &Value) -> Vec<String> {
    section["events"]
        .as_array()
        .map(|events| events.iter().filter_map(|e| e["type"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn each_section_filter_cuts_only_its_section() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let (_, created) = server
        .post("/_matrix/client/v3/createRoom", alice.token(), json!({"preset": "public_chat", "name": "Filters"}))
        .await;
    let room = created["room_id"].as_str().expect("room").to_owned();
    server.post(&format!("/_matrix/client/v3/join/{room}"), bob.token(), json!({})).await;
    for (kind, content) in [("org.example.keep", json!({"a": 1})), ("org.example.drop", json!({"b": 2}))] {
        let path = format!("/_matrix/client/v3/user/{}/account_data/{kind}", alice.user_id);
        assert_eq!(server.put(&path, alice.token(), content).await.0, StatusCode::OK);
    }
    let (status, _) = server
        .put(&format!("/_matrix/client/v3/presence/{}/status", bob.user_id), bob.token(), json!({"presence": "online"}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let unfiltered = sync(&server, &alice, json!({})).await;
    let global = types(&unfiltered["account_data"]);
    assert!(
        global.contains(&"org.example.keep".to_owned()) && global.contains(&"org.example.drop".to_owned()),
        "{global:?}"
    );
    assert!(!types(&unfiltered["presence"]).is_empty(), "presence is there without a filter: {unfiltered}");

    let filtered = sync(
        &server,
        &alice,
        json!({
            "account_data": {"types": ["org.example.keep"]},
            "presence": {"not_types": ["m.presence"]},
            "room": {"state": {"types": ["m.room.name"]}},
        }),
    )
    .await;
    assert_eq!(types(&filtered["account_data"]), vec!["org.example.keep"]);
    assert!(types(&filtered["presence"]).is_empty(), "{filtered}");
    let joined = &filtered["rooms"]["join"][&room];
    let state = types(&joined["state"]);
    assert!(state.iter().all(|kind| kind == "m.room.name"), "{state:?}");
    // The timeline is governed by its own filter, untouched by the state filter.
    assert!(!types(&joined["timeline"]).is_empty(), "{joined}");

    let by_sender = sync(&server, &alice, json!({"room": {"state": {"senders": [bob.user_id]}}})).await;
    let state_events = by_sender["rooms"]["join"][&room]["state"]["events"].as_array().cloned().unwrap_or_default();
    assert!(state_events.iter().all(|e| e["sender"] == bob.user_id.as_str()), "{state_events:?}");
}
