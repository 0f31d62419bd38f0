//! One user must not be able to break another's reads with JSON Hearth cannot serve back
//! (#15 item 1). A to-device message holding `1.7976931348623157e308` used to be stored and
//! then fail every `/sync` of its recipient with a 500; the same value in a one-time key broke
//! `/keys/claim`, in a profile field `GET /profile` (and its owner's joins), in account data or
//! a key backup its owner's reads. Now the JSON edge refuses what canonical JSON cannot hold,
//! and what was stored before is still served, or at worst left out alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "hostile-json-password";
const BIG: &str = "1.7976931348623157e308";
/// Numbers canonical JSON cannot hold: beyond the double range, beyond 2^53 - 1 either way,
/// integers too long for 64 bits.
const OUT_OF_RANGE: [&str; 6] =
    [BIG, "9007199254740992", "-9007199254740992", "123456789012345678901234567890", "1e400", "-1.5e300"];

struct Scene {
    server: TestServer,
    /// Sends what the victim must not be hurt by.
    alice: TestUser,
    /// The victim.
    bob: TestUser,
    room: String,
    event: String,
}

impl Scene {
    async fn new() -> Scene {
        let server = TestServer::start().await;
        let alice = server.register("alice", PASSWORD).await;
        let bob = server.register("bob", PASSWORD).await;
        let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
        server.join(&bob, &room).await;
        let event = server.send_text(&bob, &room, "hello", "hello").await;
        // A key of alice's device for bob to claim.
        let upload = server
            .post(
                "/_matrix/client/v3/keys/upload",
                alice.token(),
                json!({"one_time_keys": {"curve25519:AAAAAQ": "alice-key"}}),
            )
            .await;
        assert_eq!(upload.0, StatusCode::OK, "{}", upload.1);
        Scene { server, alice, bob, room, event }
    }

    /// Sends `body` as it is written (numbers beyond the double range cannot be built as a
    /// `serde_json::Value`).
    async fn raw(&self, user: &TestUser, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        self.server.request_raw(method, path, user.token(), body.as_bytes().to_vec()).await
    }

    /// Every write the attacker can put a number into, with `@NUMBER@` standing for the number.
    fn writes(&self) -> Vec<(&'static str, Method, String, String)> {
        let (alice, bob, room) = (&self.alice.user_id, &self.bob.user_id, &self.room);
        let event = encode(&self.event);
        vec![
            (
                "to-device",
                Method::PUT,
                "/_matrix/client/v3/sendToDevice/m.test/t-@NUMBER@".to_owned(),
                format!(r#"{{"messages": {{"{bob}": {{"*": {{"x": @NUMBER@}}}}}}}}"#),
            ),
            (
                "one-time key",
                Method::POST,
                "/_matrix/client/v3/keys/upload".to_owned(),
                r#"{"one_time_keys": {"signed_curve25519:AAAAAg": {"key": "k", "x": @NUMBER@, "signatures": {}}}}"#.to_owned(),
            ),
            (
                "fallback key",
                Method::POST,
                "/_matrix/client/v3/keys/upload".to_owned(),
                r#"{"fallback_keys": {"signed_curve25519:AAAAAw": {"key": "k", "fallback": true, "x": @NUMBER@}}}"#.to_owned(),
            ),
            (
                "profile field",
                Method::PUT,
                format!("/_matrix/client/v3/profile/{alice}/org.example.x"),
                r#"{"org.example.x": {"deep": [@NUMBER@]}}"#.to_owned(),
            ),
            (
                "global account data",
                Method::PUT,
                format!("/_matrix/client/v3/user/{alice}/account_data/org.example.x"),
                r#"{"x": @NUMBER@}"#.to_owned(),
            ),
            (
                "room account data",
                Method::PUT,
                format!("/_matrix/client/v3/user/{alice}/rooms/{room}/account_data/org.example.x"),
                r#"{"x": @NUMBER@}"#.to_owned(),
            ),
            (
                "backup version",
                Method::POST,
                "/_matrix/client/v3/room_keys/version".to_owned(),
                r#"{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "p", "x": @NUMBER@}}"#
                    .to_owned(),
            ),
            (
                "filter",
                Method::POST,
                format!("/_matrix/client/v3/user/{alice}/filter"),
                r#"{"room": {"timeline": {"limit": @NUMBER@}}, "org.example.x": @NUMBER@}"#.to_owned(),
            ),
            (
                "message",
                Method::PUT,
                format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t-@NUMBER@"),
                r#"{"msgtype": "m.text", "body": "hi", "x": @NUMBER@}"#.to_owned(),
            ),
            (
                "state",
                Method::PUT,
                format!("/_matrix/client/v3/rooms/{room}/state/org.example.x/k"),
                r#"{"x": @NUMBER@}"#.to_owned(),
            ),
            (
                "room creation",
                Method::POST,
                "/_matrix/client/v3/createRoom".to_owned(),
                r#"{"creation_content": {"x": @NUMBER@}, "initial_state": [{"type": "org.example.x", "content": {"x": @NUMBER@}}]}"#
                    .to_owned(),
            ),
            (
                "receipt",
                Method::POST,
                format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}"),
                r#"{"x": @NUMBER@}"#.to_owned(),
            ),
            (
                "presence",
                Method::PUT,
                format!("/_matrix/client/v3/presence/{alice}/status"),
                r#"{"presence": "online", "status_msg": "here", "x": @NUMBER@}"#.to_owned(),
            ),
            (
                "typing",
                Method::PUT,
                format!("/_matrix/client/v3/rooms/{room}/typing/{alice}"),
                r#"{"typing": true, "timeout": @NUMBER@}"#.to_owned(),
            ),
        ]
    }

