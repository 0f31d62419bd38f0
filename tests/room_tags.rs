//! Room tags (spec: "Room Tagging"): `/user/{userId}/rooms/{roomId}/tags`, kept as the room's
//! `m.tag` account data and delivered by `/sync` like any other — Element files rooms under
//! favourites and low priority with them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "room-tags-test-pw";

fn tags_path(user: &TestUser, room: &str) -> String {
    format!("/_matrix/client/v3/user/{}/rooms/{}/tags", encode(&user.user_id), encode(room))
}

async fn sync(server: &TestServer, user: &TestUser, since: Option<&str>) -> Value {
    let path = match since {
        Some(since) => format!("/_matrix/client/v3/sync?since={since}&timeout=0"),
        None => "/_matrix/client/v3/sync".to_owned(),
    };
    let (status, body) = server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The `m.tag` events of the room in one sync response.
fn tag_events(sync: &Value, room: &str) -> Vec<Value> {
    sync["rooms"]["join"][room]["account_data"]["events"]
        .as_array()
        .map(|events| events.iter().filter(|event| event["type"] == "m.tag").cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn tags_are_set_listed_removed_and_synced_as_m_tag() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let since = sync(&server, &alice, None).await["next_batch"].as_str().unwrap().to_owned();
    let path = tags_path(&alice, &room);

    let (status, body) = server.get(&path, alice.token()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"tags": {}})), "an untagged room has no tags");
    let (status, body) = server.put(&format!("{path}/m.favourite"), alice.token(), json!({"order": 0.25})).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({})), "{body}");
    let (status, body) = server.put(&format!("{path}/u.work"), alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let both = json!({"m.favourite": {"order": 0.25}, "u.work": {}});
    let (status, body) = server.get(&path, alice.token()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"tags": both})));
    let synced = sync(&server, &alice, Some(&since)).await;
    assert_eq!(tag_events(&synced, &room), vec![json!({"type": "m.tag", "content": {"tags": both}})], "{synced}");
    // The same content as room account data.
    let (status, body) = server
        .get(&format!("/_matrix/client/v3/user/{}/rooms/{room}/account_data/m.tag", alice.user_id), alice.token())
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"tags": both})));

    // Removing one tag leaves the other, and syncs the new set.
    let since = synced["next_batch"].as_str().unwrap().to_owned();
    let (status, body) = server.delete(&format!("{path}/u.work"), alice.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let favourite = json!({"m.favourite": {"order": 0.25}});
    assert_eq!(server.get(&path, alice.token()).await.1, json!({"tags": favourite}));
    let synced = sync(&server, &alice, Some(&since)).await;
    assert_eq!(tag_events(&synced, &room), vec![json!({"type": "m.tag", "content": {"tags": favourite}})]);
    // Retagging replaces the order; removing a tag that is not there is fine.
    server.put(&format!("{path}/m.favourite"), alice.token(), json!({"order": 0.75})).await;
    assert_eq!(server.delete(&format!("{path}/u.none"), alice.token(), None).await.0, StatusCode::OK);
    assert_eq!(server.get(&path, alice.token()).await.1, json!({"tags": {"m.favourite": {"order": 0.75}}}));
    // An initial sync carries the tags too.
    assert_eq!(tag_events(&sync(&server, &alice, None).await, &room).len(), 1);
}

#[tokio::test]
async fn another_users_tags_are_out_of_reach() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    let path = tags_path(&alice, &room);
    server.put(&format!("{path}/m.lowpriority"), alice.token(), json!({})).await;

    assert_error(&server.get(&path, bob.token()).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let put = server.put(&format!("{path}/u.mine"), bob.token(), json!({})).await;
    assert_error(&put, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let delete = server.delete(&format!("{path}/m.lowpriority"), bob.token(), None).await;
    assert_error(&delete, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(server.get(&path, alice.token()).await.1, json!({"tags": {"m.lowpriority": {}}}));
    // A tag's order is a number.
    let bad = server.put(&format!("{path}/u.x"), alice.token(), json!({"order": "first"})).await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "M_BAD_JSON");
}
