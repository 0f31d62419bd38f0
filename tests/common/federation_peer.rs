//! A real federation peer for tests of what Hearth sends: a TLS server on loopback named
//! `localhost:<port>` (found by the spec's discovery: the explicit port), with a certificate
//! from the test CA, that serves `PUT /_matrix/federation/v1/send/{txnId}`, records every
//! transaction it gets, and answers as the test tells it. It can go down (stop listening:
//! connections are refused) and come back on the same port. It holds a signing key, so the
//! test can sign its users' membership events as a real server would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use super::federation::TestCa;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::put;
use hearth::config::FederationConfig;
use hearth::signing_key::SigningKey;
use reqwest::StatusCode;
use ruma::{OwnedServerName, ServerName};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How the peer answers the next transactions.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// 200 with no per-PDU errors.
    Accept,
    /// An HTTP error status (the transaction is to be sent again).
    Fail(StatusCode),
}

/// One transaction as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub txn_id: String,
    pub origin: String,
    pub pdus: Vec<Value>,
    /// The request carried an `X-Matrix` authorization naming this peer as destination.
    pub signed_for_us: bool,
    pub accepted: bool,
}

struct Shared {
    name: String,
    received: Mutex<Vec<Received>>,
    arrivals: watch::Sender<usize>,
    answer: Mutex<Answer>,
}

pub struct RecordingPeer {
    pub port: u16,
    pub key: SigningKey,
    name: OwnedServerName,
    ca: Arc<TestCa>,
    shared: Arc<Shared>,
    server: Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl RecordingPeer {
    pub async fn start(ca: Arc<TestCa>) -> RecordingPeer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let name = OwnedServerName::try_from(format!("localhost:{port}")).expect("server name");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            received: Mutex::new(Vec::new()),
            arrivals: watch::channel(0).0,
            answer: Mutex::new(Answer::Accept),
        });
        let mut peer =
            RecordingPeer { port, key: SigningKey::generate().expect("key"), name, ca, shared, server: None };
        peer.serve(listener);
        peer
    }

    pub fn name(&self) -> &ServerName {
        &self.name
    }

    pub fn answer(&self, answer: Answer) {
        *lock(&self.shared.answer) = answer;
    }

    /// Every transaction received so far, in order of arrival.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// The PDUs of the transactions answered with success, in order of arrival.
    pub fn accepted_pdus(&self) -> Vec<Value> {
        self.received().into_iter().filter(|txn| txn.accepted).flat_map(|txn| txn.pdus).collect()
    }

    /// Waits (up to a minute) until `done` holds of what has arrived; returns it.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let mut arrivals = self.shared.arrivals.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let received = self.received();
                if done(&received) {
                    return received;
                }
                arrivals.changed().await.expect("the peer is alive");
            }
        })
        .await;
        waited.unwrap_or_else(|_| panic!("waiting for {what}; the peer got: {:#?}", self.received()))
    }

    /// Stops listening: connections are refused until [`RecordingPeer::restart`].
    pub async fn stop(&mut self) {
        if let Some((shutdown, task)) = self.server.take() {
            let _ = shutdown.send(());
            task.await.expect("the peer's server task");
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut attempts = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(error) if attempts < 100 => {
                    attempts += 1;
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("rebinding port {}: {error}", self.port),
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let config = FederationConfig {
            tls_cert: Some(self.ca.cert_file()),
            tls_key: Some(self.ca.key_file()),
            ..FederationConfig::default()
        };
        let tls = hearth::testing::federation::tls::acceptor(&config).expect("TLS acceptor");
        let app = Router::new()
            .route("/_matrix/federation/v1/send/{txn_id}", put(transaction))
            .with_state(self.shared.clone());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            hearth::testing::http::serve::serve_with_tls(listener, tls, app, Duration::from_secs(10), async {
                let _ = stopped.await;
            })
            .await
            .expect("the peer serves");
        });
        self.server = Some((shutdown, task));
    }
}

async fn transaction(
    State(shared): State<Arc<Shared>>,
    Path(txn_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let authorization = headers.get("authorization").and_then(|value| value.to_str().ok()).unwrap_or_default();
    let signed_for_us =
        authorization.starts_with("X-Matrix ") && authorization.contains(&format!("destination=\"{}\"", shared.name));
    let answer = *lock(&shared.answer);
    let accepted = matches!(answer, Answer::Accept);
    lock(&shared.received).push(Received {
        txn_id,
        origin: body["origin"].as_str().unwrap_or_default().to_owned(),
        pdus: body["pdus"].as_array().cloned().unwrap_or_default(),
        signed_for_us,
        accepted,
    });
    shared.arrivals.send_modify(|count| *count += 1);
    match answer {
        Answer::Accept => (StatusCode::OK, axum::Json(json!({"pdus": {}}))),
        Answer::Fail(status) => (status, axum::Json(json!({"errcode": "M_UNKNOWN", "error": "told to fail"}))),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
