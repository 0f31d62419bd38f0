//! Test harness (DESIGN §7): one throwaway PostgreSQL cluster per test binary, a fresh
//! database per test cloned from a migrated template, and Hearth served in-process on an
//! ephemeral port, driven over real HTTP.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

pub mod billing;
pub mod federation;
pub mod federation_peer;
pub mod install;
pub mod node;
pub mod ports;
pub mod push_gateway;
pub mod remote_pdus;
pub mod rng;
mod rooms;
pub mod statements;
pub mod synapse;
#[allow(unused_imports)] // not every test binary encodes, fills paths or sends text
pub use rooms::{encode, fill_path, inert_placeholder, message_bodies, message_ids, own_invite_member, text};

use hearth::config::Config;
use hearth::signing_key::SigningKey;
use hearth::state::AppState;
use hearth::testing::db::embedded::{ClusterOptions, RunningCluster, connect_options};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const SHARED_SECRET: &str = "test-shared-secret";
pub const SERVER_NAME: &str = "hearth.test";
const TEMPLATE: &str = "hearth_template";

struct Cluster {
    dir: PathBuf,
    _running: RunningCluster,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static TEMPLATE_READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
static DATABASE_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The binary's cluster, started on first use. It is never dropped: when the test process
/// exits, the postmaster's parent-death signal shuts it down.
fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        remove_stale_clusters();
        let dir = std::env::temp_dir().join(format!("hearth-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create cluster directory");
        let options = ClusterOptions {
            dir: dir.join("pg"),
            log_file: dir.join("postgres.log"),
            settings: [
                ("fsync", "off"),
                ("synchronous_commit", "off"),
                ("full_page_writes", "off"),
                ("max_connections", "400"),
                ("shared_buffers", "64MB"),
                // For tests that count the statements a request costs (send_round_trips).
                ("shared_preload_libraries", "pg_stat_statements"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        let running = RunningCluster::start(&options).expect("start the test PostgreSQL cluster");
        Cluster { dir: dir.join("pg"), _running: running }
    })
}

/// Clusters of test processes that have exited are left behind; remove them.
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("hearth-test-")).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub async fn admin_connection() -> PgConnection {
    PgConnection::connect_with(&connect_options(&cluster().dir, "postgres")).await.expect("connect to the test cluster")
}

/// The test cluster's directory (its unix socket lives there), for tests that open more
/// pools on a test's database, e.g. to run a second Hearth on it. Starts the cluster on first
/// use (blocking), so call it after a `TestServer` or `fresh_database` has.
pub fn cluster_dir() -> PathBuf {
    cluster().dir.clone()
}

/// A fresh, migrated database for one test.
pub async fn fresh_database() -> (String, PgPool) {
    let dir = tokio::task::spawn_blocking(|| cluster().dir.clone()).await.expect("cluster thread");
    TEMPLATE_READY
        .get_or_init(|| async {
            hearth::testing::db::ensure_database(connect_options(&dir, "postgres"), TEMPLATE)
                .await
                .expect("template database");
            let pool =
                hearth::testing::db::open_pool(connect_options(&dir, TEMPLATE), 2).await.expect("migrate template");
            pool.close().await;
        })
        .await;
    let name = format!("test_{}", DATABASE_COUNTER.fetch_add(1, Ordering::SeqCst));
    let mut admin = admin_connection().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    admin.close().await.ok();
    let pool = hearth::testing::db::open_pool(connect_options(&dir, &name), 10).await.expect("open test database");
    (name, pool)
}

/// The configuration tests start from: registration open, shared secret set, no rate limits.
pub fn test_config() -> Config {
    let mut config = Config {
        server_name: SERVER_NAME.to_owned(),
        listen: vec!["127.0.0.1:0".to_owned()],
        data_dir: std::env::temp_dir().join("hearth-test-unused-data-dir"),
        ..Config::default()
    };
    config.registration.enabled = true;
    config.registration.shared_secret = Some(SHARED_SECRET.to_owned());
    config.rate_limits.enabled = false;
    config
}

/// Hearth running in-process against its own fresh database.
pub struct TestServer {
    pub base_url: String,
    /// This test's database, checked when the server is dropped (see `Drop`).
    pub database: String,
    pub state: AppState,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = test_config();
        adjust(&mut config);
        config.validate().expect("test configuration is valid");
        let (database, pool) = fresh_database().await;
        let state = AppState::new(config, pool, SigningKey::generate().expect("key")).await.expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        tokio::spawn(async move {
            let _ = hearth::server::serve_on(listener, served, async {
                let _ = stop.await;
            })
            .await;
        });
        TestServer { base_url, database, state, http: reqwest::Client::new(), shutdown: Some(shutdown) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a request and returns the status and the JSON body (`Value::Null` if the body
    /// is not JSON).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        send_json(&self.http, method, &self.url(path), token, body).await
    }

    /// Sends raw bytes as the body (for malformed-input tests).
    pub async fn request_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request =
            self.http.request(method, self.url(path)).body(body).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status();
        let bytes = response.bytes().await.expect("response body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        self.request(Method::DELETE, path, token, body).await
    }

    /// Registers through open registration (`m.login.dummy`), as a client would.
    pub async fn register(&self, username: &str, password: &str) -> TestUser {
        let (status, body) = self
            .post(
                "/_matrix/client/v3/register",
                None,
                json!({"username": username, "password": password, "auth": {"type": "m.login.dummy"}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "registration of {username} failed: {body}");
        TestUser::from_response(&body, password)
    }

    /// Creates a server admin's account (as an operator does, with `hearth user create --admin`)
    /// and logs it in.
    pub async fn register_admin(&self, localpart: &str, password: &str) -> TestUser {
        hearth::testing::users::accounts::create_account(
            &self.state.pool,
            &self.state.server_name,
            localpart,
            password,
            true,
        )
        .await
        .expect("create the admin account");
        self.login(localpart, password).await
    }

    /// Logs in with a password and returns the new session.
    pub async fn login(&self, user: &str, password: &str) -> TestUser {
        let (status, body) = self
            .post(
                "/_matrix/client/v3/login",
                None,
                json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login of {user} failed: {body}");
        TestUser::from_response(&body, password)
    }

    /// Runs SQL against this server's database (for asserting that nothing changed).
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&self.state.pool).await.expect("count query")
    }
}

impl Drop for TestServer {
    /// Stops the server, then checks every event the test left in its database as a
    /// federating server would (format, event id, hashes, signature, auth_events selection):
    /// whatever a test did, the DAG it leaves must be valid.
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if std::thread::panicking() {
            return;
        }
        let database = self.database.clone();
        let server_name = self.state.server_name.clone();
        let key_id = self.state.signing_key.key_id();
        let public_key = self.state.signing_key.public_key_base64();
        // Drop cannot await, and the test's runtime is ending: verify on a thread of our own.
        let problems = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let options = connect_options(&cluster().dir, &database);
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await
                    .expect("connect");
                let problems = hearth::testing::rooms::verify::verify_all_events(
                    &pool.clone().into(),
                    &server_name,
                    &key_id,
                    &public_key,
                )
                .await
                .expect("verification runs");
                pool.close().await;
                problems
            })
        })
        .join()
        .expect("verification thread");
        assert!(problems.is_empty(), "stored events fail verification:\n{}", problems.join("\n"));
    }
}

