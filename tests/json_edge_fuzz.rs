//! A property test of the JSON edge over every route that takes a body (#15, "Tests and
//! proof"): an attacker sends each route bodies that mix what real clients send with what
//! canonical JSON and PostgreSQL cannot hold — numbers beyond ±(2^53 − 1) and beyond the double
//! range, fractions, deep nesting, U+0000 in strings and keys, huge strings, identifiers past
//! the index limit. The properties: no answer is a 5xx, and the victim, who shares a room with
//! the attacker, receives their to-device messages, reads their profile and claims their keys,
//! can still sync and read all of it after every route.
//!
//! The bodies come from a seeded generator: `HEARTH_FUZZ_SEED` picks another sequence and
//! `HEARTH_FUZZ_CASES` runs more bodies per route (by hand; CI runs the default).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::rng::Rng;
use common::*;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "json-edge-fuzz-password";
/// Small, so that "larger than the limit" is cheap to reach.
const LIMIT: usize = 64 * 1024;

fn hostile_leaf(rng: &mut Rng) -> String {
    const NUMBERS: &[&str] = &[
        "1.7976931348623157e308",
        "-1.7976931348623157e308",
        "9007199254740992",
        "-9007199254740992",
        "123456789012345678901234567890",
        "1e400",
        "-1e400",
        "1e-400",
        "1.5",
        "-0",
        "0.1",
        "9007199254740991",
        "-9007199254740991",
    ];
    match rng.below(9) {
        0 | 1 => (*rng.pick(NUMBERS)).to_owned(),
        2 => r#""a\u0000b""#.to_owned(),
        3 => r#""\\u0000 is text""#.to_owned(),
        4 => {
            let levels = *rng.pick(&[63, 65, 200, 3000]);
            format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
        }
        5 => format!(r#"{{"k\u0000": 1, "{}": 2}}"#, "k".repeat(3000)),
        6 => format!("\"{}\"", incompressible(*rng.pick(&[256, 3000, LIMIT + 1]))),
        7 => (*rng.pick(&["true", "null", "[]", "{}", "\"\"", "\"\\ud83d\\ude00\""])).to_owned(),
        _ => format!("\"{}\"", incompressible(rng.below(40))),
    }
}

/// Keys Matrix bodies use, so that random objects reach the fields endpoints read.
const KEYS: &[&str] = &[
    "messages",
    "content",
    "one_time_keys",
    "fallback_keys",
    "device_keys",
    "displayname",
    "avatar_url",
    "algorithm",
    "auth_data",
    "session_data",
    "rooms",
    "sessions",
    "body",
    "msgtype",
    "type",
    "state_key",
    "event_fields",
    "room",
    "timeline",
    "types",
    "limit",
    "presence",
    "status_msg",
    "typing",
    "timeout",
    "devices",
    "auth",
    "session",
    "initial_state",
    "creation_content",
    "power_level_content_override",
    "name",
    "topic",
    "user_id",
    "reason",
    "thread_id",
    "m.relates_to",
    "rel_type",
    "event_id",
    "key",
    "order",
    "display_name",
    "device_id",
    "initial_device_display_name",
    "username",
    "password",
    "identifier",
    "nonce",
    "mac",
    "room_alias_name",
    "invite",
    "visibility",
    "filter",
    "org.example.x",
];

/// A random JSON text of at most `depth` more levels, mostly of Matrix keys, with hostile
/// leaves among ordinary ones.
fn random_value(rng: &mut Rng, depth: usize) -> String {
    match rng.below(10) {
        0..=2 => hostile_leaf(rng),
        3..=5 if depth > 0 => {
            let fields: Vec<String> = (0..1 + rng.below(4))
                .map(|_| format!("\"{}\": {}", rng.pick(KEYS), random_value(rng, depth - 1)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        6 if depth > 0 => {
            let items: Vec<String> = (0..rng.below(4)).map(|_| random_value(rng, depth - 1)).collect();
            format!("[{}]", items.join(", "))
        }
        _ => (*rng.pick(&["1", "0", "-5", "\"m.text\"", "\"hello\"", "false", "{}"])).to_owned(),
    }
}

/// `template` with one of its values (chosen at random, at any depth) replaced by `leaf`.
fn mutate(rng: &mut Rng, template: &Value, leaf: &str) -> String {
    fn holes(value: &Value, path: Vec<String>, found: &mut Vec<Vec<String>>) {
        found.push(path.clone());
        match value {
            Value::Object(map) => map.iter().for_each(|(key, child)| {
                let mut deeper = path.clone();
                deeper.push(key.clone());
                holes(child, deeper, found);
            }),
            Value::Array(items) => items.iter().enumerate().for_each(|(index, child)| {
                let mut deeper = path.clone();
                deeper.push(index.to_string());
                holes(child, deeper, found);
            }),
            _ => {}
        }
    }
    let mut found = Vec::new();
    holes(template, Vec::new(), &mut found);
    let chosen = rng.pick(&found[1..]).clone();
    let mut mutated = template.clone();
    let mut slot = &mut mutated;
    for step in &chosen {
        slot = match slot {
            Value::Array(items) => &mut items[step.parse::<usize>().unwrap()],
            other => &mut other[step.as_str()],
        };
    }
    *slot = json!("@@HOLE@@");
    mutated.to_string().replace("\"@@HOLE@@\"", leaf)
}

/// The attacker, the victim, and what the routes' placeholders name.
struct Scene {
    server: TestServer,
    alice: TestUser,
    bob: TestUser,
    room: String,
    event: String,
    backup: String,
}

impl Scene {
    async fn new() -> Scene {
        let server = TestServer::start_with(|config| config.limits.max_request_size = LIMIT).await;
        let alice = server.register("alice", PASSWORD).await;
        let bob = server.register("bob", PASSWORD).await;
        let room = server.create_room(&alice, json!({"preset": "public_chat"})).await;
        server.join(&bob, &room).await;
        let event = server.send_text(&alice, &room, "first", "hello").await;
        let mut scene = Scene { server, alice, bob, room, event, backup: String::new() };
        scene.restore().await;
        scene
    }

    /// Puts back what a request may have undone: the attacker's session and membership, a
    /// backup, one-time keys to claim, and something the victim's sync must carry.
    async fn restore(&mut self) {
        let server = &self.server;
        if server.get("/_matrix/client/v3/account/whoami", self.alice.token()).await.0 != StatusCode::OK {
            self.alice = server.login("alice", PASSWORD).await;
        }
        let (_, joined) = server.get("/_matrix/client/v3/joined_rooms", self.alice.token()).await;
        if !joined["joined_rooms"].as_array().is_some_and(|rooms| rooms.iter().any(|room| room == self.room.as_str())) {
            let _ = server
                .post(&format!("/_matrix/client/v3/join/{}", encode(&self.room)), self.alice.token(), json!({}))
                .await;
        }
        let (status, version) = server.get("/_matrix/client/v3/room_keys/version", self.alice.token()).await;
        self.backup = match version["version"].as_str() {
            Some(version) if status == StatusCode::OK => version.to_owned(),
            _ => {
                let created = server
                    .post(
                        "/_matrix/client/v3/room_keys/version",
                        self.alice.token(),
                        json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "k"}}),
                    )
                    .await;
                created.1["version"].as_str().unwrap_or("1").to_owned()
            }
        };
        let key = format!("curve25519:{}", incompressible(8));
        let _ = server
            .post("/_matrix/client/v3/keys/upload", self.alice.token(), json!({"one_time_keys": {key: "k"}}))
            .await;
        // The attacker may block the victim (`/_hearth/client/v1/block/{userId}`), which is
        // their right and hides their profile from the victim: lift it before the victim reads.
        let ignore_list = format!("/_matrix/client/v3/user/{}/account_data/m.ignored_user_list", self.alice.user_id);
        let _ = server.put(&ignore_list, self.alice.token(), json!({"ignored_users": {}})).await;
    }

    fn fill(&self, path: &str) -> String {
        fill_path(path, |name| {
            let fixture = match name {
                // Routes that name a user: the victim, where another user may be named at all.
                "user_id" => Some(self.bob.user_id.as_str()),
                "device_id" => Some(self.alice.device_id.as_str()),
                "room_id" | "room_id_or_alias" => Some(self.room.as_str()),
                "event_id" => Some(self.event.as_str()),
                "version" => Some(self.backup.as_str()),
                "filter_id" => Some("0"),
                "field" => Some("org.example.fuzz"),
                _ => None,
            };
            fixture.map(str::to_owned).or_else(|| inert_placeholder(name, "fuzz")).unwrap_or_else(|| {
                panic!("{path}: give the placeholder {{{name}}} a value in `Scene::fill` or `inert_placeholder`")
            })
        })
    }

    /// Bodies of the shape the route expects, aimed at the victim where they can be.
    fn template(&self, path: &str) -> Value {
        let (bob, alice, room) = (&self.bob.user_id, &self.alice.user_id, &self.room);
        if path.contains("/sendToDevice/") {
            json!({"messages": {bob.clone(): {"*": {"body": "hi", "n": 1}}}})
        } else if path.ends_with("/keys/upload") {
            json!({"one_time_keys": {"signed_curve25519:AAAAAQ": {"key": "k", "signatures": {alice.clone(): {"ed25519:X": "s"}}}},
                   "fallback_keys": {"signed_curve25519:AAAAAg": {"key": "k", "fallback": true}}})
        } else if path.contains("/profile/") {
            json!({"displayname": "alice", "org.example.fuzz": {"list": [1, 2]}})
        } else if path.contains("/account_data/") || path.contains("/tags/") {
            json!({"order": 0.5, "data": {"list": [1, "two"]}})
        } else if path.contains("/room_keys/version") {
            json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "k", "signatures": {}}})
        } else if path.contains("/room_keys/keys") {
            json!({"rooms": {room.clone(): {"sessions": {"s": {"first_message_index": 0, "forwarded_count": 0,
                "is_verified": false, "session_data": {"ciphertext": "c"}}}}}})
        } else if path.ends_with("/filter") {
            json!({"room": {"timeline": {"limit": 10, "types": ["m.room.message"]}}, "event_fields": ["content.body"]})
        } else if path.ends_with("/createRoom") {
            json!({"name": "n", "creation_content": {"x": 1}, "initial_state": [{"type": "org.example.x", "content": {"x": 1}}],
                   "power_level_content_override": {"users_default": 0}, "invite": [bob.clone()]})
        } else if path.contains("/typing/") {
            json!({"typing": true, "timeout": 1000})
        } else if path.contains("/presence/") {
            json!({"presence": "online", "status_msg": "here"})
        } else if path.ends_with("/register") || path.ends_with("/login") {
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "nobody"}, "password": "p",
                   "device_id": "D", "initial_device_display_name": "d", "auth": {"type": "m.login.dummy"}})
        } else {
            json!({"msgtype": "m.text", "body": "hi", "m.relates_to": {"rel_type": "m.annotation", "event_id": self.event, "key": "k"},
                   "user_id": bob, "reason": "r", "thread_id": "main", "content": {"x": 1}})
        }
    }

    /// What the victim must still be able to do; the problems found.
    async fn victim_reads(&self) -> Vec<String> {
        let server = &self.server;
        let mut problems = Vec::new();
        let alice_keys = json!({self.alice.user_id.clone(): {self.alice.device_id.clone(): "curve25519"}});
        for (what, answer) in [
            ("bob's sync", server.get("/_matrix/client/v3/sync?set_presence=offline", self.bob.token()).await),
            (
                "alice's profile",
                server.get(&format!("/_matrix/client/v3/profile/{}", self.alice.user_id), self.bob.token()).await,
            ),
            (
                "keys/claim",
                server
                    .post("/_matrix/client/v3/keys/claim", self.bob.token(), json!({"one_time_keys": alice_keys}))
                    .await,
            ),
            (
                "keys/query",
                server
                    .post(
                        "/_matrix/client/v3/keys/query",
                        self.bob.token(),
                        json!({"device_keys": {self.alice.user_id.clone(): []}}),
                    )
                    .await,
            ),
            ("alice's sync", server.get("/_matrix/client/v3/sync?set_presence=offline", self.alice.token()).await),
        ] {
            if answer.0 != StatusCode::OK {
                problems.push(format!("{what}: {} {}", answer.0, answer.1));
            }
        }
        problems
    }
}

