//! Runs a scenario of a real client (matrix-js-sdk under Node, matrix-nio under Python) as a
//! subprocess against a `TestServer`, and turns its report into a test result.
//!
//! A scenario prints one line `HEARTH-RESULT {json}`: `ok`, the `steps` it passed with their
//! times, `figures` it measured, and on failure the `failed_step`, the `error`, what the client
//! `saw`, and the HTTP answers that were not 2xx (`http_errors`).

pub mod install;

use crate::common::{TestServer, TestUser};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A scenario that hangs is a failure, not a stuck test run.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);
const RESULT_PREFIX: &str = "HEARTH-RESULT ";

#[derive(Clone, Copy, Debug)]
pub enum RealClient {
    JsSdk,
    Nio,
}

impl RealClient {
    fn name(self) -> &'static str {
        match self {
            RealClient::JsSdk => "matrix-js-sdk",
            RealClient::Nio => "matrix-nio",
        }
    }

    /// The program and script for a scenario, and the environment it needs; installs the
    /// client on first use.
    async fn command(self, scenario: &str) -> tokio::process::Command {
        let installed = tokio::task::spawn_blocking(move || match self {
            RealClient::JsSdk => install::node_modules(),
            RealClient::Nio => install::nio_python(),
        })
        .await
        .expect("install thread")
        .unwrap_or_else(|error| panic!("{error}"));
        match self {
            RealClient::JsSdk => {
                let mut command = tokio::process::Command::new("node");
                command.arg(install::js_dir().join(format!("{scenario}.mjs"))).env("HEARTH_NODE_MODULES", installed);
                command
            }
            RealClient::Nio => {
                let mut command = tokio::process::Command::new(installed);
                // No __pycache__ beside the scripts in the source tree.
                command.arg(install::nio_dir().join(format!("{scenario}.py"))).env("PYTHONDONTWRITEBYTECODE", "1");
                command
            }
        }
    }
}

/// The accounts a scenario logs in with: `alice` and `bob`, registered on the server.
pub async fn accounts(server: &TestServer) -> Vec<(String, TestUser)> {
    let mut accounts = Vec::new();
    for name in ["alice", "bob"] {
        accounts.push((name.to_owned(), server.register(name, &format!("{name}'s password")).await));
    }
    accounts
}

/// Runs `scenario` of `client` against `server` and returns its report; panics with the
/// failed step, the error, what the client saw and its log tail when the scenario fails.
pub async fn run(client: RealClient, server: &TestServer, scenario: &str) -> Value {
    run_as(client, server, scenario, &accounts(server).await).await
}

/// [`run`] with accounts registered (and prepared) by the test: see [`accounts`].
pub async fn run_as(client: RealClient, server: &TestServer, scenario: &str, accounts: &[(String, TestUser)]) -> Value {
    let passwords: serde_json::Map<String, Value> =
        accounts.iter().map(|(name, user)| (name.clone(), json!(user.password))).collect();
    let state = tempfile::tempdir().expect("scratch directory for the client");
    let mut command = client.command(scenario).await;
    command
        .env("HEARTH_URL", &server.base_url)
        .env("HEARTH_ACCOUNTS", Value::Object(passwords).to_string())
        .env("HEARTH_STATE_DIR", state.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let child = command.spawn().unwrap_or_else(|e| panic!("{} {scenario}: could not start: {e}", client.name()));
    let output = tokio::time::timeout(SCENARIO_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} {scenario}: no result within {SCENARIO_TIMEOUT:?}", client.name()))
        .expect("wait for the client");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(RESULT_PREFIX))
        .and_then(|json| serde_json::from_str::<Value>(json).ok());
    let passed = output.status.success() && report.as_ref().is_some_and(|report| report["ok"] == true);
    if !passed {
        panic!(
            "{} scenario `{scenario}` failed ({}):\n{}\n--- stderr (tail) ---\n{}",
            client.name(),
            output.status,
            describe_failure(report.as_ref(), &stdout),
            tail(&stderr, 60),
        );
    }
    let report = report.unwrap_or_default();
    println!("{} {scenario}: passed in {:.1} s", client.name(), elapsed.as_secs_f64());
    for step in report["steps"].as_array().into_iter().flatten() {
        println!("  {:>6} ms  {}", step["ms"], step["step"].as_str().unwrap_or_default());
    }
    for (name, value) in report["figures"].as_object().into_iter().flatten() {
        println!("  figure {name} = {value}");
    }
    report
}

fn describe_failure(report: Option<&Value>, stdout: &str) -> String {
    let Some(report) = report else {
        return format!("no {RESULT_PREFIX}line on stdout; stdout (tail):\n{}", tail(stdout, 40));
    };
    let passed: Vec<&str> =
        report["steps"].as_array().into_iter().flatten().filter_map(|step| step["step"].as_str()).collect();
    let pretty = |value: &Value| serde_json::to_string_pretty(value).unwrap_or_default();
    format!(
        "passed steps: {passed:?}\nFAILED STEP: {}\nerror: {}\nthe client saw: {}\nHTTP answers that were not 2xx: {}",
        report["failed_step"].as_str().unwrap_or("?"),
        report["error"].as_str().unwrap_or("?"),
        pretty(&report["saw"]),
        pretty(&report["http_errors"]),
    )
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
