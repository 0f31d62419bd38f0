//! Two (or more) Hearth servers federating over TLS on loopback, with certificates from a
//! test CA made here: each is named `localhost:<port>`, serves the federation API over TLS on
//! `127.0.0.1:<port>` (`federation.listen`), trusts the test CA (`federation.ca_file`) and may
//! reach loopback (`network.allow_private_destinations`). They find each other by the spec's
//! discovery alone: the explicit port in the server name.
//!
//! ```ignore
//! let pair = FederatedPair::start().await;
//! let (a, b) = (&pair.a, &pair.b);
//! a.server.register(...);                 // a TestServer: the client API of side A
//! a.state().federation.send(b.name(), request).await;
//! let b = pair.b.restart().await;         // same port, database and signing key
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use super::{TestServer, fresh_database, test_config};
use hearth::config::Config;
use hearth::signing_key::SigningKey;
use hearth::state::AppState;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use ruma::{OwnedServerName, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A test CA and one certificate for `localhost` and `127.0.0.1` signed by it, as PEM files.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("CA directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Hearth test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA certificate");
        let leaf_key = KeyPair::generate().expect("server key");
        let leaf_params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("names");
        let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("server certificate");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write CA");
        std::fs::write(dir.path().join("server.pem"), leaf.pem()).expect("write certificate");
        std::fs::write(dir.path().join("server.key"), leaf_key.serialize_pem()).expect("write key");
        TestCa { dir }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// One federating Hearth: its client API (`server`, a `TestServer`) and its federation
/// listener, stoppable and restartable on the same port, database and signing key.
pub struct FedServer {
    pub server: TestServer,
    pub port: u16,
    name: OwnedServerName,
    ca: Arc<TestCa>,
    data_dir: Arc<tempfile::TempDir>,
    adjust: Arc<dyn Fn(&mut Config) + Send + Sync>,
    tasks: Vec<JoinHandle<()>>,
}

impl FedServer {
    /// A new server with a fresh database, trusting `ca`.
    pub async fn start(ca: Arc<TestCa>) -> FedServer {
        Self::start_with(ca, |_| {}).await
    }

    /// [`FedServer::start`], with the configuration adjusted (kept across restarts).
    pub async fn start_with(ca: Arc<TestCa>, adjust: impl Fn(&mut Config) + Send + Sync + 'static) -> FedServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the federation port");
        let (database, pool) = fresh_database().await;
        let data_dir = Arc::new(tempfile::tempdir().expect("data directory"));
        Self::launch(ca, listener, database, pool, data_dir, Arc::new(adjust)).await
    }

    async fn launch(
        ca: Arc<TestCa>,
        federation_listener: TcpListener,
        database: String,
        pool: sqlx::PgPool,
        data_dir: Arc<tempfile::TempDir>,
        adjust: Arc<dyn Fn(&mut Config) + Send + Sync>,
    ) -> FedServer {
        let port = federation_listener.local_addr().expect("address").port();
        let name = OwnedServerName::try_from(format!("localhost:{port}")).expect("server name");
        let config = federation_config(&ca, &name, port, data_dir.path(), adjust.as_ref());
        let key = SigningKey::load_or_generate(&data_dir.path().join("signing.key")).expect("signing key");
        let state = AppState::new(config, pool, key).await.expect("state");
        let client_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the client port");
        let base_url = format!("http://{}", client_listener.local_addr().expect("address"));
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let (stop_all, stopping) = tokio::sync::watch::channel(false);
        let relay = tokio::spawn(async move {
            let _ = stop.await;
            let _ = stop_all.send(true);
        });
        let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        let client = tokio::spawn(hearth::server::serve_on(client_listener, state.clone(), stopped(stopping.clone())));
        let federation =
            tokio::spawn(hearth::server::serve_federation_on(federation_listener, state.clone(), stopped(stopping)));
        let tasks = vec![
            relay,
            tokio::spawn(async move {
                let _ = client.await;
            }),
            tokio::spawn(async move {
                if let Ok(Err(error)) = federation.await {
                    panic!("the federation listener failed: {error:#}");
                }
            }),
        ];
        let server = TestServer { base_url, database, state, http: reqwest::Client::new(), shutdown: Some(shutdown) };
        FedServer { server, port, name, ca, data_dir, adjust, tasks }
    }

    /// `localhost:<port>`.
    pub fn name(&self) -> &ServerName {
        &self.name
    }

    pub fn state(&self) -> &AppState {
        &self.server.state
    }

    /// `https://localhost:<port>`: where other servers reach this one.
    pub fn federation_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// Waits until this server holds the full state of every room it joined: a join through
    /// another server starts with a partial state, and a `/sync` that does not lazy-load
    /// members shows such a room only once it is whole. For tests about something else.
    pub async fn full_state(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let partial: i64 = sqlx::query_scalar("SELECT count(*) FROM partial_state_rooms")
                .fetch_one(&self.server.state.pool)
                .await
                .expect("count partial rooms");
            if partial == 0 {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{}: a partial-state room stayed partial", self.name);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (both listeners, its background work and pool), keeping what a
    /// restart needs.
    pub async fn stop(mut self) -> Stopped {
        if let Some(shutdown) = self.server.shutdown.take() {
            let _ = shutdown.send(());
        }
        for task in self.tasks.drain(..) {
            task.await.expect("a listener task");
        }
        self.server.state.shutdown().await;
        let database = self.server.database.clone();
        // Dropping the TestServer checks the events it left, as every test's server does.
        drop(self.server);
        Stopped { port: self.port, database, ca: self.ca, data_dir: self.data_dir, adjust: self.adjust }
    }

    /// Stops and starts again on the same port, database and signing key.
    pub async fn restart(self) -> FedServer {
        self.stop().await.start().await
    }
}

/// A stopped [`FedServer`]: its port, database, data directory (signing key) and settings.
pub struct Stopped {
    pub port: u16,
    pub database: String,
    ca: Arc<TestCa>,
    data_dir: Arc<tempfile::TempDir>,
    adjust: Arc<dyn Fn(&mut Config) + Send + Sync>,
}

impl Stopped {
    /// A pool on the stopped server's database, to change what it will find when it starts.
    pub async fn open_database(&self) -> sqlx::PgPool {
        let dir = super::cluster_dir();
        hearth::testing::db::open_pool(hearth::testing::db::embedded::connect_options(&dir, &self.database), 10)
            .await
            .expect("reopen the database")
    }

    /// Starts the server again as it was.
    pub async fn start(self) -> FedServer {
        let listener = rebind(self.port).await;
        let pool = self.open_database().await;
        FedServer::launch(self.ca, listener, self.database, pool, self.data_dir, self.adjust).await
    }

    /// Starts the server again with a new signing key (the old one becomes an old key).
    pub async fn start_with_new_key(self) -> FedServer {
        std::fs::remove_file(self.data_dir.path().join("signing.key")).expect("remove the signing key");
        self.start().await
    }
}

/// The port again (a closing listener may hold it for a moment).
async fn rebind(port: u16) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
            return listener;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("port {port} did not come free");
}

fn federation_config(
    ca: &TestCa,
    name: &ServerName,
    port: u16,
    data_dir: &Path,
    adjust: &(dyn Fn(&mut Config) + Send + Sync),
) -> Config {
    let mut config = test_config();
    config.server_name = name.to_string();
    config.data_dir = data_dir.to_owned();
    config.federation.listen = vec![format!("127.0.0.1:{port}")];
    config.federation.tls_cert = Some(ca.cert_file());
    config.federation.tls_key = Some(ca.key_file());
    config.federation.ca_file = Some(ca.ca_file());
    config.network.allow_private_destinations = true;
    adjust(&mut config);
    config.validate().expect("federation test configuration is valid");
    config
}

/// Two federating servers sharing one test CA.
pub struct FederatedPair {
    pub a: FedServer,
    pub b: FedServer,
    pub ca: Arc<TestCa>,
}

impl FederatedPair {
    pub async fn start() -> FederatedPair {
        let ca = Arc::new(TestCa::new());
        let (a, b) = tokio::join!(FedServer::start(ca.clone()), FedServer::start(ca.clone()));
        FederatedPair { a, b, ca }
    }
}

impl FederatedPair {
    /// `alice` on A and `bob` on B in a public room of A's that bob joined through A.
    pub async fn alice_and_bob_in_a_room(&self, password: &str) -> (super::TestUser, super::TestUser, String) {
        let alice = self.a.server.register("alice", password).await;
        let bob = self.b.server.register("bob", password).await;
        let room = self.a.server.create_room(&alice, serde_json::json!({"preset": "public_chat"})).await;
        let join =
            format!("/_matrix/client/v3/join/{}?via={}", super::encode(&room), super::encode(self.a.name().as_str()));
        let (status, body) = self.b.server.post(&join, bob.token(), serde_json::json!({})).await;
        assert_eq!(status, reqwest::StatusCode::OK, "bob joins through A: {body}");
        self.b.full_state().await;
        (alice, bob, room)
    }
}

/// An HTTP client that trusts the test CA, for requests a test makes to a federation listener
/// itself (as another server would).
pub fn https_client(ca: &TestCa) -> reqwest::Client {
    let pem = std::fs::read(ca.ca_file()).expect("read CA");
    let certificate = reqwest::Certificate::from_pem(&pem).expect("CA certificate");
    reqwest::Client::builder().tls_certs_only([certificate]).build().expect("client")
}
