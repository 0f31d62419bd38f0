//! A real push gateway for tests: an HTTP server on loopback that serves
//! `POST /_matrix/push/v1/notify`, records every body it receives, and answers as the test
//! tells it (accept, fail, reject pushkeys, or take its time). It can go down (stop
//! listening: connections are refused) and come back on the same port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";

/// How the gateway answers the next requests.
#[derive(Clone, Debug)]
pub enum Answer {
    Accept,
    /// An HTTP error status.
    Fail(StatusCode),
    /// 200 with these pushkeys in `rejected`.
    Reject(Vec<String>),
    /// Accept, after this long.
    Slowly(Duration),
}

struct Shared {
    received: Mutex<Vec<Value>>,
    /// The bodies answered with success (accepted or with rejected pushkeys).
    accepted: Mutex<Vec<Value>>,
    /// How many requests have arrived (moves before the answer is sent).
    arrivals: watch::Sender<usize>,
    answer: Mutex<Answer>,
}

pub struct PushGateway {
    pub port: u16,
    shared: Arc<Shared>,
    server: Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl PushGateway {
    pub async fn start() -> PushGateway {
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            accepted: Mutex::new(Vec::new()),
            arrivals: watch::channel(0).0,
            answer: Mutex::new(Answer::Accept),
        });
        let mut gateway = PushGateway { port: 0, shared, server: None };
        gateway.listen().await;
        gateway
    }

    /// The URL a pusher's `data.url` names.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{NOTIFY_PATH}", self.port)
    }

    pub fn answer(&self, answer: Answer) {
        *lock(&self.shared.answer) = answer;
    }

    /// Every notification body received so far, in order of arrival.
    pub fn received(&self) -> Vec<Value> {
        lock(&self.shared.received).clone()
    }

    /// The notification bodies the gateway answered with success, in order.
    pub fn accepted(&self) -> Vec<Value> {
        lock(&self.shared.accepted).clone()
    }

    /// Waits until at least `count` requests have arrived; returns all received.
    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        let mut arrivals = self.shared.arrivals.subscribe();
        let waited =
            tokio::time::timeout(Duration::from_secs(30), arrivals.wait_for(|arrived| *arrived >= count)).await;
        assert!(
            waited.is_ok(),
            "the gateway got {} of {count} notifications in 30 s: {:#?}",
            self.received().len(),
            self.received()
        );
        self.received()
    }

    /// Waits until a notification for `event_id` has arrived; returns all received.
    pub async fn wait_for_event(&self, event_id: &str) -> Vec<Value> {
        let mut arrivals = self.shared.arrivals.subscribe();
        let shared = self.shared.clone();
        let arrived = move || lock(&shared.received).iter().any(|body| body["notification"]["event_id"] == event_id);
        let waited = tokio::time::timeout(Duration::from_secs(30), arrivals.wait_for(|_| arrived())).await;
        assert!(waited.is_ok(), "no notification for {event_id} in 30 s: {:#?}", self.received());
        self.received()
    }

    /// Stops listening: further connections are refused until [`PushGateway::restart`].
    pub async fn stop(&mut self) {
        if let Some((shutdown, server)) = self.server.take() {
            let _ = shutdown.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
    }

    /// Listens again, on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.listen().await;
    }

    async fn listen(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.expect("bind the push gateway");
        self.port = listener.local_addr().expect("address").port();
        let app = Router::new().route(NOTIFY_PATH, post(notify)).with_state(self.shared.clone());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        self.server = Some((shutdown, server));
    }
}

impl Drop for PushGateway {
    fn drop(&mut self) {
        if let Some((shutdown, _)) = self.server.take() {
            let _ = shutdown.send(());
        }
    }
}

async fn notify(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> (StatusCode, axum::Json<Value>) {
    let body: Value =
        serde_json::from_slice(&body).unwrap_or_else(|_| json!({"unparseable": String::from_utf8_lossy(&body)}));
    lock(&shared.received).push(body.clone());
    shared.arrivals.send_modify(|arrived| *arrived += 1);
    let answer = lock(&shared.answer).clone();
    if !matches!(answer, Answer::Fail(_)) {
        lock(&shared.accepted).push(body);
    }
    match answer {
        Answer::Accept => (StatusCode::OK, axum::Json(json!({"rejected": []}))),
        Answer::Fail(status) => (status, axum::Json(json!({"error": "the gateway is failing"}))),
        Answer::Reject(pushkeys) => (StatusCode::OK, axum::Json(json!({"rejected": pushkeys}))),
        Answer::Slowly(delay) => {
            tokio::time::sleep(delay).await;
            (StatusCode::OK, axum::Json(json!({"rejected": []})))
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
