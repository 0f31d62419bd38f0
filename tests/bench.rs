//! The `hearth-bench` binary run for real against an in-process Hearth: what it reports, what
//! it leaves in the server, and how it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use serde_json::Value;
use std::process::Output;

/// Runs the real binary. `tokio::process` keeps this test's runtime free to serve the
/// in-process server while the bench talks to it.
async fn bench(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth-bench"))
        .args(args)
        .env_remove("HEARTH_BENCH_SHARED_SECRET")
        .output()
        .await
        .expect("hearth-bench starts")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_report(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("JSON report written")).expect("report is JSON")
}

/// Checks one phase's figures and returns its name.
fn check_phase(phase: &Value, messages: u64) -> String {
    assert_eq!(phase["messages"], messages, "{phase}");
    assert!(phase["messages_per_s"].as_f64().expect("rate") > 0.0, "{phase}");
    let latency = &phase["latency_ms"];
    let figure = |name: &str| latency[name].as_f64().unwrap_or_else(|| panic!("{name} in {phase}"));
    let (p50, p95, p99, max) = (figure("p50"), figure("p95"), figure("p99"), figure("max"));
    assert!(p50 > 0.0 && p50 <= p95 && p95 <= p99 && p99 <= max, "percentiles out of order: {phase}");
    phase["name"].as_str().expect("phase name").to_owned()
}

