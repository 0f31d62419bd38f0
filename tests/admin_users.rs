//! The admin API's accounts (`/_synapse/admin/v2/users…` and friends), driven over HTTP as
//! synapse-admin and scripts drive it, against Synapse's documented answers: shapes, paging,
//! 404 for unknown accounts, and M_FORBIDDEN for everyone who is not a server admin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

fn user_path(user_id: &str, rest: &str) -> String {
    format!("/_synapse/admin/v2/users/{}{rest}", encode(user_id))
}

fn v1_user_path(user_id: &str, rest: &str) -> String {
    format!("/_synapse/admin/v1/users/{}{rest}", encode(user_id))
}

async fn login_attempt(server: &TestServer, user: &str, password: &str) -> (StatusCode, Value) {
    server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}),
        )
        .await
}

/// Every admin route (but shared-secret registration, which has its own secret, and the server
/// version, public as in Synapse) refuses a request without a token, and a non-admin's token with
/// M_FORBIDDEN, whatever its body.
#[tokio::test]
async fn every_admin_route_refuses_non_admins() {
    let server = TestServer::start().await;
    let user = server.register("mallory", PASSWORD).await;
    let room = server.create_room(&user, json!({})).await;
    let routes: Vec<_> = hearth::testing::http::route_table()
        .into_iter()
        .filter(|route| route.path.starts_with("/_synapse/admin/"))
        .filter(|route| !["/_synapse/admin/v1/register", "/_synapse/admin/v1/server_version"].contains(&route.path))
        .collect();
    assert!(routes.len() >= 20, "the admin routes are listed: {}", routes.len());
    for route in &routes {
        let path = fill_path(route.path, |name| match name {
            "user_id" => user.user_id.clone(),
            "device_id" => user.device_id.clone(),
            "room_id" => room.clone(),
            "event_id" => "$nosuchevent".to_owned(),
            other => {
                inert_placeholder(other, "admin").unwrap_or_else(|| panic!("{}: no value for {{{other}}}", route.path))
            }
        });
        let response = server.request(route.method.clone(), &path, user.token(), Some(json!({"admin": true}))).await;
        assert_eq!(response.0, StatusCode::FORBIDDEN, "{} {path}: {}", route.method, response.1);
        assert_eq!(response.1["errcode"], "M_FORBIDDEN", "{} {path}", route.method);
        let response = server.request(route.method.clone(), &path, None, None).await;
        assert_eq!(response.0, StatusCode::UNAUTHORIZED, "{} {path}: {}", route.method, response.1);
        assert_eq!(response.1["errcode"], "M_MISSING_TOKEN", "{} {path}", route.method);
    }
    // The non-admin did not make themselves an admin nor block or delete anything on the way.
    assert_eq!(server.count("SELECT count(*) FROM blocked_rooms").await, 0);
    assert_eq!(server.count("SELECT count(*) FROM room_deletions").await, 0);
    assert_eq!(server.count("SELECT count(*) FROM history_purges").await, 0);
    let (status, body) = server.get("/_matrix/client/v3/account/whoami", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.count("SELECT count(*) FROM users WHERE is_admin").await, 0);
}