#[tokio::test]
async fn no_body_on_any_route_gives_a_5xx_or_breaks_another_user() {
    let seed = std::env::var("HEARTH_FUZZ_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or(0x5EED_u64);
    let cases = std::env::var("HEARTH_FUZZ_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(48);
    let mut scene = Scene::new().await;
    let routes: Vec<_> = hearth::testing::http::route_table()
        .into_iter()
        .filter(|route| route.method != Method::GET && route.method != Method::HEAD)
        .collect();
    assert!(routes.len() > 40, "the route table lists the routes with bodies: {}", routes.len());
    let started = std::time::Instant::now();
    let mut rng = Rng(seed | 1);
    let (mut problems, mut requests, mut refused) = (Vec::new(), 0, 0);
    for route in &routes {
        scene.restore().await;
        let path = scene.fill(route.path);
        let template = scene.template(route.path);
        let bodies: Vec<String> = (0..cases)
            .map(|case| match case % 3 {
                0 => random_value(&mut rng, 4),
                _ => {
                    let leaf = hostile_leaf(&mut rng);
                    mutate(&mut rng, &template, &leaf)
                }
            })
            .collect();
        // Four at a time, as clients do; the victim checks after the route's last answer.
        let answers: Vec<(StatusCode, Value, String)> = futures_util::stream::iter(bodies)
            .map(|body| {
                let (server, alice, method, path) = (&scene.server, &scene.alice, route.method.clone(), path.clone());
                async move {
                    let answer = server.request_raw(method, &path, alice.token(), body.clone().into_bytes()).await;
                    (answer.0, answer.1, body)
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        for (status, answer, body) in answers {
            requests += 1;
            if status.is_client_error() {
                refused += 1;
            }
            if status.is_server_error() {
                let body: String = body.chars().take(300).collect();
                problems.push(format!("{} {}: {status} {answer} for {body}", route.method, route.path));
            }
        }
        // Logging out or leaving is the attacker's right; breaking reads is not.
        scene.restore().await;
        for problem in scene.victim_reads().await {
            problems.push(format!("after {} {}: {problem}", route.method, route.path));
        }
    }
    println!(
        "seed {seed:#x}: {} routes, {requests} bodies ({refused} refused as the client's mistake), in {:?}",
        routes.len(),
        started.elapsed()
    );
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}
