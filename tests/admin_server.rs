//! The admin API for the server as a whole: server version, registration tokens, event
//! reports, federation destinations, media per user and media statistics, over HTTP against
//! Synapse's documented answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::media_support;
use common::*;
use media_support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";
const TOKENS: &str = "/_synapse/admin/v1/registration_tokens";

async fn token_validity(server: &TestServer, token: &str) -> bool {
    let (status, body) = server
        .get(&format!("/_matrix/client/v1/register/m.login.registration_token/validity?token={token}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["valid"].as_bool().unwrap()
}

#[tokio::test]
async fn server_version_and_registration_tokens() {
    let server = TestServer::start_with(|config| config.registration.token_required = true).await;
    let root = server.register_admin("root", PASSWORD).await;

    // Public as in Synapse: synapse-admin asks it without a token.
    let (status, body) = server.get("/_synapse/admin/v1/server_version", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["server_version"].as_str().unwrap().starts_with("Hearth "), "{body}");
    let (_, updates) = server.get("/_synapse/admin/v1/background_updates/status", root.token()).await;
    assert_eq!(updates, json!({"enabled": true, "current_updates": {}}));

    let (status, created) =
        server.post(&format!("{TOKENS}/new"), root.token(), json!({"token": "welcome-1", "uses_allowed": 1})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(
        created,
        json!({"token": "welcome-1", "uses_allowed": 1, "pending": 0, "completed": 0, "expiry_time": null})
    );
    assert!(token_validity(&server, "welcome-1").await);
    let (_, generated) = server.post(&format!("{TOKENS}/new"), root.token(), json!({"length": 8})).await;
    assert_eq!(generated["token"].as_str().unwrap().len(), 8, "{generated}");

    let (_, listed) = server.get(TOKENS, root.token()).await;
    assert_eq!(listed["registration_tokens"].as_array().unwrap().len(), 2);

    // Used up: no longer valid, and listed among the invalid ones; lifting the limit revives it.
    let (status, updated) = server.put(&format!("{TOKENS}/welcome-1"), root.token(), json!({"uses_allowed": 0})).await;
    assert_eq!((status, &updated["uses_allowed"]), (StatusCode::OK, &json!(0)), "{updated}");
    assert!(!token_validity(&server, "welcome-1").await);
    let (_, invalid) = server.get(&format!("{TOKENS}?valid=false"), root.token()).await;
    assert_eq!(invalid["registration_tokens"][0]["token"], "welcome-1", "{invalid}");
    let (_, updated) = server.put(&format!("{TOKENS}/welcome-1"), root.token(), json!({"uses_allowed": null})).await;
    assert_eq!(updated["uses_allowed"], Value::Null);
    assert!(token_validity(&server, "welcome-1").await);

    let (status, _) = server.delete(&format!("{TOKENS}/welcome-1"), root.token(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(&server.get(&format!("{TOKENS}/welcome-1"), root.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(
        &server.delete(&format!("{TOKENS}/welcome-1"), root.token(), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert!(!token_validity(&server, "welcome-1").await);

    let taken = generated["token"].as_str().unwrap();
    for body in [
        json!({"token": "no spaces"}),
        json!({"token": taken}),
        json!({"uses_allowed": -1}),
        json!({"expiry_time": 1000}),
        json!({"length": 0}),
    ] {
        let response = server.post(&format!("{TOKENS}/new"), root.token(), body.clone()).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
}

#[tokio::test]
async fn event_reports_are_listed_shown_and_deleted() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = server.create_room(&alice, json!({"preset": "public_chat", "name": "Reported"})).await;
    server.join(&bob, &room).await;
    let first = server.send_text(&alice, &room, "t1", "first offence").await;
    let second = server.send_text(&alice, &room, "t2", "second offence").await;
    for (event, reason) in [(&first, "rude"), (&second, "ruder")] {
        let (status, _) = server
            .post(
                &format!("/_matrix/client/v3/rooms/{}/report/{}", encode(&room), encode(event)),
                bob.token(),
                json!({"reason": reason, "score": -100}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    let (status, body) = server.get("/_synapse/admin/v1/event_reports", root.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 2);
    let newest = &body["event_reports"][0];
    assert_eq!(newest["event_id"], second.as_str(), "newest first");
    assert_eq!(newest["reason"], "ruder");
    assert_eq!(newest["user_id"], bob.user_id.as_str());
    assert_eq!(newest["sender"], alice.user_id.as_str());
    assert_eq!(newest["name"], "Reported");
    assert_eq!(newest["room_id"], room.as_str());
    let (_, page) = server.get("/_synapse/admin/v1/event_reports?dir=f&limit=1", root.token()).await;
    assert_eq!(page["event_reports"][0]["event_id"], first.as_str());
    assert_eq!(page["next_token"], 1);
    let (_, none) = server.get("/_synapse/admin/v1/event_reports?user_id=%40alice", root.token()).await;
    assert_eq!(none["total"], 0);

    let id = newest["id"].as_i64().unwrap();
    let (status, report) = server.get(&format!("/_synapse/admin/v1/event_reports/{id}"), root.token()).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["event_json"]["content"]["body"], "second offence", "{report}");
    let (status, _) = server.delete(&format!("/_synapse/admin/v1/event_reports/{id}"), root.token(), None).await;
    assert_eq!(status, StatusCode::OK);
    let gone = server.get(&format!("/_synapse/admin/v1/event_reports/{id}"), root.token()).await;
    assert_error(&gone, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_eq!(server.get("/_synapse/admin/v1/event_reports", root.token()).await.1["total"], 1);
    let bad = server.get("/_synapse/admin/v1/event_reports/abc", root.token()).await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
}

#[tokio::test]
async fn federation_destinations_and_their_backoff_reset() {
    let server = TestServer::start().await;
    let root = server.register_admin("root", PASSWORD).await;
    sqlx::query(
        "INSERT INTO federation_destinations (destination, failing_since_ts, failures, last_error, backoff_ms, retry_at_ts)
         VALUES ('down.example', 1000, 3, 'connection refused', 60000, 61000), ('up.example', NULL, 0, NULL, 0, NULL)",
    )
    .execute(&server.state.pool)
    .await
    .unwrap();

    let (status, body) = server.get("/_synapse/admin/v1/federation/destinations", root.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 2);
    let down = &body["destinations"][0];
    assert_eq!(down["destination"], "down.example");
    assert_eq!(down["retry_interval"], 60000);
    assert_eq!(down["retry_last_ts"], 1000);
    assert_eq!(down["failure_ts"], 1000);

    let path = "/_synapse/admin/v1/federation/destinations/down.example";
    let (status, _) = server.post(&format!("{path}/reset_connection"), root.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, down) = server.get(path, root.token()).await;
    assert_eq!(down["retry_interval"], 0, "{down}");
    assert_eq!(down["failure_ts"], Value::Null);

    let unknown = "/_synapse/admin/v1/federation/destinations/nowhere.example";
    assert_error(&server.get(unknown, root.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response = server.post(&format!("{unknown}/reset_connection"), root.token(), json!({})).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn media_of_a_user_is_listed_counted_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let server = TestServer::start_with(|config| config.data_dir = data).await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let first = uploaded(&server, &alice.access_token, b"first upload".to_vec(), "text/plain").await;
    let second = uploaded(&server, &alice.access_token, b"second, longer upload".to_vec(), "text/plain").await;

    let path = format!("/_synapse/admin/v1/users/{}/media", encode(&alice.user_id));
    let (status, body) = server.get(&path, root.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 2);
    assert_eq!(format!("hearth.test/{}", body["media"][0]["media_id"].as_str().unwrap()), second, "newest first");
    assert_eq!(body["media"][0]["media_length"], 21);
    assert_eq!(body["media"][0]["media_type"], "text/plain");

    let (_, stats) = server.get("/_synapse/admin/v1/statistics/users/media", root.token()).await;
    assert_eq!(stats["total"], 1, "{stats}");
    assert_eq!(
        stats["users"][0],
        json!({"user_id": alice.user_id, "displayname": "alice", "media_count": 2, "media_length": 33})
    );

    let (status, deleted) = server.delete(&format!("{path}?limit=1"), root.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["total"], 1);
    let (status, _, _) = fetch(&server, &format!("/_matrix/client/v1/media/download/{second}"), alice.token()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = fetch(&server, &format!("/_matrix/client/v1/media/download/{first}"), alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.get(&path, root.token()).await.1["total"], 1);

    let response = server.get("/_synapse/admin/v1/users/%40nobody%3Ahearth.test/media", root.token()).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn media_is_quarantined_and_deleted_by_id_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let server = TestServer::start_with(|config| config.data_dir = data).await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let small = uploaded(&server, &alice.access_token, b"small".to_vec(), "text/plain").await;
    let large = uploaded(&server, &alice.access_token, vec![b'x'; 2000], "text/plain").await;
    let download = |media: &str| format!("/_matrix/client/v1/media/download/{media}");

    // Quarantined: served to nobody, until released.
    let (status, body) =
        server.post(&format!("/_synapse/admin/v1/media/quarantine/{small}"), root.token(), json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(fetch(&server, &download(&small), alice.token()).await.0, StatusCode::NOT_FOUND);
    let (status, _) =
        server.post(&format!("/_synapse/admin/v1/media/unquarantine/{small}"), root.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetch(&server, &download(&small), alice.token()).await.0, StatusCode::OK);

    // By age and size: only what is larger than asked goes.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 1000;
    let (status, body) = server
        .post(&format!("/_synapse/admin/v1/media/delete?before_ts={now}&size_gt=100"), root.token(), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 1);
    assert_eq!(format!("hearth.test/{}", body["deleted_media"][0].as_str().unwrap()), large);
    assert_eq!(fetch(&server, &download(&large), alice.token()).await.0, StatusCode::NOT_FOUND);
    assert_eq!(fetch(&server, &download(&small), alice.token()).await.0, StatusCode::OK);
    let response = server.post("/_synapse/admin/v1/media/delete", root.token(), json!({})).await;
    assert_error(&response, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");

    // By id.
    let (status, body) = server.delete(&format!("/_synapse/admin/v1/media/{small}"), root.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 1);
    assert_eq!(fetch(&server, &download(&small), alice.token()).await.0, StatusCode::NOT_FOUND);
    let again = server.delete(&format!("/_synapse/admin/v1/media/{small}"), root.token(), None).await;
    assert_error(&again, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let remote = server.delete("/_synapse/admin/v1/media/elsewhere.example/abc", root.token(), None).await;
    assert_error(&remote, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let unknown =
        server.post("/_synapse/admin/v1/media/quarantine/hearth.test/nosuchmedia", root.token(), json!({})).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn media_is_quarantined_by_room_and_by_user_except_what_is_protected() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let server = TestServer::start_with(|config| config.data_dir = data).await;
    let root = server.register_admin("root", PASSWORD).await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let image = uploaded(&server, &alice.access_token, b"an image".to_vec(), "image/png").await;
    let kept = uploaded(&server, &alice.access_token, b"a protected file".to_vec(), "text/plain").await;
    let elsewhere = uploaded(&server, &alice.access_token, b"not in the room".to_vec(), "text/plain").await;
    let bobs = uploaded(&server, &bob.access_token, b"bob's own".to_vec(), "text/plain").await;
    let download = |media: &str| format!("/_matrix/client/v1/media/download/{media}");
    let served = |media: String| {
        let (server, token) = (&server, bob.access_token.clone());
        async move { fetch(server, &download(&media), Some(&token)).await.0 == StatusCode::OK }
    };
    let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
    for (txn, media) in [("i", &image), ("k", &kept)] {
        let content = json!({"msgtype": "m.image", "body": "pic", "url": format!("mxc://{media}")});
        server.send_message(&alice, &room, txn, content).await;
    }
    let media_id = |media: &str| media.rsplit('/').next().unwrap().to_owned();
    let (status, body) =
        server.post(&format!("/_synapse/admin/v1/media/protect/{}", media_id(&kept)), root.token(), json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));

    // The room's media as synapse-admin lists it: what its events name, local or remote.
    let remote = json!({"msgtype": "m.image", "body": "far", "url": "mxc://elsewhere.example/farpic"});
    server.send_message(&alice, &room, "r", remote).await;
    let (status, listed) = server.get(&format!("/_synapse/admin/v1/room/{}/media", encode(&room)), root.token()).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let mut local = vec![format!("mxc://{image}"), format!("mxc://{kept}")];
    local.sort();
    assert_eq!(listed, json!({"local": local, "remote": ["mxc://elsewhere.example/farpic"], "total": 3}));
    let response = server.get("/_synapse/admin/v1/room/%21nosuch%3Ahearth.test/media", root.token()).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // The room's media: what its events name, but the protected file.
    let path = format!("/_synapse/admin/v1/room/{}/media/quarantine", encode(&room));
    let (status, body) = server.post(&path, root.token(), json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"num_quarantined": 1})));
    assert!(!served(image.clone()).await);
    assert!(served(kept.clone()).await && served(elsewhere.clone()).await);
    // Quarantining protected media by id leaves it served.
    let (status, _) =
        server.post(&format!("/_synapse/admin/v1/media/quarantine/{kept}"), root.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(served(kept.clone()).await);

    // A user's media: all they uploaded, but what is protected; others' stays.
    let path = format!("/_synapse/admin/v1/user/{}/media/quarantine", encode(&alice.user_id));
    let (status, body) = server.post(&path, root.token(), json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"num_quarantined": 1})));
    assert!(!served(elsewhere.clone()).await);
    assert!(served(kept.clone()).await && served(bobs.clone()).await);
    let (_, listed) =
        server.get(&format!("/_synapse/admin/v1/users/{}/media", encode(&alice.user_id)), root.token()).await;
    let protected: Vec<bool> =
        listed["media"].as_array().unwrap().iter().map(|m| m["safe_from_quarantine"].as_bool().unwrap()).collect();
    assert_eq!(protected.iter().filter(|p| **p).count(), 1, "{listed}");

    // Unprotected, it can be quarantined again.
    server.post(&format!("/_synapse/admin/v1/media/unprotect/{}", media_id(&kept)), root.token(), json!({})).await;
    let (_, body) = server.post(&path, root.token(), json!({})).await;
    assert_eq!(body, json!({"num_quarantined": 1}));
    assert!(!served(kept.clone()).await);

    let response = server.post("/_synapse/admin/v1/media/protect/nosuchmedia", root.token(), json!({})).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let response =
        server.post("/_synapse/admin/v1/room/%21nosuch%3Ahearth.test/media/quarantine", root.token(), json!({})).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}