#[tokio::test]
async fn accounts_are_listed_in_pages_filtered_and_ordered() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    for name in ["carol", "alice", "bob", "dave"] {
        server.register(name, PASSWORD).await;
    }
    let deactivated = server.register("erin", PASSWORD).await;
    let (status, _) = server
        .post(&format!("/_synapse/admin/v1/deactivate/{}", encode(&deactivated.user_id)), root.token(), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);

    // Default: ascending by name, deactivated accounts left out, 100 a page.
    let (status, body) = server.get("/_synapse/admin/v2/users", root.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["@alice:hearth.test", "@bob:hearth.test", "@carol:hearth.test", "@dave:hearth.test", "@root:hearth.test"]
    );
    assert_eq!(body["total"], 5);
    assert!(body.get("next_token").is_none(), "one page holds everything: {body}");
    let alice = &body["users"][0];
    assert_eq!(alice["admin"], false);
    assert_eq!(alice["is_guest"], false);
    assert_eq!(alice["deactivated"], false);
    assert_eq!(alice["displayname"], "alice");
    assert!(alice["creation_ts"].as_i64().unwrap() > 1_600_000_000_000, "milliseconds in listings: {alice}");

    // Pages of two: next_token is a string offset, absent on the last page.
    let (_, page) = server.get("/_synapse/admin/v2/users?limit=2", root.token()).await;
    assert_eq!(page["users"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_token"], "2");
    let (_, page) = server.get("/_synapse/admin/v2/users?limit=2&from=4", root.token()).await;
    assert_eq!(page["users"][0]["name"], "@root:hearth.test");
    assert!(page.get("next_token").is_none());
    assert_eq!(page["total"], 5);

    // Filters.
    let (_, body) = server.get("/_synapse/admin/v2/users?deactivated=true", root.token()).await;
    assert_eq!(body["total"], 6);
    let erin = body["users"].as_array().unwrap().iter().find(|u| u["name"] == "@erin:hearth.test").unwrap();
    assert_eq!(erin["deactivated"], true);
    let (_, body) = server.get("/_synapse/admin/v2/users?admins=true", root.token()).await;
    assert_eq!(body["users"][0]["name"], "@root:hearth.test");
    assert_eq!(body["total"], 1);
    let (_, body) = server.get("/_synapse/admin/v2/users?admins=false", root.token()).await;
    assert_eq!(body["total"], 4);
    let (_, body) = server.get("/_synapse/admin/v2/users?name=AR", root.token()).await;
    assert_eq!(body["users"][0]["name"], "@carol:hearth.test");
    assert_eq!(body["total"], 1);
    let (_, body) = server.get("/_synapse/admin/v2/users?user_id=%40b", root.token()).await;
    assert_eq!(body["users"][0]["name"], "@bob:hearth.test");

    // v3 (synapse-admin's listing): `deactivated` filters both ways, and its absence lists all.
    let v3_names = |body: &Value| -> Vec<String> {
        body["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap().to_owned()).collect()
    };
    let (status, body) = server.get("/_synapse/admin/v3/users", root.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 6, "{body}");
    let (_, body) = server.get("/_synapse/admin/v3/users?deactivated=true", root.token()).await;
    assert_eq!(v3_names(&body), ["@erin:hearth.test"]);
    assert_eq!(body["total"], 1);
    let (_, body) = server.get("/_synapse/admin/v3/users?deactivated=false&limit=2", root.token()).await;
    assert_eq!(v3_names(&body), ["@alice:hearth.test", "@bob:hearth.test"]);
    assert_eq!((body["total"].clone(), body["next_token"].clone()), (json!(5), json!("2")));

    // Order and direction.
    let (_, body) = server.get("/_synapse/admin/v2/users?dir=b&limit=1", root.token()).await;
    assert_eq!(body["users"][0]["name"], "@root:hearth.test");
    let (_, body) = server.get("/_synapse/admin/v2/users?order_by=admin&dir=b&limit=1", root.token()).await;
    assert_eq!(body["users"][0]["name"], "@root:hearth.test");
    let (_, body) = server.get("/_synapse/admin/v2/users?order_by=creation_ts&limit=1", root.token()).await;
    assert_eq!(body["users"][0]["name"], "@root:hearth.test", "root was created first");

    // Bad parameters are the client's mistake.
    for query in ["from=-1", "limit=-5", "order_by=password", "dir=sideways", "limit=ten", "guests=maybe"] {
        let response = server.get(&format!("/_synapse/admin/v2/users?{query}"), root.token()).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
}

#[tokio::test]
async fn an_admin_creates_and_changes_an_account() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let frank = "@frank:hearth.test";

    let response = server.get(&user_path(frank, ""), root.token()).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // Created: 201, with the details in Synapse's shape.
    let (status, body) = server
        .put(
            &user_path(frank, ""),
            root.token(),
            json!({"password": "frank's password", "displayname": "Frank", "user_type": "bot", "threepids": []}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], frank);
    assert_eq!(body["displayname"], "Frank");
    assert_eq!(body["user_type"], "bot");
    assert_eq!(body["admin"], false);
    assert_eq!(body["threepids"], json!([]));
    let seconds = body["creation_ts"].as_i64().unwrap();
    assert!((1_600_000_000..4_000_000_000).contains(&seconds), "seconds in a user's details: {body}");
    let frank_session = server.login(frank, "frank's password").await;
    let (_, profile) = server.get(&format!("/_matrix/client/v3/profile/{}", encode(frank)), None).await;
    assert_eq!(profile["displayname"], "Frank");

    // Changed: 200. A new password ends Frank's sessions; the user type is cleared with null.
    let (status, body) = server
        .put(
            &user_path(frank, ""),
            root.token(),
            json!({"password": "a new password", "admin": true, "user_type": null, "avatar_url": "mxc://hearth.test/abc"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["admin"], true);
    assert_eq!(body["user_type"], Value::Null);
    assert_eq!(body["avatar_url"], "mxc://hearth.test/abc");
    assert_eq!(body["displayname"], "Frank", "what the body leaves out is unchanged");
    let response = server.get("/_matrix/client/v3/account/whoami", frank_session.token()).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_error(&login_attempt(&server, frank, "frank's password").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let frank_session = server.login(frank, "a new password").await;
    let (_, flag) = server.get(&v1_user_path(frank, "/admin"), root.token()).await;
    assert_eq!(flag, json!({"admin": true}));

    // Refused, with nothing changed: a bad avatar, an unknown user type, third-party ids.
    for body in [
        json!({"displayname": "Changed", "avatar_url": "https://example.org/a.png"}),
        json!({"displayname": "Changed", "user_type": "robot"}),
        json!({"displayname": "Changed", "threepids": [{"medium": "email", "address": "f@example.org"}]}),
    ] {
        let response = server.put(&user_path(frank, ""), root.token(), body).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    let response = server.put(&user_path(frank, ""), root.token(), json!({"admin": "yes"})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let (_, body) = server.get(&user_path(frank, ""), root.token()).await;
    assert_eq!(body["displayname"], "Frank");

    // Locked: Frank's session answers M_USER_LOCKED, and so does a login, until unlocked.
    let (status, body) = server.put(&user_path(frank, ""), root.token(), json!({"locked": true})).await;
    assert_eq!((status, &body["locked"]), (StatusCode::OK, &json!(true)), "{body}");
    let response = server.get("/_matrix/client/v3/account/whoami", frank_session.token()).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_USER_LOCKED");
    assert_error(&login_attempt(&server, frank, "a new password").await, StatusCode::UNAUTHORIZED, "M_USER_LOCKED");
    server.put(&user_path(frank, ""), root.token(), json!({"locked": false})).await;
    let (status, _) = server.get("/_matrix/client/v3/account/whoami", frank_session.token()).await;
    assert_eq!(status, StatusCode::OK);

    // Deactivated through PUT, then reactivated (which needs a password).
    let (_, body) = server.put(&user_path(frank, ""), root.token(), json!({"deactivated": true})).await;
    assert_eq!(body["deactivated"], true);
    assert_error(&login_attempt(&server, frank, "a new password").await, StatusCode::FORBIDDEN, "M_USER_DEACTIVATED");
    let response = server.put(&user_path(frank, ""), root.token(), json!({"deactivated": false})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let (status, body) =
        server.put(&user_path(frank, ""), root.token(), json!({"deactivated": false, "password": "third one"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deactivated"], false);
    server.login(frank, "third one").await;

    // Only local accounts; and a new account's name follows the registration rules.
    let response = server.get(&user_path("@frank:elsewhere.example", ""), root.token()).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let response = server.get(&user_path("not a user id", ""), root.token()).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let response = server.put(&user_path("@12345:hearth.test", ""), root.token(), json!({})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_USERNAME");
}

#[tokio::test]
async fn admin_flag_shadow_ban_rate_limits_and_username_checks() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let grace = server.register("grace", PASSWORD).await;

    assert_eq!(server.get(&v1_user_path(&grace.user_id, "/admin"), root.token()).await.1, json!({"admin": false}));
    let (status, _) = server.put(&v1_user_path(&grace.user_id, "/admin"), root.token(), json!({"admin": true})).await;
    assert_eq!(status, StatusCode::OK);
    // Grace is an admin now: her own token reaches the admin API.
    let (status, body) = server.get("/_synapse/admin/v2/users", grace.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = server.put(&v1_user_path(&root.user_id, "/admin"), root.token(), json!({"admin": false})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let response = server.put(&v1_user_path(&grace.user_id, "/admin"), root.token(), json!({})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    let response = server.get(&v1_user_path("@nobody:hearth.test", "/admin"), root.token()).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let room = server.create_room(&root, json!({"preset": "public_chat"})).await;
    server.join(&grace, &room).await;
    let (status, body) = server.post(&v1_user_path(&grace.user_id, "/shadow_ban"), root.token(), json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(server.get(&user_path(&grace.user_id, ""), root.token()).await.1["shadow_banned"], true);
    // Shadow-banned, Grace's message is answered as sent, with an event id, and reaches no one.
    let send = |txn: &str| format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", encode(&room));
    let (status, sent) = server.put(&send("s1"), grace.token(), json!({"msgtype": "m.text", "body": "spam"})).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert!(sent["event_id"].as_str().unwrap().starts_with('$'), "{sent}");
    let (_, history) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b", encode(&room)), root.token()).await;
    assert!(!history.to_string().contains("spam"), "{history}");
    // So are her state events, invitations, typing and public receipts: answered as done,
    // seen by nobody.
    let room_part = format!("/_matrix/client/v3/rooms/{}", encode(&room));
    let (status, set) =
        server.put(&format!("{room_part}/state/m.room.topic"), grace.token(), json!({"topic": "spam"})).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert!(set["event_id"].as_str().unwrap().starts_with('$'), "{set}");
    let topic = server.get(&format!("{room_part}/state/m.room.topic"), root.token()).await;
    assert_error(&topic, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let ivan = server.register("ivan", PASSWORD).await;
    let (status, _) =
        server.post(&format!("{room_part}/invite"), grace.token(), json!({"user_id": ivan.user_id})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, ivan_sync) = server.get("/_matrix/client/v3/sync", ivan.token()).await;
    assert!(ivan_sync["rooms"]["invite"].get(room.as_str()).is_none(), "{ivan_sync}");
    let typing = format!("{room_part}/typing/{}", encode(&grace.user_id));
    let (status, _) = server.put(&typing, grace.token(), json!({"typing": true, "timeout": 30000})).await;
    assert_eq!(status, StatusCode::OK);
    let welcome = history["chunk"][0]["event_id"].as_str().unwrap().to_owned();
    let (status, _) =
        server.post(&format!("{room_part}/receipt/m.read/{}", encode(&welcome)), grace.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, root_sync) = server.get("/_matrix/client/v3/sync", root.token()).await;
    let ephemeral = root_sync["rooms"]["join"][room.as_str()]["ephemeral"].to_string();
    assert!(!ephemeral.contains(grace.user_id.as_str()), "{ephemeral}");
    server.delete(&v1_user_path(&grace.user_id, "/shadow_ban"), root.token(), None).await;
    assert_eq!(server.get(&user_path(&grace.user_id, ""), root.token()).await.1["shadow_banned"], false);
    server.put(&send("s2"), grace.token(), json!({"msgtype": "m.text", "body": "welcome back"})).await;
    let (_, history) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b", encode(&room)), root.token()).await;
    assert!(history.to_string().contains("welcome back"), "{history}");

    let path = v1_user_path(&grace.user_id, "/override_ratelimit");
    assert_eq!(server.get(&path, root.token()).await.1, json!({}));
    let (status, body) = server.post(&path, root.token(), json!({"messages_per_second": 10})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"messages_per_second": 10, "burst_count": 0}));
    assert_eq!(server.get(&path, root.token()).await.1, json!({"messages_per_second": 10, "burst_count": 0}));
    let response = server.post(&path, root.token(), json!({"burst_count": -1})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    server.delete(&path, root.token(), None).await;
    assert_eq!(server.get(&path, root.token()).await.1, json!({}));

    let available = |name: &str| format!("/_synapse/admin/v1/username_available?username={name}");
    assert_eq!(server.get(&available("henry"), root.token()).await.1, json!({"available": true}));
    assert_error(&server.get(&available("grace"), root.token()).await, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    assert_error(
        &server.get(&available("Bad%20Name"), root.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_USERNAME",
    );
}

#[tokio::test]
async fn deactivation_with_erase_closes_the_account_and_empties_the_profile() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let ivan = server.register("ivan", PASSWORD).await;
    let room = server.create_room(&root, json!({"preset": "public_chat"})).await;
    server.join(&ivan, &room).await;
    server
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", encode(&ivan.user_id)),
            ivan.token(),
            json!({"displayname": "Ivan the Visible"}),
        )
        .await;

    let path = format!("/_synapse/admin/v1/deactivate/{}", encode(&ivan.user_id));
    let (status, body) = server.post(&path, root.token(), json!({"erase": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"id_server_unbind_result": "success"}));

    assert_error(&login_attempt(&server, &ivan.user_id, PASSWORD).await, StatusCode::FORBIDDEN, "M_USER_DEACTIVATED");
    let response = server.get("/_matrix/client/v3/account/whoami", ivan.token()).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    let response = server.get(&format!("/_matrix/client/v3/profile/{}", encode(&ivan.user_id)), root.token()).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let (_, details) = server.get(&user_path(&ivan.user_id, ""), root.token()).await;
    assert_eq!(details["deactivated"], true);
    assert_eq!(details["erased"], true);
    assert_eq!(details["displayname"], Value::Null);
    // Like every deactivation, the account left its rooms.
    let (_, members) =
        server.get(&format!("/_matrix/client/v3/rooms/{}/joined_members", encode(&room)), root.token()).await;
    assert!(members["joined"].get(ivan.user_id.as_str()).is_none(), "{members}");

    let response = server.post("/_synapse/admin/v1/deactivate/%40ghost%3Ahearth.test", root.token(), json!({})).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn password_resets_end_sessions_unless_asked_not_to() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let judy = server.register("judy", PASSWORD).await;
    let path = format!("/_synapse/admin/v1/reset_password/{}", encode(&judy.user_id));

    let (status, body) =
        server.post(&path, root.token(), json!({"new_password": "kept sessions", "logout_devices": false})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", judy.token()).await.0, StatusCode::OK);

    let (status, _) = server.post(&path, root.token(), json!({"new_password": "ended sessions"})).await;
    assert_eq!(status, StatusCode::OK);
    let response = server.get("/_matrix/client/v3/account/whoami", judy.token()).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    server.login(&judy.user_id, "ended sessions").await;

    assert_error(&server.post(&path, root.token(), json!({})).await, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    let response = server.post(&path, root.token(), json!({"new_password": ""})).await;
    assert_eq!(response.0, StatusCode::BAD_REQUEST, "{}", response.1);
}

#[tokio::test]
async fn devices_sessions_rooms_and_account_data() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let kim = server.register("kim", PASSWORD).await;
    let phone = server.login("kim", PASSWORD).await;
    let room = server.create_room(&kim, json!({})).await;
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/user/{}/account_data/org.example.settings", encode(&kim.user_id)),
            kim.token(),
            json!({"theme": "dark"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/rooms/{}/account_data/org.example.room",
                encode(&kim.user_id),
                encode(&room)
            ),
            kim.token(),
            json!({"pinned": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = server.get(&user_path(&kim.user_id, "/devices"), root.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 2);
    let device = body["devices"].as_array().unwrap().iter().find(|d| d["device_id"] == kim.device_id.as_str()).unwrap();
    assert_eq!(device["user_id"], kim.user_id.as_str());
    assert!(device["last_seen_ts"].is_i64(), "{device}");
    assert_eq!(device["last_seen_ip"], "127.0.0.1");

    let (_, whois) = server.get(&format!("/_synapse/admin/v1/whois/{}", encode(&kim.user_id)), root.token()).await;
    assert_eq!(whois["user_id"], kim.user_id.as_str());
    let connection = &whois["devices"][phone.device_id.as_str()]["sessions"][0]["connections"][0];
    assert_eq!(connection["ip"], "127.0.0.1", "{whois}");

    let device_path = user_path(&kim.user_id, &format!("/devices/{}", phone.device_id));
    let (status, _) = server.put(&device_path, root.token(), json!({"display_name": "Kim's phone"})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, device) = server.get(&device_path, root.token()).await;
    assert_eq!(device["display_name"], "Kim's phone");
    let (status, _) = server.delete(&device_path, root.token(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(&server.get(&device_path, root.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response = server.get("/_matrix/client/v3/account/whoami", phone.token()).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");

    let (status, _) = server
        .post(
            &user_path(&kim.user_id, "/delete_devices"),
            root.token(),
            json!({"devices": [kim.device_id, "NOSUCHDEVICE"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.get(&user_path(&kim.user_id, "/devices"), root.token()).await.1["total"], 0);

    let (_, rooms) = server.get(&v1_user_path(&kim.user_id, "/joined_rooms"), root.token()).await;
    assert_eq!(rooms, json!({"joined_rooms": [room], "total": 1}));
    // (Kim's devices are gone: a new session.)
    let kim = server.login("kim", PASSWORD).await;
    let other = server.create_room(&root, json!({"preset": "public_chat"})).await;
    server.join(&kim, &other).await;
    server.post(&format!("/_matrix/client/v3/rooms/{}/leave", encode(&other)), kim.token(), json!({})).await;
    let (_, memberships) = server.get(&v1_user_path(&kim.user_id, "/memberships"), root.token()).await;
    assert_eq!(memberships, json!({"memberships": {room.as_str(): "join", other.as_str(): "leave"}}));

    let (_, data) = server.get(&v1_user_path(&kim.user_id, "/accountdata"), root.token()).await;
    assert_eq!(data["account_data"]["global"]["org.example.settings"], json!({"theme": "dark"}), "{data}");
    assert_eq!(data["account_data"]["rooms"][room.as_str()]["org.example.room"], json!({"pinned": true}), "{data}");

    for path in [
        user_path("@nobody:hearth.test", "/devices"),
        v1_user_path("@nobody:hearth.test", "/joined_rooms"),
        v1_user_path("@nobody:hearth.test", "/accountdata"),
        "/_synapse/admin/v1/whois/%40nobody%3Ahearth.test".to_owned(),
    ] {
        assert_error(&server.get(&path, root.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    }
    let response = server.request(Method::POST, &user_path(&kim.user_id, "/delete_devices"), root.token(), None).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
}

#[tokio::test]
async fn an_admin_logs_in_as_a_user_on_a_device_the_user_does_not_see() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let path = format!("/_synapse/admin/v1/users/{}/login", encode(&alice.user_id));
    let (status, body) = server.post(&path, root.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (status, whoami) = server.get("/_matrix/client/v3/account/whoami", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{whoami}");
    assert_eq!(whoami["user_id"], alice.user_id.as_str());
    // Acting as Alice works, and her device list shows only her own device, to her and to admins.
    let room = server.create_room(&TestUser { access_token: token.clone(), ..alice.clone() }, json!({})).await;
    assert!(room.starts_with('!'));
    let (_, devices) = server.get("/_matrix/client/v3/devices", alice.token()).await;
    let ids: Vec<&str> =
        devices["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [alice.device_id.as_str()]);
    let (_, listed) =
        server.get(&format!("/_synapse/admin/v2/users/{}/devices", encode(&alice.user_id)), root.token()).await;
    assert_eq!(listed["total"], 1, "{listed}");

    // A token with an expiry stops working then.
    let soon = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64 + 1500;
    let (status, body) = server.post(&path, root.token(), json!({"valid_until_ms": soon})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expiring = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", Some(&expiring)).await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let response = server.get("/_matrix/client/v3/account/whoami", Some(&expiring)).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");

    let response = server
        .post(&format!("/_synapse/admin/v1/users/{}/login", encode(&root.user_id)), root.token(), json!({}))
        .await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_UNKNOWN");
    let response = server.post("/_synapse/admin/v1/users/%40nobody%3Ahearth.test/login", root.token(), json!({})).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response = server.post(&path, root.token(), json!({"valid_until_ms": 1})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let response = server.post(&path, alice.token(), json!({})).await;
    assert_error(&response, StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

/// An admin's per-user override replaces the server's event budget: 0 lifts it, numbers set a
/// budget of the user's own; without one the server's budget applies.
#[tokio::test]
async fn rate_limit_overrides_are_what_the_limiter_applies() {
    let server = TestServer::start_with(|config| {
        config.rate_limits.enabled = true;
        config.rate_limits.registration_burst = 100;
        config.rate_limits.message_per_second = 0.001;
        config.rate_limits.message_burst = 3;
    })
    .await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    server.join(&bob, &room).await;
    server.join(&carol, &room).await;
    let send = |user: &TestUser, txn: String| {
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", encode(&room));
        let token = user.access_token.clone();
        let server = &server;
        async move { server.put(&path, Some(&token), json!({"msgtype": "m.text", "body": "hi"})).await }
    };
    let override_path = |user: &TestUser| v1_user_path(&user.user_id, "/override_ratelimit");

    // Alice has the server's budget: three events, then M_LIMIT_EXCEEDED, state events included.
    for n in 0..3 {
        assert_eq!(send(&alice, format!("a{n}")).await.0, StatusCode::OK);
    }
    let limited = send(&alice, "a3".to_owned()).await;
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].as_u64().unwrap() > 0, "{}", limited.1);
    let topic = format!("/_matrix/client/v3/rooms/{}/state/m.room.topic", encode(&room));
    let response = server.put(&topic, alice.token(), json!({"topic": "t"})).await;
    assert_error(&response, StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");

    // Bob's override of 0 lifts the limit.
    server.post(&override_path(&bob), root.token(), json!({"messages_per_second": 0, "burst_count": 0})).await;
    for n in 0..10 {
        assert_eq!(send(&bob, format!("b{n}")).await.0, StatusCode::OK, "bob's event {n}");
    }
    // Carol's is tighter than the server's: one event, then wait.
    server.post(&override_path(&carol), root.token(), json!({"messages_per_second": 1, "burst_count": 1})).await;
    assert_eq!(send(&carol, "c0".to_owned()).await.0, StatusCode::OK);
    assert_error(&send(&carol, "c1".to_owned()).await, StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");
    // Without it she is back on the server's budget.
    server.delete(&override_path(&carol), root.token(), None).await;
    assert_eq!(send(&carol, "c2".to_owned()).await.0, StatusCode::OK);
}

/// What synapse-admin's user page asks besides the account: invitations sent and rooms joined
/// since a time, the (empty) experimental features and the user's pushers.
#[tokio::test]
async fn a_users_page_shows_activity_features_and_pushers() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = server.create_room(&alice, json!({})).await;
    let invite = format!("/_matrix/client/v3/rooms/{}/invite", encode(&room));
    let (status, _) = server.post(&invite, alice.token(), json!({"user_id": bob.user_id})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.post(&format!("/_matrix/client/v3/join/{}", encode(&room)), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        server.post(&format!("/_matrix/client/v3/rooms/{}/leave", encode(&room)), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);

    let activity = |user: &TestUser, what: &str, from_ts: i64| {
        format!("/_synapse/admin/v1/users/{}/{what}?from_ts={from_ts}", encode(&user.user_id))
    };
    let later = 4_000_000_000_000_i64;
    let (status, body) = server.get(&activity(&alice, "sent_invite_count", 0), root.token()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"invite_count": 1})));
    let (_, body) = server.get(&activity(&alice, "sent_invite_count", later), root.token()).await;
    assert_eq!(body, json!({"invite_count": 0}));
    let (_, body) = server.get(&activity(&bob, "sent_invite_count", 0), root.token()).await;
    assert_eq!(body, json!({"invite_count": 0}));
    // Bob left, and the room still counts: the count is of rooms joined since then.
    let (status, body) = server.get(&activity(&bob, "cumulative_joined_room_count", 0), root.token()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"cumulative_joined_room_count": 1})));
    let (_, body) = server.get(&activity(&bob, "cumulative_joined_room_count", later), root.token()).await;
    assert_eq!(body, json!({"cumulative_joined_room_count": 0}));
    let missing = server
        .get(&format!("/_synapse/admin/v1/users/{}/sent_invite_count", encode(&alice.user_id)), root.token())
        .await;
    assert_error(&missing, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");

    let features = format!("/_synapse/admin/v1/experimental_features/{}", encode(&alice.user_id));
    let (status, body) = server.get(&features, root.token()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"features": {}})));

    let pushers = format!("/_synapse/admin/v1/users/{}/pushers", encode(&alice.user_id));
    let (status, body) = server.get(&pushers, root.token()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"total": 0, "pushers": []})));
    let pusher = json!({
        "kind": "http", "app_id": "org.example.app", "pushkey": "alice-phone",
        "app_display_name": "App", "device_display_name": "Phone", "lang": "en",
        "data": {"url": "https://push.example/_matrix/push/v1/notify"}
    });
    let (status, body) = server.post("/_matrix/client/v3/pushers/set", alice.token(), pusher).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = server.get(&pushers, root.token()).await;
    assert_eq!(body["total"], 1, "{body}");
    assert_eq!(body["pushers"][0]["pushkey"], "alice-phone");
    assert_eq!(body["pushers"][0]["data"]["url"], "https://push.example/_matrix/push/v1/notify");

    for path in [features, pushers, activity(&alice, "sent_invite_count", 0)] {
        let unknown = path.replace("alice", "nobody");
        assert_error(&server.get(&unknown, root.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    }
}
