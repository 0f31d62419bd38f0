//! Pushers: `GET /pushers` and `POST /pushers/set` as clients use them, and the errors the
//! spec (and Synapse) give for bad ones. Delivery to push gateways is in `push_delivery.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const SET: &str = "/_matrix/client/v3/pushers/set";
const GET: &str = "/_matrix/client/v3/pushers";
const PASSWORD: &str = "pusher password";
const GATEWAY: &str = "https://push.example.org/_matrix/push/v1/notify";

fn http_pusher(app_id: &str, pushkey: &str) -> Value {
    json!({
        "kind": "http",
        "app_id": app_id,
        "pushkey": pushkey,
        "app_display_name": "Hearth Mobile",
        "device_display_name": "Phone",
        "profile_tag": "xyz",
        "lang": "en-GB",
        "data": {"url": GATEWAY, "format": "event_id_only", "brand": "hearth"},
    })
}

async fn pushers(server: &TestServer, user: &TestUser) -> Vec<Value> {
    let (status, body) = server.get(GET, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["pushers"].as_array().expect("pushers is an array").clone()
}

async fn set(server: &TestServer, user: &TestUser, body: Value) {
    let (status, response) = server.post(SET, user.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response, json!({}));
}

#[tokio::test]
async fn a_pusher_is_created_listed_updated_and_deleted() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    assert!(pushers(&server, &alice).await.is_empty());

    set(&server, &alice, http_pusher("org.hearth.ios", "token-1")).await;
    let listed = pushers(&server, &alice).await;
    assert_eq!(
        listed,
        vec![json!({
            "kind": "http", "app_id": "org.hearth.ios", "pushkey": "token-1",
            "app_display_name": "Hearth Mobile", "device_display_name": "Phone", "profile_tag": "xyz",
            "lang": "en-GB", "data": {"url": GATEWAY, "format": "event_id_only", "brand": "hearth"},
        })]
    );

    // The same app id and pushkey again: an update, not a second pusher.
    let mut changed = http_pusher("org.hearth.ios", "token-1");
    changed["device_display_name"] = json!("Renamed phone");
    changed["data"] = json!({"url": GATEWAY});
    set(&server, &alice, changed).await;
    let listed = pushers(&server, &alice).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["device_display_name"], "Renamed phone");
    assert_eq!(listed[0]["data"], json!({"url": GATEWAY}));

    // Another pushkey is another pusher; the r0 path (older clients) works the same.
    let (status, body) =
        server.post("/_matrix/client/r0/pushers/set", alice.token(), http_pusher("org.hearth.ios", "token-2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.get("/_matrix/client/r0/pushers", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pushers"].as_array().map(Vec::len), Some(2), "{body}");

    // `kind: null` deletes (only the named one); deleting what does not exist is fine too.
    set(&server, &alice, json!({"kind": null, "app_id": "org.hearth.ios", "pushkey": "token-1"})).await;
    let listed = pushers(&server, &alice).await;
    assert_eq!(listed.iter().map(|p| p["pushkey"].clone()).collect::<Vec<_>>(), vec![json!("token-2")]);
    set(&server, &alice, json!({"kind": null, "app_id": "org.hearth.ios", "pushkey": "no-such-key"})).await;
    assert_eq!(pushers(&server, &alice).await.len(), 1);
}

#[tokio::test]
async fn pushers_are_per_user() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    set(&server, &alice, http_pusher("org.hearth.ios", "alice-key")).await;
    assert!(pushers(&server, &bob).await.is_empty());
    // Bob cannot delete Alice's pusher by naming it.
    set(&server, &bob, json!({"kind": null, "app_id": "org.hearth.ios", "pushkey": "alice-key"})).await;
    assert_eq!(pushers(&server, &alice).await.len(), 1);
}

#[tokio::test]
async fn a_pushkey_moves_to_its_new_user_unless_appended() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let carol = server.register("carol", PASSWORD).await;
    set(&server, &alice, http_pusher("org.hearth.ios", "shared-phone")).await;

    // `append: true`: Bob adds his pusher for the same pushkey beside Alice's.
    let mut appended = http_pusher("org.hearth.ios", "shared-phone");
    appended["append"] = json!(true);
    set(&server, &bob, appended).await;
    assert_eq!(pushers(&server, &alice).await.len(), 1);
    assert_eq!(pushers(&server, &bob).await.len(), 1);

    // Without `append`, the phone now belongs to Carol alone.
    set(&server, &carol, http_pusher("org.hearth.ios", "shared-phone")).await;
    assert!(pushers(&server, &alice).await.is_empty());
    assert!(pushers(&server, &bob).await.is_empty());
    assert_eq!(pushers(&server, &carol).await.len(), 1);
}