#[tokio::test]
async fn send_measures_every_phase_and_its_cpu_and_really_sends_every_message() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("send.json");
    let json_arg = json.to_str().expect("utf-8 path");
    let output = bench(&[
        "send",
        "--homeserver",
        &server.base_url,
        "--shared-secret",
        SHARED_SECRET,
        "--messages",
        "20",
        "--concurrency",
        "4",
        "--rooms",
        "3",
        // The server runs in this process, its PostgreSQL below it.
        "--server-pid",
        &std::process::id().to_string(),
        "--json",
        json_arg,
    ])
    .await;
    assert!(output.status.success(), "bench failed: {}{}", text(&output.stdout), text(&output.stderr));

    let report = read_report(&json);
    assert_eq!(report["scenario"], "send");
    assert_eq!(report["parameters"]["messages"], 20);
    assert_eq!(report["parameters"]["concurrency"], 4);
    assert!(report["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{report}");
    assert!(report.get("ratios").is_none(), "no ratios without --compare: {report}");
    let servers = report["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0]["homeserver"].as_str().map(|u| u.trim_end_matches('/')), Some(server.base_url.as_str()));
    let phases = servers[0]["phases"].as_array().expect("phases");
    let names: Vec<String> = phases.iter().map(|phase| check_phase(phase, 20)).collect();
    assert_eq!(names, ["sequential", "concurrent", "rooms"]);
    assert_eq!(phases[1]["concurrency"], 4);
    assert_eq!(phases[2]["concurrency"], 4);

    // The table names every phase, with the CPU each cost.
    let table = text(&output.stdout);
    assert!(table.contains("sequential") && table.contains("concurrent") && table.contains("rooms"), "{table}");
    assert!(table.contains("ms per message"), "{table}");
    let cpu = servers[0]["cpu"].as_array().expect("cpu per phase");
    assert_eq!(cpu.len(), 3, "{cpu:?}");
    let cpu_ms: f64 = cpu.iter().map(|phase| phase["cpu_ms"].as_f64().expect("cpu_ms")).sum();
    // 60 sends by a debug build cost far more than one 10 ms clock tick.
    assert!(cpu_ms > 0.0, "{cpu:?}");

    // Every message reached the room, once (the bench user cannot be asked: count the rows).
    let room = servers[0]["room_id"].as_str().expect("room_id");
    assert!(room.starts_with('!'), "{room}");
    let sent = server
        .count(&format!(
            "SELECT count(*) FROM events WHERE room_id = '{}' AND event_type = 'm.room.message'",
            room.replace('\'', "''")
        ))
        .await;
    assert_eq!(sent, 40);
    // The third phase spread its 20 messages over 3 other rooms.
    let spread = server
        .count(&format!(
            "SELECT count(DISTINCT room_id) FROM events WHERE event_type = 'm.room.message' AND room_id <> '{}'",
            room.replace('\'', "''")
        ))
        .await;
    assert_eq!(spread, 3);
    assert_eq!(server.count("SELECT count(*) FROM events WHERE event_type = 'm.room.message'").await, 60);
}

#[tokio::test]
async fn open_registration_and_compare_give_ratios_for_every_phase() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("compare.json");
    let output = bench(&[
        "send",
        "--homeserver",
        &server.base_url,
        "--compare",
        &server.base_url,
        "--messages",
        "3",
        "--concurrency",
        "2",
        "--rooms",
        "2",
        "--json",
        json.to_str().expect("utf-8 path"),
    ])
    .await;
    assert!(output.status.success(), "bench failed: {}{}", text(&output.stdout), text(&output.stderr));

    let report = read_report(&json);
    let servers = report["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 2);
    assert_ne!(servers[0]["user_id"], servers[1]["user_id"], "each run registers its own user");
    let ratios = report["ratios"].as_array().expect("ratios with --compare");
    assert_eq!(ratios.len(), 3);
    for ratio in ratios {
        assert!(ratio["messages_per_s"].as_f64().is_some_and(|r| r > 0.0), "{ratio}");
    }
    assert!(text(&output.stdout).contains("ratios"), "{}", text(&output.stdout));
    assert_eq!(server.count("SELECT count(*) FROM events WHERE event_type = 'm.room.message'").await, 18);
}

/// Conduit has no shared-secret registration: a server that refuses it (here a Hearth without
/// a secret) is registered on openly while the others use the secret, and every `--compare`
/// server gets its own ratios against the first.
#[tokio::test]
async fn each_compare_server_gets_ratios_and_its_own_way_of_registering() {
    let with_secret = TestServer::start().await;
    let without_secret = TestServer::start_with(|config| config.registration.shared_secret = None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("three.json");
    let output = bench(&[
        "send",
        "--homeserver",
        &with_secret.base_url,
        "--compare",
        &without_secret.base_url,
        "--compare",
        &with_secret.base_url,
        "--shared-secret",
        SHARED_SECRET,
        "--messages",
        "2",
        "--concurrency",
        "1",
        "--json",
        json.to_str().expect("utf-8 path"),
    ])
    .await;
    assert!(output.status.success(), "bench failed: {}{}", text(&output.stdout), text(&output.stderr));
    assert!(text(&output.stderr).contains("registering with open registration"), "{}", text(&output.stderr));

    let report = read_report(&json);
    let servers: Vec<&str> =
        report["servers"].as_array().expect("servers").iter().map(|s| s["homeserver"].as_str().expect("url")).collect();
    assert_eq!(servers.len(), 3);
    let ratios = report["ratios"].as_array().expect("ratios with --compare");
    let compared: Vec<&str> = ratios.iter().map(|row| row["homeserver"].as_str().expect("homeserver")).collect();
    assert_eq!(compared, [servers[1], servers[1], servers[2], servers[2]], "two phases per compared server");
    assert!(ratios.iter().all(|row| row["messages_per_s"].as_f64().is_some_and(|r| r > 0.0)), "{ratios:?}");
    assert_eq!(text(&output.stdout).matches("ratios: ").count(), 2, "{}", text(&output.stdout));

    // Two runs of 2 + 2 messages on the first server, one on the second, each in its own room.
    let messages = "SELECT count(*) FROM events WHERE event_type = 'm.room.message'";
    assert_eq!(with_secret.count(messages).await, 8);
    assert_eq!(without_secret.count(messages).await, 4);
}

#[tokio::test]
async fn a_wrong_shared_secret_fails_with_the_servers_error() {
    let server = TestServer::start().await;
    let output =
        bench(&["send", "--homeserver", &server.base_url, "--shared-secret", "wrong", "--messages", "1"]).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("cannot register") && stderr.contains("M_FORBIDDEN"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_homeserver_is_a_readable_error() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let output = bench(&["send", "--homeserver", &url, "--messages", "1"]).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("cannot reach the homeserver") && stderr.contains(&url), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn paired_delivers_every_message_once_in_order_and_measures_latency_on_both_transports() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    for (run, transport) in ["long-poll", "ws"].into_iter().enumerate() {
        let args = ["--shared-secret", SHARED_SECRET, "--pairs", "3", "--messages", "5"];
        let (output, report) = run_valid(&server, dir.path(), "paired", &args, transport).await;
        let parameters = &report["parameters"];
        assert_eq!((parameters["pairs"].as_u64(), parameters["messages"].as_u64()), (Some(3), Some(5)));
        let servers = report["servers"].as_array().expect("servers");
        assert_eq!(servers.len(), 1);
        check_validity(&servers[0]["validity"], 30);
        // 6 users each sent 5 messages, and every one has a latency.
        assert_eq!(check_phase(&servers[0]["phase"], 30), "paired");
        assert_eq!(servers[0]["phase"]["concurrency"], 6);
        let sent = 30 * (run as i64 + 1);
        assert_eq!(server.count("SELECT count(*) FROM events WHERE event_type = 'm.room.message'").await, sent);
        assert!(text(&output.stdout).contains("30/30"), "{}", text(&output.stdout));
    }
}

/// Runs `scenario` against `server` over `transport` and returns its output and its JSON
/// report, checked to be a valid run of that scenario and transport.
async fn run_valid(
    server: &TestServer,
    dir: &std::path::Path,
    scenario: &str,
    args: &[&str],
    transport: &str,
) -> (Output, Value) {
    let json = dir.join(format!("{scenario}-{transport}.json"));
    let mut all = vec![scenario, "--homeserver", &server.base_url, "--transport", transport];
    all.extend_from_slice(args);
    all.extend(["--json", json.to_str().expect("utf-8 path")]);
    let output = bench(&all).await;
    assert!(output.status.success(), "bench failed: {}{}", text(&output.stdout), text(&output.stderr));
    let report = read_report(&json);
    assert_eq!(report["scenario"], scenario);
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["parameters"]["transport"], transport, "{report}");
    (output, report)
}

/// Checks a delivery validity report: all `expected` delivered, none missing, repeated, out of
/// order or altered.
fn check_validity(validity: &Value, expected: u64) {
    assert_eq!(validity["valid"], true, "{validity}");
    assert_eq!((validity["expected"].as_u64(), validity["delivered"].as_u64()), (Some(expected), Some(expected)));
    for count in ["missing", "duplicates", "out_of_order", "altered"] {
        assert_eq!(validity[count], 0, "{count}: {validity}");
    }
}

fn sql_text(value: &Value) -> String {
    value.as_str().expect("a string").replace('\'', "''")
}

/// Checks the ordering of a latency object's percentiles and returns (p50, p99, max).
fn ordered_latency(latency: &Value) -> (f64, f64, f64) {
    let figure = |name: &str| latency[name].as_f64().unwrap_or_else(|| panic!("{name} in {latency}"));
    let (p50, p95, p99, max) = (figure("p50"), figure("p95"), figure("p99"), figure("max"));
    assert!(p50 > 0.0 && p50 <= p95 && p95 <= p99 && p99 <= max, "percentiles out of order: {latency}");
    (p50, p99, max)
}

#[tokio::test]
async fn fanout_delivers_every_message_to_every_member_once_in_order_on_both_transports() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    for transport in ["long-poll", "ws"] {
        let args = ["--shared-secret", SHARED_SECRET, "--members", "4", "--messages", "3", "--interval-ms", "20"];
        let (output, report) = run_valid(&server, dir.path(), "fanout", &args, transport).await;
        let run = &report["servers"][0];
        check_validity(&run["validity"], 12);
        // Every (member, message) delivery has a latency.
        assert_eq!(check_phase(&run["phase"], 12), "fanout");
        assert_eq!(run["phase"]["concurrency"], 4);
        ordered_latency(&run["send_latency_ms"]);

        // The server holds the three messages and the five members (sender included) of the room.
        let room = sql_text(&run["room_id"]);
        let count =
            |kind: &str| format!("SELECT count(*) FROM events WHERE room_id = '{room}' AND event_type = '{kind}'");
        assert_eq!(server.count(&count("m.room.message")).await, 3);
        assert_eq!(server.count(&count("m.room.member")).await, 5);
        assert!(text(&output.stdout).contains("12/12"), "{}", text(&output.stdout));
    }
}

#[tokio::test]
async fn initial_sync_sees_every_room_and_compare_gives_ratios() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("initial.json");
    let output = bench(&[
        "initial-sync",
        "--homeserver",
        &server.base_url,
        "--compare",
        &server.base_url,
        "--shared-secret",
        SHARED_SECRET,
        "--rooms",
        "3",
        "--events",
        "4",
        "--repeats",
        "2",
        "--json",
        json.to_str().expect("utf-8 path"),
    ])
    .await;
    assert!(output.status.success(), "bench failed: {}{}", text(&output.stdout), text(&output.stderr));

    let report = read_report(&json);
    assert_eq!(report["scenario"], "initial-sync");
    assert_eq!(report["valid"], true, "{report}");
    let servers = report["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 2);
    for run in servers {
        assert_eq!(run["joined_rooms"], serde_json::json!([3, 3]), "{run}");
        let (p50, _, _) = ordered_latency(&run["latency_ms"]);
        assert!(run["min_ms"].as_f64().is_some_and(|min| min > 0.0 && min <= p50), "{run}");
        // The first sync and the others' median apart: a cache shows only in the second.
        assert!(run["first_ms"].as_f64().is_some_and(|first| first >= run["min_ms"].as_f64().unwrap()), "{run}");
        assert!(run["repeated_median_ms"].as_f64().is_some_and(|repeated| repeated > 0.0), "{run}");
        let sizes = run["response_bytes"].as_array().expect("sizes");
        assert!(sizes.len() == 2 && sizes.iter().all(|size| size.as_u64().is_some_and(|s| s > 1_000)), "{run}");
        // The user really sent four messages to each of its three rooms.
        let user = sql_text(&run["user_id"]);
        let sql = format!("SELECT count(*) FROM events WHERE sender = '{user}' AND event_type = 'm.room.message'");
        assert_eq!(server.count(&sql).await, 12);
    }
    let ratios = report["ratios"].as_array().expect("ratios with --compare");
    assert_eq!(ratios.len(), 1);
    assert!(ratios[0]["median"].as_f64().is_some_and(|r| r > 0.0), "{ratios:?}");
    assert!(text(&output.stdout).contains("ratios"), "{}", text(&output.stdout));
}

#[tokio::test]
async fn idle_holds_the_connections_and_reads_the_servers_memory() {
    // The server runs in this process, so this process's memory is the server's.
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("idle.json");
    let pid = std::process::id().to_string();
    let output = bench(&[
        "idle",
        "--homeserver",
        &server.base_url,
        "--shared-secret",
        SHARED_SECRET,
        "--connections",
        "30",
        "--users",
        "3",
        "--settle-s",
        "1",
        "--server-pid",
        &pid,
        "--json",
        json.to_str().expect("utf-8 path"),
    ])
    .await;
    assert!(output.status.success(), "bench failed: {}{}", text(&output.stdout), text(&output.stderr));

    let report = read_report(&json);
    assert_eq!(report["scenario"], "idle");
    assert_eq!(report["valid"], true, "{report}");
    let run = &report["servers"][0];
    assert_eq!(
        (run["connections"].as_u64(), run["users"].as_u64(), run["failures"].as_u64()),
        (Some(30), Some(3), Some(0))
    );
    assert!(run["open_sockets"].as_u64().is_some_and(|open| open >= 30), "{run}");
    let memory = &run["memory"];
    assert_eq!(memory["pid"].as_u64(), Some(u64::from(std::process::id())));
    for moment in ["before", "after"] {
        let rss = memory[moment]["rss_kib"].as_u64().unwrap_or(0);
        assert!(rss > 0 && memory[moment]["hwm_kib"].as_u64().unwrap_or(0) >= rss, "{memory}");
    }
    assert!(memory["bytes_per_connection"].as_f64().is_some(), "{memory}");
    assert_eq!(server.count("SELECT count(*) FROM users WHERE user_id LIKE '@hb%'").await, 3);

    // Without a process id the connections are still held, and the table says what is missing.
    let output =
        bench(&["idle", "--homeserver", &server.base_url, "--connections", "4", "--users", "2", "--settle-s", "0"])
            .await;
    assert!(output.status.success(), "bench failed: {}{}", text(&output.stdout), text(&output.stderr));
    assert!(text(&output.stdout).contains("memory not measured"), "{}", text(&output.stdout));

    // Idle WebSockets: held open, and none is pushed anything.
    let args = ["--shared-secret", SHARED_SECRET, "--connections", "6", "--users", "2", "--settle-s", "1"];
    let (_, report) = run_valid(&server, dir.path(), "idle", &args, "ws").await;
    let run = &report["servers"][0];
    assert_eq!((run["failures"].as_u64(), run["early_answers"].as_u64()), (Some(0), Some(0)), "{run}");
    assert!(run["open_sockets"].as_u64().is_some_and(|open| open >= 6), "{run}");
}

#[tokio::test]
async fn an_idle_run_with_a_pid_that_is_no_process_fails_before_measuring() {
    let output = bench(&["idle", "--homeserver", "http://127.0.0.1:1", "--server-pid", "4000000000"]).await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("/proc/4000000000/status") && stderr.contains("running server process"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn invalid_arguments_are_refused_with_a_message() {
    for args in [
        &["send"][..],
        &["send", "--homeserver", "localhost:8008"],
        &["send", "--homeserver", "http://127.0.0.1:1", "--messages", "0"],
        &["send", "--homeserver", "http://127.0.0.1:1", "--concurrency", "many"],
        &["send", "--homeserver", "http://127.0.0.1:1", "--json", "/nonexistent-dir/x.json"],
        &["no-such-scenario"],
        &["fanout", "--homeserver", "http://127.0.0.1:1", "--members", "0"],
        &["initial-sync", "--homeserver", "http://127.0.0.1:1", "--rooms", "lots"],
        &["idle", "--homeserver", "http://127.0.0.1:1", "--compare-server-pid", "1"],
        &["idle", "--homeserver", "http://127.0.0.1:1", "--connections", "-5"],
        &["federation", "--homeserver", "http://127.0.0.1:1", "--tls-cert", "c.pem"],
    ] {
        let output = bench(args).await;
        assert!(!output.status.success(), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn federation_pushes_every_pdu_and_joins_a_large_room_over_tls() {
    let ca = std::sync::Arc::new(common::federation::TestCa::new());
    let target = common::federation::FedServer::start(ca.clone()).await;
    // A free port for the bench's own homeserver (the bench binds it itself).
    let port = common::ports::port_for_child().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("federation.json");
    let path = |p: std::path::PathBuf| p.to_str().expect("utf-8 path").to_owned();
    let (cert, key, ca_file) = (path(ca.cert_file()), path(ca.key_file()), path(ca.ca_file()));
    let output = bench(&[
        "federation",
        "--homeserver",
        &target.server.base_url,
        "--shared-secret",
        SHARED_SECRET,
        "--pdus",
        "120",
        "--members",
        "30",
        "--port",
        &port,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--ca-file",
        &ca_file,
        "--json",
        json.to_str().expect("utf-8 path"),
    ])
    .await;
    assert!(output.status.success(), "bench failed: {}{}", text(&output.stdout), text(&output.stderr));

    let report = read_report(&json);
    assert_eq!(report["scenario"], "federation");
    assert_eq!(report["valid"], true, "{report}");
    let run = &report["servers"][0];
    assert_eq!(run["server_name"], target.name().as_str());
    let inbound = &run["inbound"];
    assert_eq!((inbound["pdus"].as_u64(), inbound["transactions"].as_u64()), (Some(120), Some(3)), "{inbound}");
    assert_eq!((inbound["refused"].as_u64(), inbound["messages_readable"].as_u64()), (Some(0), Some(120)));
    assert!(inbound["acknowledged_pdus_per_s"].as_f64().unwrap() > 0.0, "{inbound}");
    let join = &run["join"];
    assert_eq!((join["state_members"].as_u64(), join["joined_members"].as_u64()), (Some(31), Some(32)), "{join}");
    assert!(join["join_ms"].as_f64().unwrap() > 0.0, "{join}");
    // The same join with a partial state: Hearth asks for one, and lists every member once the
    // full state is in.
    let partial = &run["partial_join"];
    assert_eq!(partial["asked_partial"], true, "{partial}");
    assert_eq!((partial["state_members"].as_u64(), partial["joined_members"].as_u64()), (Some(31), Some(32)));
    assert!(partial["full_state_s"].as_f64().unwrap() * 1000.0 >= partial["join_ms"].as_f64().unwrap(), "{partial}");

    // What the target stored: every pushed message, and the whole membership of the large room.
    let count = |room: &Value, event_type: &str| {
        format!(
            "SELECT count(*) FROM events WHERE room_id = '{}' AND event_type = '{event_type}'",
            room.as_str().expect("room_id").replace('\'', "''")
        )
    };
    assert_eq!(target.server.count(&count(&inbound["room_id"], "m.room.message")).await, 120);
    assert_eq!(target.server.count(&count(&join["room_id"], "m.room.member")).await, 32);
    assert_eq!(target.server.count(&count(&partial["room_id"], "m.room.member")).await, 32);
    assert_eq!(target.server.count("SELECT count(*) FROM partial_state_rooms").await, 0);
}