    /// What the victim (and the attacker, on their own data) must still be able to do.
    async fn reads_work(&self) {
        let server = &self.server;
        let (status, sync) = server.get("/_matrix/client/v3/sync", self.bob.token()).await;
        assert_eq!(status, StatusCode::OK, "bob's sync: {sync}");
        let profile = format!("/_matrix/client/v3/profile/{}", self.alice.user_id);
        let (status, body) = server.get(&profile, self.bob.token()).await;
        assert_eq!(status, StatusCode::OK, "alice's profile: {body}");
        let (status, body) = server
            .post(
                "/_matrix/client/v3/keys/query",
                self.bob.token(),
                json!({"device_keys": {self.alice.user_id.clone(): []}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "keys/query: {body}");
        let (status, sync) = server.get("/_matrix/client/v3/sync", self.alice.token()).await;
        assert_eq!(status, StatusCode::OK, "alice's own sync: {sync}");
        let room = server.create_room(&self.alice, json!({})).await;
        assert!(room.starts_with('!'), "alice can still create rooms");
    }

    /// Runs `sql` with `binds`: stores values as they are written, the way an older Hearth
    /// stored what it let in.
    async fn store(&self, sql: &str, binds: &[&str]) {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
        for bind in binds {
            query = query.bind(*bind);
        }
        query.execute(&self.server.state.pool).await.unwrap();
    }

    /// A to-device message from alice to bob's device.
    async fn store_to_device(&self, content: &str) {
        let sql = "INSERT INTO to_device_messages (user_id, device_id, stream_position, sender, event_type, content)
                   VALUES ($1, $2, 1, $3, 'm.test', $4::jsonb)";
        self.store(sql, &[&self.bob.user_id, &self.bob.device_id, &self.alice.user_id, content]).await;
    }

    /// A field `org.example.x` of alice's profile.
    async fn store_profile_field(&self, content: &str) {
        let sql = "UPDATE users SET profile = profile || jsonb_build_object('org.example.x', $2::jsonb)
                   WHERE user_id = $1";
        self.store(sql, &[&self.alice.user_id, content]).await;
    }

    /// Global account data of `user`.
    async fn store_account_data(&self, user: &TestUser, data_type: &str, content: &str) {
        let sql = "INSERT INTO account_data (user_id, data_type, content) VALUES ($1, $2, $3::jsonb)";
        self.store(sql, &[&user.user_id, data_type, content]).await;
    }

    async fn claim_alice_key(&self) -> (StatusCode, Value) {
        self.server
            .post(
                "/_matrix/client/v3/keys/claim",
                self.bob.token(),
                json!({"one_time_keys": {self.alice.user_id.clone(): {self.alice.device_id.clone(): "curve25519"}}}),
            )
            .await
    }
}

#[tokio::test]
async fn numbers_canonical_json_cannot_hold_are_refused_everywhere_and_no_one_is_hurt() {
    let scene = Scene::new().await;
    let (to_device, accounts) =
        (count_to_device(&scene).await, scene.server.count("SELECT count(*) FROM account_data").await);
    for number in OUT_OF_RANGE {
        for (what, method, path, body) in scene.writes() {
            let path = path.replace("@NUMBER@", &number.replace(['.', '+'], "_"));
            let answer = scene.raw(&scene.alice, method.clone(), &path, &body.replace("@NUMBER@", number)).await;
            assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{what} with {number}: {}", answer.1);
            assert_error(&answer, StatusCode::BAD_REQUEST, "M_BAD_JSON");
        }
    }
    assert_eq!(count_to_device(&scene).await, to_device, "no to-device message was queued");
    assert_eq!(scene.server.count("SELECT count(*) FROM account_data").await, accounts, "no account data stored");
    assert_eq!(scene.server.count("SELECT count(*) FROM key_backup_versions").await, 0);
    scene.reads_work().await;
    let (status, claimed) = scene.claim_alice_key().await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(
        claimed["one_time_keys"][&scene.alice.user_id][&scene.alice.device_id]["curve25519:AAAAAQ"],
        "alice-key"
    );

    // The largest numbers that are allowed, and fractions where the spec allows any JSON, pass
    // and come back as they were sent.
    let content = r#"{"max": 9007199254740991, "min": -9007199254740991, "half": 0.5, "tiny": 1e-300}"#;
    let body = format!(r#"{{"messages": {{"{}": {{"*": {content}}}}}}}"#, scene.bob.user_id);
    let sent = scene.raw(&scene.alice, Method::PUT, "/_matrix/client/v3/sendToDevice/m.test/ok", &body).await;
    assert_eq!(sent.0, StatusCode::OK, "{}", sent.1);
    let (status, sync) = scene.server.get("/_matrix/client/v3/sync", scene.bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    let events = sync["to_device"]["events"].as_array().expect("to-device events");
    let expected: Value = serde_json::from_str(content).expect("JSON");
    assert!(events.iter().any(|event| event["content"] == expected), "{events:?}");
}

async fn count_to_device(scene: &Scene) -> i64 {
    scene.server.count("SELECT count(*) FROM to_device_messages").await
}

#[tokio::test]
async fn fractions_are_refused_where_the_spec_requires_canonical_json() {
    let scene = Scene::new().await;
    let (alice, room) = (&scene.alice, &scene.room);
    for (what, method, path, body) in [
        (
            "one-time key",
            Method::POST,
            "/_matrix/client/v3/keys/upload".to_owned(),
            json!({"one_time_keys": {"signed_curve25519:AAAAAg": {"key": "k", "x": 1.5, "signatures": {}}}}),
        ),
        (
            "backup auth_data",
            Method::POST,
            "/_matrix/client/v3/room_keys/version".to_owned(),
            json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "p", "x": 0.5}}),
        ),
        (
            "message",
            Method::PUT,
            format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/frac"),
            json!({"msgtype": "m.text", "body": "hi", "x": 1.5}),
        ),
        (
            "room creation",
            Method::POST,
            "/_matrix/client/v3/createRoom".to_owned(),
            json!({"power_level_content_override": {"users_default": 0.5}}),
        ),
    ] {
        let answer = scene.server.request(method, &path, alice.token(), Some(body)).await;
        assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{what}: {}", answer.1);
        assert_error(&answer, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }
    // Account data is the client's own JSON: fractions are kept (room tags' `order` is one).
    let path = format!("/_matrix/client/v3/user/{}/account_data/org.example.x", alice.user_id);
    let content = json!({"order": 0.25, "scale": -2.5e-3});
    assert_eq!(scene.server.put(&path, alice.token(), content.clone()).await.0, StatusCode::OK);
    assert_eq!(scene.server.get(&path, alice.token()).await, (StatusCode::OK, content));
}

/// Values stored before the edge refused them, as an older Hearth let them in: jsonb prints
/// such a number as 309 digits, which serde_json's fast parser refused, so each read of the
/// value answered 500. Now they are read back exactly and served.
#[tokio::test]
async fn values_stored_before_the_edge_refused_them_are_served_again() {
    let scene = Scene::new().await;
    let Scene { server, alice, bob, .. } = &scene;
    let pool = &server.state.pool;
    let big = format!(r#"{{"x": {BIG}}}"#);
    scene.store_to_device(&big).await;
    scene.store_profile_field(&big).await;
    scene.store_account_data(alice, "org.example.x", &big).await;
    let key = "UPDATE e2e_one_time_keys SET key_json = jsonb_build_object('key', 'alice-key', 'x', $2::jsonb -> 'x')
               WHERE user_id = $1";
    scene.store(key, &[&alice.user_id, &big]).await;
    let version = "INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data)
                   VALUES ($1, 1, 'm.megolm_backup.v1.curve25519-aes-sha2', $2::jsonb)";
    scene.store(version, &[&alice.user_id, &big]).await;
    let stored: String = sqlx::query_scalar("SELECT content::text FROM account_data WHERE data_type = 'org.example.x'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(stored.len() > 300, "jsonb prints the number in full: {stored}");

    scene.reads_work().await;
    let (_, sync) = server.get("/_matrix/client/v3/sync", bob.token()).await;
    let events = sync["to_device"]["events"].as_array().expect("to-device events");
    assert_eq!(events[0]["content"]["x"].as_f64(), Some(f64::MAX), "{events:?}");
    let (status, claimed) = scene.claim_alice_key().await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let key = &claimed["one_time_keys"][&alice.user_id][&alice.device_id]["curve25519:AAAAAQ"];
    assert_eq!(key["x"].as_f64(), Some(f64::MAX), "{claimed}");
    let (status, profile) = server.get(&format!("/_matrix/client/v3/profile/{}", alice.user_id), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["org.example.x"]["x"].as_f64(), Some(f64::MAX));
    assert_eq!(profile["displayname"], "alice");
    let path = format!("/_matrix/client/v3/user/{}/account_data/org.example.x", alice.user_id);
    let (status, content) = server.get(&path, alice.token()).await;
    assert_eq!((status, content["x"].as_f64()), (StatusCode::OK, Some(f64::MAX)), "{content}");
    let (status, version) = server.get("/_matrix/client/v3/room_keys/version", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{version}");
    assert_eq!(version["auth_data"]["x"].as_f64(), Some(f64::MAX));
    let deleted = server.delete("/_matrix/client/v3/room_keys/version/1", alice.token(), None).await;
    assert_eq!(deleted.0, StatusCode::OK, "the version can be deleted: {}", deleted.1);
}

/// A stored value that cannot be read at all (here nested deeper than any JSON parser of
/// Hearth's reads) is left out of the answer it belongs to; everything else is served.
#[tokio::test]
async fn a_stored_value_that_cannot_be_read_costs_only_itself() {
    let scene = Scene::new().await;
    let Scene { server, alice, bob, .. } = &scene;
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    scene.store_to_device(&format!(r#"{{"bad": {deep}}}"#)).await;
    scene.store_to_device(r#"{"good": true}"#).await;
    scene.store_profile_field(&deep).await;
    scene.store_account_data(bob, "org.example.bad", &deep).await;
    scene.store_account_data(bob, "org.example.good", r#"{"good": true}"#).await;

    scene.reads_work().await;
    let (_, sync) = server.get("/_matrix/client/v3/sync", bob.token()).await;
    let to_device = sync["to_device"]["events"].as_array().expect("to-device events");
    assert_eq!(to_device.len(), 1, "only the readable message: {to_device:?}");
    assert_eq!(to_device[0]["content"], json!({"good": true}));
    let account_data: Vec<&str> = sync["account_data"]["events"]
        .as_array()
        .expect("account data")
        .iter()
        .filter_map(|event| event["type"].as_str())
        .collect();
    assert!(account_data.contains(&"org.example.good"), "{account_data:?}");
    assert!(!account_data.contains(&"org.example.bad"), "{account_data:?}");
    let (status, profile) = server.get(&format!("/_matrix/client/v3/profile/{}", alice.user_id), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["displayname"], "alice", "the readable fields are served: {profile}");
    assert!(profile.get("org.example.x").is_none(), "{profile}");
    // Alice can still join rooms (her member event carries her profile) and heal her profile.
    let room = server.create_room(bob, json!({"preset": "public_chat"})).await;
    server.join(alice, &room).await;
}

#[tokio::test]
async fn nesting_and_nul_are_refused_at_the_edge() {
    let scene = Scene::new().await;
    let path = format!("/_matrix/client/v3/user/{}/account_data/org.example.x", scene.alice.user_id);
    let nested = |levels: usize| format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels));
    // 64 levels in all, the body's own object included, are accepted and served back.
    let at_limit = nested(64);
    let answer = scene.raw(&scene.alice, Method::PUT, &path, &at_limit).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    let (status, content) = scene.server.get(&path, scene.alice.token()).await;
    assert_eq!((status, content), (StatusCode::OK, serde_json::from_str::<Value>(&at_limit).unwrap()));
    for body in [nested(65), nested(5000)] {
        let answer = scene.raw(&scene.alice, Method::PUT, &path, &body).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }
    let to_device = format!(r#"{{"messages": {{"{}": {{"*": {{"x": "a\u0000b"}}}}}}}}"#, scene.bob.user_id);
    let answer = scene.raw(&scene.alice, Method::PUT, "/_matrix/client/v3/sendToDevice/m.test/nul", &to_device).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    scene.reads_work().await;
}
