//! Spaces and room upgrades, as users see them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "spaces-test-pw";

async fn add_child(server: &TestServer, user: &TestUser, space: &str, child: &str, suggested: bool) {
    let (status, body) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{child}"),
            user.token(),
            json!({"via": ["hearth.test"], "suggested": suggested}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn room_ids(page: &Value) -> Vec<String> {
    page["rooms"].as_array().expect("rooms").iter().filter_map(|r| r["room_id"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn a_space_lists_the_children_a_user_may_see() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let space = server
        .create_room(
            &alice,
            json!({"preset": "public_chat", "name": "Garden", "creation_content": {"type": "m.space"}}),
        )
        .await;
    let open = server.create_room(&alice, json!({"preset": "public_chat", "name": "Roses"})).await;
    let secret = server.create_room(&alice, json!({"preset": "private_chat", "name": "Compost"})).await;
    let sub =
        server.create_room(&alice, json!({"preset": "public_chat", "creation_content": {"type": "m.space"}})).await;
    let deep = server.create_room(&alice, json!({"preset": "public_chat", "name": "Deep"})).await;
    add_child(&server, &alice, &space, &open, true).await;
    add_child(&server, &alice, &space, &secret, false).await;
    add_child(&server, &alice, &space, &sub, false).await;
    add_child(&server, &alice, &sub, &deep, false).await;

    let (status, page) = server.get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids = room_ids(&page);
    assert_eq!(ids[0], space);
    assert!(ids.contains(&open) && ids.contains(&sub) && ids.contains(&deep), "{ids:?}");
    assert!(!ids.contains(&secret), "an invite-only room is not previewable: {ids:?}");
    assert_eq!(page["rooms"][0]["room_type"], "m.space");
    assert_eq!(page["rooms"][0]["name"], "Garden");
    assert_eq!(page["rooms"][0]["children_state"].as_array().map(Vec::len), Some(3));

    // The creator sees the private child too.
    let (_, page) = server.get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy"), alice.token()).await;
    assert!(room_ids(&page).contains(&secret));

    let (_, shallow) =
        server.get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy?max_depth=1"), bob.token()).await;
    assert!(!room_ids(&shallow).contains(&deep));
    let (_, suggested) =
        server.get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy?suggested_only=true"), bob.token()).await;
    assert_eq!(room_ids(&suggested), vec![space.clone(), open.clone()]);

    // Pagination walks the same list in pieces.
    let (_, first) = server.get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy?limit=2"), bob.token()).await;
    let next = first["next_batch"].as_str().expect("next_batch");
    let (_, second) =
        server.get(&format!("/_matrix/client/v1/rooms/{space}/hierarchy?limit=2&from={next}"), bob.token()).await;
    let mut walked = room_ids(&first);
    walked.extend(room_ids(&second));
    assert_eq!(walked, ids);

    let private_space = server.create_room(&alice, json!({"creation_content": {"type": "m.space"}})).await;
    assert_error(
        &server.get(&format!("/_matrix/client/v1/rooms/{private_space}/hierarchy"), bob.token()).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn upgrading_a_room_moves_its_state_and_bans_and_quiets_the_old_one() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let mallory = server.register("mallory", PW).await;
    for version in ["4", "10", "12"] {
        let old = server
            .create_room(
                &alice,
                json!({"room_version": version, "preset": "public_chat", "name": "Old times", "topic": "Before",
                   "room_alias_name": format!("oldtimes{version}"), "visibility": "public"}),
            )
            .await;
        server.post(&format!("/_matrix/client/v3/join/{old}"), bob.token(), json!({})).await;
        server.post(&format!("/_matrix/client/v3/join/{old}"), mallory.token(), json!({})).await;
        let (status, body) = server
            .post(&format!("/_matrix/client/v3/rooms/{old}/ban"), alice.token(), json!({"user_id": mallory.user_id}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // A member without power cannot upgrade.
        let refused = server
            .post(&format!("/_matrix/client/v3/rooms/{old}/upgrade"), bob.token(), json!({"new_version": "12"}))
            .await;
        assert_error(&refused, StatusCode::FORBIDDEN, "M_FORBIDDEN");

        let (status, body) = server
            .post(&format!("/_matrix/client/v3/rooms/{old}/upgrade"), alice.token(), json!({"new_version": "12"}))
            .await;
        assert_eq!(status, StatusCode::OK, "v{version}: {body}");
        let new = body["replacement_room"].as_str().expect("replacement_room").to_owned();

        let (_, tombstone) =
            server.get(&format!("/_matrix/client/v3/rooms/{old}/state/m.room.tombstone/"), bob.token()).await;
        assert_eq!(tombstone["replacement_room"], new);
        let (_, create) =
            server.get(&format!("/_matrix/client/v3/rooms/{new}/state/m.room.create/"), alice.token()).await;
        assert_eq!(create["predecessor"]["room_id"], old);
        assert_eq!(create["room_version"], "12");
        let (_, name) = server.get(&format!("/_matrix/client/v3/rooms/{new}/state/m.room.name/"), alice.token()).await;
        assert_eq!(name["name"], "Old times");
        let (_, rules) =
            server.get(&format!("/_matrix/client/v3/rooms/{new}/state/m.room.join_rules/"), alice.token()).await;
        assert_eq!(rules["join_rule"], "public");

        // The alias, the canonical alias and the directory listing moved along.
        let alias = format!("%23oldtimes{version}:hearth.test");
        let (status, resolved) = server.get(&format!("/_matrix/client/v3/directory/room/{alias}"), bob.token()).await;
        assert_eq!(status, StatusCode::OK, "{resolved}");
        assert_eq!(resolved["room_id"], new);
        let (_, canonical) =
            server.get(&format!("/_matrix/client/v3/rooms/{new}/state/m.room.canonical_alias/"), alice.token()).await;
        assert_eq!(canonical["alias"], format!("#oldtimes{version}:hearth.test"));
        let (_, listed) = server.get(&format!("/_matrix/client/v3/directory/list/room/{new}"), None).await;
        assert_eq!(listed["visibility"], "public");
        let (_, unlisted) = server.get(&format!("/_matrix/client/v3/directory/list/room/{old}"), None).await;
        assert_eq!(unlisted["visibility"], "private");

        // Bob follows; the ban came along, so Mallory cannot.
        assert_eq!(
            server.post(&format!("/_matrix/client/v3/join/{new}"), bob.token(), json!({})).await.0,
            StatusCode::OK
        );
        assert_error(
            &server.post(&format!("/_matrix/client/v3/join/{new}"), mallory.token(), json!({})).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
        // The old room has fallen quiet for ordinary members.
        let (status, body) = server
            .put(
                &format!("/_matrix/client/v3/rooms/{old}/send/m.room.message/late{version}"),
                bob.token(),
                json!({"msgtype": "m.text", "body": "hello?"}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let unsupported = server.post("/_matrix/client/v3/createRoom", alice.token(), json!({})).await;
    let room = unsupported.1["room_id"].as_str().expect("room").to_owned();
    let bad = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/upgrade"), alice.token(), json!({"new_version": "13"}))
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION");
}