#[derive(Clone, Debug)]
pub struct TestUser {
    pub user_id: String,
    pub access_token: String,
    pub device_id: String,
    pub password: String,
}

impl TestUser {
    pub fn from_response(body: &Value, password: &str) -> TestUser {
        TestUser {
            user_id: body["user_id"].as_str().expect("user_id").to_owned(),
            access_token: body["access_token"].as_str().expect("access_token").to_owned(),
            device_id: body["device_id"].as_str().expect("device_id").to_owned(),
            password: password.to_owned(),
        }
    }

    pub fn token(&self) -> Option<&str> {
        Some(&self.access_token)
    }

    /// `auth` for a `m.login.password` UIA stage.
    pub fn password_auth(&self, session: &str) -> Value {
        json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": self.user_id},
            "password": self.password,
            "session": session,
        })
    }
}

/// Sends a request with an optional bearer token and JSON body; returns the status and the
/// JSON body (`Value::Null` if the body is not JSON).
pub async fn send_json(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = client.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request reaches the server");
    let status = response.status();
    let bytes = response.bytes().await.expect("response body");
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Asserts a Matrix error response.
#[track_caller]
pub fn assert_error(response: &(StatusCode, Value), status: StatusCode, errcode: &str) {
    assert_eq!(response.0, status, "unexpected status; body: {}", response.1);
    assert_eq!(response.1["errcode"], errcode, "unexpected errcode; body: {}", response.1);
    assert!(response.1["error"].is_string(), "error responses carry a message: {}", response.1);
}

/// `bytes` of text that does not compress (PostgreSQL compresses long values before it checks
/// its index row limit of about 2.7 KB, so a repeated letter would slip under it).
pub fn incompressible(bytes: usize) -> String {
    let mut text = String::new();
    while text.len() < bytes {
        text.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    text.truncate(bytes);
    text
}
