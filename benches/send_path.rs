//! The send path's hot spots, each on its own, so a change shows its cost before the load tool
//! (`hearth-bench send`) runs: building and signing an event, its reference hash, canonical
//! JSON both ways, and the append of one message against a throwaway local PostgreSQL cluster.
//!
//! `cargo bench --bench send_path` (CI only builds it: `cargo bench --no-run`). Timings depend on
//! the machine's load; on a shared machine compare runs taken side by side.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench may fail loudly

use divan::Bencher;
use hearth::signing_key::SigningKey;
use hearth::testing::rooms::build::{EventTemplate, Placement, build_and_sign, build_unsigned};
use ruma::events::MessageLikeEventType;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, RoomVersionId, owned_event_id, room_id, server_name, user_id,
};
use serde_json::json;

fn main() {
    divan::main();
}

fn message() -> EventTemplate {
    EventTemplate::message(
        MessageLikeEventType::RoomMessage,
        json!({"msgtype": "m.text", "body": "Hello, world! ".repeat(4)}),
    )
}

/// A message's place as a busy room gives it: one parent, the usual three auth events.
fn parents() -> (Vec<OwnedEventId>, Vec<OwnedEventId>) {
    let prev = vec![owned_event_id!("$Nhb8L0ppzwc4D2jDSpnThiyNWd8qYfRYQa9QKtPJxoA")];
    let auth = vec![
        owned_event_id!("$6lZ0bVkSmOqNOjOf3Rh9yEqSJdRXQkUyFqJAUrtnLYE"),
        owned_event_id!("$bm8DDiXHXCrRjR4KBQbwWfJlfvYDWJYrVEx7yMJwr5s"),
        owned_event_id!("$KSsqNqKrxmy8H3fELv8TMWmUYl7OBqDbmAqSN0JuCvY"),
    ];
    (prev, auth)
}

/// Builds the event's JSON, hashes its content, signs it and derives its reference-hash id.
#[divan::bench]
fn build_and_sign_message(bencher: Bencher) {
    let key = SigningKey::generate().unwrap();
    let rules = RoomVersionId::V12.rules().unwrap();
    let (prev, auth) = parents();
    let placement = Placement {
        room_id: Some(room_id!("!bench:hearth.bench")),
        prev_events: &prev,
        auth_events: &auth,
        depth: 1000,
    };
    let template = message();
    let sender = user_id!("@alice:hearth.bench");
    bencher.bench_local(|| {
        build_and_sign(&template, sender, &placement, &rules, server_name!("hearth.bench"), &key).unwrap()
    });
}

/// A signed message as stored: the input of the hashing and JSON benches.
fn signed_message() -> CanonicalJsonObject {
    let key = SigningKey::generate().unwrap();
    let rules = RoomVersionId::V12.rules().unwrap();
    let (prev, auth) = parents();
    let placement = Placement {
        room_id: Some(room_id!("!bench:hearth.bench")),
        prev_events: &prev,
        auth_events: &auth,
        depth: 1000,
    };
    let pdu = build_and_sign(
        &message(),
        user_id!("@alice:hearth.bench"),
        &placement,
        &rules,
        server_name!("hearth.bench"),
        &key,
    )
    .unwrap();
    serde_json::from_str(&pdu.canonical_json()).unwrap()
}

/// The event id of room versions 3 and later: redact, drop signatures, SHA-256, base64.
#[divan::bench]
fn reference_hash(bencher: Bencher) {
    let object = signed_message();
    let rules = RoomVersionId::V12.rules().unwrap();
    bencher.bench_local(|| ruma::signatures::reference_hash(&object, &rules).unwrap());
}

/// Just the template to unsigned canonical JSON, without hashing or signing.
#[divan::bench]
fn build_unsigned_message(bencher: Bencher) {
    let rules = RoomVersionId::V12.rules().unwrap();
    let (prev, auth) = parents();
    let placement = Placement {
        room_id: Some(room_id!("!bench:hearth.bench")),
        prev_events: &prev,
        auth_events: &auth,
        depth: 1000,
    };
    let template = message();
    bencher.bench_local(|| build_unsigned(&template, user_id!("@alice:hearth.bench"), &placement, &rules).unwrap());
}

/// Canonical JSON text of a signed event (what is stored and sent to other servers).
#[divan::bench]
fn canonical_json_serialize(bencher: Bencher) {
    let object = CanonicalJsonValue::Object(signed_message());
    bencher.bench_local(|| object.to_string());
}

/// A stored event's text back to a canonical JSON object (what every read of an event costs).
#[divan::bench]
fn canonical_json_parse(bencher: Bencher) {
    let text = CanonicalJsonValue::Object(signed_message()).to_string();
    bencher.bench_local(|| serde_json::from_str::<CanonicalJsonObject>(&text).unwrap());
}

mod append {
    use super::*;
    use hearth::config::Config;
    use hearth::state::AppState;
    use hearth::testing::db::embedded::{ClusterOptions, RunningCluster};
    use hearth::testing::rooms::create::{CreateRoom, create_room};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A throwaway cluster (as the tests start one) with durable commits, so the figure
    /// includes the WAL flush a real server pays; `HEARTH_BENCH_SYNCHRONOUS_COMMIT=off`
    /// measures without it.
    fn cluster(dir: &std::path::Path) -> RunningCluster {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let options = ClusterOptions {
            dir: dir.join("pg"),
            log_file: dir.join("postgres.log"),
            settings: vec![("max_connections".to_owned(), "50".to_owned())],
        };
        RunningCluster::start(&options).unwrap()
    }

    /// One message appended to a room (locks, place, auth, sign, store, commit, wake-ups): the
    /// domain half of `PUT /send`, without HTTP.
    #[divan::bench(sample_count = 200)]
    fn one_message(bencher: Bencher) {
        let dir = tempfile::Builder::new().prefix("hearth-bench-").tempdir_in("/tmp").unwrap();
        let running = cluster(dir.path());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let synchronous_commit = std::env::var("HEARTH_BENCH_SYNCHRONOUS_COMMIT").unwrap_or_else(|_| "on".to_owned());
        let state = runtime.block_on(async {
            hearth::testing::db::ensure_database(running.connect_options("postgres"), "hearth").await.unwrap();
            let options =
                hearth::testing::db::with_synchronous_commit(running.connect_options("hearth"), &synchronous_commit);
            let pool = hearth::testing::db::open_pool(options, 10).await.unwrap();
            let config = Config { server_name: "hearth.bench".to_owned(), ..Config::default() };
            AppState::new(config, pool, SigningKey::generate().unwrap()).await.unwrap()
        });
        let (sender, room_id) = runtime.block_on(async {
            let sender = hearth::testing::users::accounts::create_account(
                &state.pool,
                &state.server_name,
                "alice",
                "bench-password-1",
                false,
            )
            .await
            .unwrap();
            let request = CreateRoom { public: true, ..CreateRoom::default() };
            let room_id = create_room(state.rooms(), &RoomVersionId::V12, &sender, request).await.unwrap();
            (sender, room_id)
        });
        let sent = AtomicU64::new(0);
        bencher.bench_local(|| {
            let n = sent.fetch_add(1, Ordering::Relaxed);
            let transaction = hearth::testing::rooms::send::Transaction { device_id: "BENCH", txn_id: &n.to_string() };
            runtime
                .block_on(hearth::testing::rooms::send::append(
                    state.rooms(),
                    &room_id,
                    &sender,
                    message(),
                    Some(transaction),
                ))
                .unwrap()
        });
        drop(state);
        drop(runtime);
        running.stop().unwrap();
    }
}