#[tokio::test]
async fn logging_out_deleting_the_device_or_deactivating_removes_its_pushers() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let phone = server.login("alice", PASSWORD).await;
    let tablet = server.login("alice", PASSWORD).await;
    set(&server, &alice, http_pusher("org.hearth.desktop", "desktop")).await;
    set(&server, &phone, http_pusher("org.hearth.ios", "phone")).await;
    set(&server, &tablet, http_pusher("org.hearth.android", "tablet")).await;
    assert_eq!(pushers(&server, &alice).await.len(), 3, "every device sees all of the user's pushers");

    let (status, body) = server.post("/_matrix/client/v3/logout", phone.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let keys = |listed: Vec<Value>| {
        listed.iter().map(|p| p["pushkey"].as_str().unwrap_or_default().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(keys(pushers(&server, &alice).await), vec!["desktop", "tablet"]);

    let path = format!("/_matrix/client/v3/devices/{}", tablet.device_id);
    let (status, body) = server.delete(&path, alice.token(), Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let session = body["session"].as_str().expect("a UIA session").to_owned();
    let (status, body) =
        server.delete(&path, alice.token(), Some(json!({"auth": alice.password_auth(&session)}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys(pushers(&server, &alice).await), vec!["desktop"]);

    // Deactivating the account ends every session, and every pusher with them.
    let deactivate = "/_matrix/client/v3/account/deactivate";
    let (status, body) = server.post(deactivate, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let session = body["session"].as_str().expect("a UIA session").to_owned();
    let (status, body) = server.post(deactivate, alice.token(), json!({"auth": alice.password_auth(&session)})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.count("SELECT COUNT(*) FROM pushers").await, 0);
}

#[tokio::test]
async fn bad_pushers_are_refused_with_the_spec_errors_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    let refused = |mut body: Value, edit: &dyn Fn(&mut Value)| {
        edit(&mut body);
        body
    };
    let base = http_pusher("org.hearth.ios", "key");

    // Missing fields are named, as in the spec's example.
    let (status, body) = server.post(SET, alice.token(), json!({"kind": "http", "app_id": "a", "pushkey": "k"})).await;
    assert_error(&(status, body.clone()), StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    let message = body["error"].as_str().unwrap_or_default();
    for field in ["app_display_name", "device_display_name", "lang", "data"] {
        assert!(message.contains(field), "{message}");
    }
    for field in ["kind", "app_id", "pushkey", "lang", "data"] {
        let body = refused(base.clone(), &|body| {
            body.as_object_mut().map(|object| object.remove(field));
        });
        assert_error(&server.post(SET, alice.token(), body).await, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    }
    let deletion_without_key = json!({"kind": null, "app_id": "org.hearth.ios"});
    assert_error(
        &server.post(SET, alice.token(), deletion_without_key).await,
        StatusCode::BAD_REQUEST,
        "M_MISSING_PARAM",
    );

    // An http pusher needs a gateway URL, with the notify path.
    let cases: Vec<(Value, &str)> = vec![
        (refused(base.clone(), &|body| body["data"] = json!({"format": "event_id_only"})), "M_MISSING_PARAM"),
        (refused(base.clone(), &|body| body["data"] = json!({"url": null})), "M_MISSING_PARAM"),
        (
            refused(base.clone(), &|body| body["data"]["url"] = json!("https://push.example.org/notify")),
            "M_INVALID_PARAM",
        ),
        (
            refused(base.clone(), &|body| {
                body["data"]["url"] = json!("https://push.example.org/_matrix/push/v1/notify/")
            }),
            "M_INVALID_PARAM",
        ),
        (refused(base.clone(), &|body| body["data"]["url"] = json!("not a url")), "M_INVALID_PARAM"),
        (
            refused(base.clone(), &|body| body["data"]["url"] = json!("ftp://push.example.org/_matrix/push/v1/notify")),
            "M_INVALID_PARAM",
        ),
        // Spec limits: app_id 64 characters, pushkey 512 bytes.
        (refused(base.clone(), &|body| body["app_id"] = json!("a".repeat(65))), "M_INVALID_PARAM"),
        (refused(base.clone(), &|body| body["pushkey"] = json!("k".repeat(513))), "M_INVALID_PARAM"),
        (refused(base.clone(), &|body| body["kind"] = json!("carrier-pigeon")), "M_INVALID_PARAM"),
        // Hearth has no email addresses bound to accounts (as Synapse answers for an unbound one).
        (refused(base.clone(), &|body| body["kind"] = json!("email")), "M_THREEPID_NOT_FOUND"),
        // Wrong types are the parser's M_BAD_JSON.
        (
            refused(base.clone(), &|body| body["data"] = json!("https://push.example.org/_matrix/push/v1/notify")),
            "M_BAD_JSON",
        ),
        (refused(base.clone(), &|body| body["pushkey"] = json!(42)), "M_BAD_JSON"),
    ];
    for (body, errcode) in cases {
        let response = server.post(SET, alice.token(), body.clone()).await;
        assert_eq!(response.1["errcode"], errcode, "{body} -> {}", response.1);
        assert_eq!(response.0, StatusCode::BAD_REQUEST, "{body}");
    }
    assert_error(
        &server.request_raw(reqwest::Method::POST, SET, alice.token(), b"{not json".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "M_NOT_JSON",
    );

    // Authentication comes first.
    assert_error(&server.post(SET, None, base.clone()).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    assert_error(&server.post(SET, None, json!({})).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    assert_error(&server.get(GET, None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");

    assert!(pushers(&server, &alice).await.is_empty());
    assert_eq!(server.count("SELECT COUNT(*) FROM pushers").await, 0);
}

#[tokio::test]
async fn the_limits_are_inclusive() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PASSWORD).await;
    // 64 characters (not bytes) of app id, 512 bytes of pushkey.
    set(&server, &alice, http_pusher(&"é".repeat(64), &"k".repeat(512))).await;
    assert_eq!(pushers(&server, &alice).await.len(), 1);
}
