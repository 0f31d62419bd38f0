//! The `hearth-bench` binary run for real against an in-process Hearth: what it reports, what
//! it leaves in the server, and how it fails.

mod common;
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
async fn send_measures_both_phases_and_really_sends_every_message() {
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
    assert_eq!(names, ["sequential", "concurrent"]);
    assert_eq!(phases[1]["concurrency"], 4);

    // The table names both phases.
    let table = text(&output.stdout);
    assert!(table.contains("sequential") && table.contains("concurrent"), "{table}");

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
}

#[tokio::test]
async fn open_registration_and_compare_give_ratios_for_both_phases() {
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
    assert_eq!(ratios.len(), 2);
    for ratio in ratios {
        assert!(ratio["messages_per_s"].as_f64().is_some_and(|r| r > 0.0), "{ratio}");
    }
    assert!(text(&output.stdout).contains("ratios"), "{}", text(&output.stdout));
    assert_eq!(server.count("SELECT count(*) FROM events WHERE event_type = 'm.room.message'").await, 12);
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
async fn paired_delivers_every_message_once_in_order_and_measures_latency() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("paired.json");
    let output = bench(&[
        "paired",
        "--homeserver",
        &server.base_url,
        "--shared-secret",
        SHARED_SECRET,
        "--pairs",
        "3",
        "--messages",
        "5",
        "--json",
        json.to_str().expect("utf-8 path"),
    ])
    .await;
    assert!(output.status.success(), "bench failed: {}{}", text(&output.stdout), text(&output.stderr));

    let report = read_report(&json);
    assert_eq!(report["scenario"], "paired");
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!((report["parameters"]["pairs"].as_u64(), report["parameters"]["messages"].as_u64()), (Some(3), Some(5)));
    let servers = report["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 1);
    let validity = &servers[0]["validity"];
    assert_eq!(validity["valid"], true, "{validity}");
    assert_eq!((validity["expected"].as_u64(), validity["delivered"].as_u64()), (Some(30), Some(30)), "{validity}");
    for count in ["missing", "duplicates", "out_of_order", "altered"] {
        assert_eq!(validity[count], 0, "{count}: {validity}");
    }
    // 6 users each sent 5 messages, and every one has a latency.
    assert_eq!(check_phase(&servers[0]["phase"], 30), "paired");
    assert_eq!(servers[0]["phase"]["concurrency"], 6);
    assert_eq!(server.count("SELECT count(*) FROM events WHERE event_type = 'm.room.message'").await, 30);
    assert!(text(&output.stdout).contains("30/30"), "{}", text(&output.stdout));
}

#[tokio::test]
async fn scenarios_that_need_sync_are_not_implemented_yet() {
    for scenario in ["fanout", "initial-sync", "idle"] {
        let output = bench(&[scenario, "--homeserver", "http://127.0.0.1:1", "--pairs", "5"]).await;
        assert!(!output.status.success(), "{scenario}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("not implemented yet") && stderr.contains(scenario), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
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
    ] {
        let output = bench(args).await;
        assert!(!output.status.success(), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
