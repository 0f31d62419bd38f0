//! Directories across servers (issue #18 item 3), between two Hearths: a user of B browses A's
//! public rooms and joins one from the listing, after which each server's user directory
//! finds the other's user; a space on A lists its child rooms through B, which asks A for
//! the rooms it is not in.

use crate::common;

use common::federation::FederatedPair;
use common::{TestServer, TestUser, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PW: &str = "directory-test-pw";

async fn set_display_name(server: &TestServer, user: &TestUser, name: &str) {
    let path = format!("/_matrix/client/v3/profile/{}/displayname", encode(&user.user_id));
    let (status, body) = server.put(&path, user.token(), json!({"displayname": name})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The user ids `searcher` finds for `term`, with their display names.
async fn directory_search(server: &TestServer, searcher: &TestUser, term: &str) -> Vec<(String, Value)> {
    let (status, body) =
        server.post("/_matrix/client/v3/user_directory/search", searcher.token(), json!({"search_term": term})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results");
    results.iter().map(|user| (user["user_id"].as_str().unwrap().to_owned(), user["display_name"].clone())).collect()
}

#[tokio::test]
async fn a_user_of_b_finds_a_room_of_a_joins_it_and_each_directory_finds_the_other() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let alice = a.server.register("alice", PW).await;
    set_display_name(&a.server, &alice, "Alice Tea").await;
    let tea =
        a.server.create_room(&alice, json!({"preset": "public_chat", "visibility": "public", "name": "Tea"})).await;
    a.server.create_room(&alice, json!({"preset": "public_chat", "visibility": "public", "name": "Coffee"})).await;
    let bob = b.server.register("bob", PW).await;
    set_display_name(&b.server, &bob, "Bob Biscuit").await;

    // Before they share a room, neither directory knows the other server's user.
    assert_eq!(directory_search(&b.server, &bob, "alice").await, vec![]);
    assert_eq!(directory_search(&a.server, &alice, "biscuit").await, vec![]);

    // Bob searches A's directory through B (the filtered form, over federation).
    let path = format!("/_matrix/client/v3/publicRooms?server={}", encode(a.name().as_str()));
    let (status, listing) = b.server.post(&path, bob.token(), json!({"filter": {"generic_search_term": "tea"}})).await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let chunk = listing["chunk"].as_array().expect("chunk");
    assert_eq!(chunk.len(), 1, "only the room whose name matches: {listing}");
    assert_eq!((chunk[0]["room_id"].as_str(), chunk[0]["name"].as_str()), (Some(tea.as_str()), Some("Tea")));
    // And joins the room the listing gave, through the server he browsed.
    let join = format!("/_matrix/client/v3/join/{}?server_name={}", encode(&tea), encode(a.name().as_str()));
    let (status, joined) = b.server.post(&join, bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    // A counts him among the room's members, which its listing now shows.
    let (_, listing) = b
        .server
        .get(&format!("/_matrix/client/v3/publicRooms?server={}", encode(a.name().as_str())), bob.token())
        .await;
    let listed = listing["chunk"].as_array().unwrap().iter().find(|room| room["room_id"] == tea.as_str()).cloned();
    assert_eq!(listed.map(|room| room["num_joined_members"].clone()), Some(json!(2)), "{listing}");

    // Now they share a room: each server's directory finds the other's user, by id or by the
    // display name their join carries.
    let found = directory_search(&a.server, &alice, "biscuit").await;
    assert_eq!(found, vec![(bob.user_id.clone(), json!("Bob Biscuit"))]);
    // B joined with a partial state (the room is named, so it knew none of A's members);
    // its member list answers once the full state is in.
    let (status, body) = b.server.get(&format!("/_matrix/client/v3/rooms/{tea}/joined_members"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let found = directory_search(&b.server, &bob, "alice").await;
    assert_eq!(found, vec![(alice.user_id.clone(), json!("Alice Tea"))]);
}

#[tokio::test]
async fn a_space_on_a_lists_its_child_rooms_through_b() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let alice = a.server.register("alice", PW).await;
    let space = a
        .server
        .create_room(&alice, json!({"preset": "public_chat", "name": "Guild", "creation_content": {"type": "m.space"}}))
        .await;
    let open = a.server.create_room(&alice, json!({"preset": "public_chat", "name": "Open hall"})).await;
    let private = a.server.create_room(&alice, json!({"preset": "private_chat", "name": "Back office"})).await;
    for (child, order) in [(&open, "a"), (&private, "b")] {
        let path = format!("/_matrix/client/v3/rooms/{}/state/m.space.child/{}", encode(&space), encode(child));
        let content = json!({"via": [a.name().as_str()], "order": order});
        let (status, body) = a.server.put(&path, alice.token(), content).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let bob = b.server.register("bob", PW).await;
    let join = format!("/_matrix/client/v3/join/{}?via={}", encode(&space), encode(a.name().as_str()));
    let (status, body) = b.server.post(&join, bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        b.server.count(&format!("SELECT count(*) FROM rooms WHERE room_id = '{open}'")).await,
        0,
        "B is not in the child room"
    );

    let (status, page) =
        b.server.get(&format!("/_matrix/client/v1/rooms/{}/hierarchy", encode(&space)), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let rooms = page["rooms"].as_array().expect("rooms");
    let names: Vec<_> = rooms.iter().map(|room| (room["room_id"].as_str().unwrap(), room["name"].as_str())).collect();
    // The space from B's state; the open child as A describes it (B knows nothing else of it);
    // the private child left out: A does not show it to B.
    assert_eq!(names, vec![(space.as_str(), Some("Guild")), (open.as_str(), Some("Open hall"))], "{page}");
    assert_eq!(rooms[0]["children_state"].as_array().map(Vec::len), Some(2), "{page}");
    assert_eq!(rooms[1]["num_joined_members"], 1);
}
