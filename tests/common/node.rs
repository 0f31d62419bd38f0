//! More Hearth processes on one test database: a `Node` is its own `AppState` (notifier,
//! stream tracker, caches, push sender) and pool, served on its own port — as far as a test
//! can tell, another process. Stopping one and starting another on the same database is a
//! restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use super::{send_json, test_config};
use hearth::config::Config;
use hearth::signing_key::SigningKey;
use hearth::state::AppState;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// Talking to a Hearth: the harness's `TestServer`, or a `Node`.
pub trait Api {
    fn base(&self) -> &str;
    fn client(&self) -> &reqwest::Client;

    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        send_json(self.client(), method, &format!("{}{path}", self.base()), token, body).await
    }
}

impl Api for super::TestServer {
    fn base(&self) -> &str {
        &self.base_url
    }
    fn client(&self) -> &reqwest::Client {
        &self.http
    }
}

/// Registers `username` through `api` (open registration, dummy auth).
pub async fn register_through(api: &impl Api, username: &str, password: &str) -> super::TestUser {
    let body = serde_json::json!({"username": username, "password": password, "auth": {"type": "m.login.dummy"}});
    let (status, body) = api.call(Method::POST, "/_matrix/client/v3/register", None, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "registration of {username} failed: {body}");
    super::TestUser::from_response(&body, password)
}

pub struct Node {
    pub base_url: String,
    pub http: reqwest::Client,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Api for Node {
    fn base(&self) -> &str {
        &self.base_url
    }
    fn client(&self) -> &reqwest::Client {
        &self.http
    }
}

/// Starts a Hearth on `database` (already migrated) as `TestServer::start_with` does.
pub async fn start_node(database: &str, key: SigningKey) -> Node {
    start_node_with(database, key, |_| {}).await
}

/// [`start_node`] with the test configuration adjusted.
pub async fn start_node_with(database: &str, key: SigningKey, adjust: impl FnOnce(&mut Config)) -> Node {
    start_node_with_pool(database, key, 5, adjust).await
}

/// [`start_node_with`] with a pool of `connections` (a test of concurrent work needs more).
pub async fn start_node_with_pool(
    database: &str,
    key: SigningKey,
    connections: u32,
    adjust: impl FnOnce(&mut Config),
) -> Node {
    let dir = super::cluster_dir();
    let pool =
        hearth::testing::db::open_pool(hearth::testing::db::embedded::connect_options(&dir, database), connections)
            .await
            .expect("open a pool on the test database");
    let mut config = test_config();
    adjust(&mut config);
    config.validate().expect("test configuration is valid");
    let state = AppState::new(config, pool, key).await.expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base_url = format!("http://{}", listener.local_addr().expect("address"));
    let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
    let served = state.clone();
    let served = tokio::spawn(async move {
        let _ = hearth::server::serve_on(listener, served, async {
            let _ = stop.await;
        })
        .await;
    });
    Node { base_url, http: reqwest::Client::new(), state, shutdown: Some(shutdown), served: Some(served) }
}

impl Node {
    /// Stops as `hearth serve` does: stops serving, lets in-flight requests finish, lets push
    /// deliveries in flight record their progress, and closes the pool: the process is gone.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), served).await;
        }
        self.state.shutdown().await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
