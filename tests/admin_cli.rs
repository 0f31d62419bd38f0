//! `hearth admin …`: the admin operations from the command line, run as an operator runs them
//! (the real binary, configured through the environment) against a running server's database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::process::{Command, Output, Stdio};

const PASSWORD: &str = "correct horse battery";

/// `hearth ARGS`, configured for `server`'s database (as its operator would, by environment).
fn command(server: &TestServer, data_dir: &std::path::Path, args: &[&str]) -> Command {
    let user = hearth::testing::db::embedded::SUPERUSER;
    let url = format!("postgres:///{}?host={}&user={user}", server.database, cluster_dir().display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
    for (name, _) in std::env::vars() {
        if name.starts_with("HEARTH_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .env("HEARTH_DATABASE__URL", url)
        .env("HEARTH_SERVER_NAME", SERVER_NAME)
        .env("HEARTH_DATA_DIR", data_dir)
        .stdin(Stdio::null());
    command
}

/// Runs `hearth ARGS` on `server`'s database; returns its output, which must be a success.
fn hearth(server: &TestServer, data_dir: &std::path::Path, args: &[&str]) -> String {
    let output: Output = command(server, data_dir, args).output().expect("run hearth");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "hearth {args:?} failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[tokio::test]
async fn the_operator_lists_promotes_locks_and_blocks_from_the_command_line() {
    let server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    let alice = server.register("alice", PASSWORD).await;
    let bob = server.register("bob", PASSWORD).await;
    let room = server.create_room(&alice, json!({"name": "Via the CLI", "preset": "public_chat"})).await;

    let listed = hearth(&server, data.path(), &["admin", "users"]);
    assert!(listed.contains("@alice:hearth.test") && listed.contains("@bob:hearth.test"), "{listed}");
    assert!(listed.contains("2 of 2 accounts"), "{listed}");

    // Alice, made an admin, reaches the admin API.
    assert_eq!(server.get("/_synapse/admin/v2/users", alice.token()).await.0, StatusCode::FORBIDDEN);
    hearth(&server, data.path(), &["admin", "set-admin", "alice"]);
    let (status, body) = server.get("/_synapse/admin/v2/users", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Bob, locked, is refused until unlocked.
    hearth(&server, data.path(), &["admin", "lock", "@bob:hearth.test"]);
    let response = server.get("/_matrix/client/v3/account/whoami", bob.token()).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_USER_LOCKED");
    hearth(&server, data.path(), &["admin", "lock", "bob", "--unlock"]);
    assert_eq!(server.get("/_matrix/client/v3/account/whoami", bob.token()).await.0, StatusCode::OK);

    let rooms = hearth(&server, data.path(), &["admin", "rooms", "--search", "cli"]);
    assert!(rooms.contains(&room) && rooms.contains("Via the CLI\t1 joined"), "{rooms}");

    // A blocked room refuses Bob's join.
    hearth(&server, data.path(), &["admin", "block-room", &room]);
    let join = server.post(&format!("/_matrix/client/v3/join/{}", encode(&room)), bob.token(), json!({})).await;
    assert_error(&join, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let (_, block) = server.get(&format!("/_synapse/admin/v1/rooms/{}/block", encode(&room)), alice.token()).await;
    assert_eq!(block, json!({"block": true, "user_id": "the operator"}));
    hearth(&server, data.path(), &["admin", "block-room", &room, "--unblock"]);
    server.join(&bob, &room).await;

    // A mistake is reported as one, naming the problem.
    let output = command(&server, data.path(), &["admin", "set-admin", "nobody"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("M_NOT_FOUND"), "{output:?}");
}

#[tokio::test]
async fn the_operator_makes_a_creator_and_takes_it_back() {
    let server = TestServer::start().await;
    let data = tempfile::tempdir().unwrap();
    server.register("carol", PASSWORD).await;
    let profile = "/_matrix/client/v3/profile/@carol:hearth.test";

    let said = hearth(&server, data.path(), &["user", "creator", "carol"]);
    assert!(said.contains("@carol:hearth.test is a creator"), "{said}");
    assert_eq!(server.get(profile, None).await.1["io.hearth.creator"], true);
    hearth(&server, data.path(), &["user", "creator", "@carol:hearth.test", "--off"]);
    let (_, after) = server.get(profile, None).await;
    assert!(after.get("io.hearth.creator").is_none(), "{after}");

    let output = command(&server, data.path(), &["user", "creator", "nobody"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("M_NOT_FOUND"), "{output:?}");
}
