//! A real billing webhook for tests: an HTTP/1.1 server on loopback that receives Hearth's
//! tip charges, checks their signature, keeps a ledger of charges by idempotency key (a retry
//! with a known key is answered with the charge it made, never a new one, as a real payment
//! provider does), and answers as the test tells it: approve, decline with a URL, stall, or
//! charge and then drop the connection before answering (a crash between charge and answer).
//! Written on raw TCP so it can do the last two.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const SECRET: &str = "billing-test-secret";

/// How the webhook answers the next requests.
#[derive(Clone, Debug)]
pub enum Mode {
    Approve,
    Decline(String),
    /// Answer nothing for this long, then approve (Hearth gives up first if it is longer
    /// than `tips.timeout_ms`).
    Stall(Duration),
    /// Record the charge, then close the connection without an answer.
    ChargeThenDrop,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub body: Value,
    /// Whether `X-Hearth-Signature` is the HMAC-SHA256 of the raw body under [`SECRET`].
    pub signed: bool,
}

#[derive(Default)]
struct Ledger {
    received: Vec<Received>,
    /// idempotency key -> charge id.
    charges: HashMap<String, String>,
}

pub struct Billing {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    ledger: Arc<Mutex<Ledger>>,
    task: tokio::task::JoinHandle<()>,
}

impl Billing {
    pub async fn start() -> Billing {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the billing webhook");
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(Mutex::new(Mode::Approve));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (serving_mode, serving_ledger) = (mode.clone(), ledger.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                tokio::spawn(serve(stream, serving_mode.clone(), serving_ledger.clone()));
            }
        });
        Billing { port, mode, ledger, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/charge", self.port)
    }

    /// Points a test configuration at this webhook.
    pub fn configure(&self, config: &mut hearth::config::Config) {
        config.tips.billing_url = Some(self.url());
        config.tips.billing_secret = Some(SECRET.to_owned());
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn received(&self) -> Vec<Received> {
        self.ledger.lock().unwrap().received.clone()
    }

    /// How many distinct charges were made.
    pub fn charges(&self) -> usize {
        self.ledger.lock().unwrap().charges.len()
    }
}

impl Drop for Billing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, mode: Arc<Mutex<Mode>>, ledger: Arc<Mutex<Ledger>>) {
    let Some((headers, body)) = read_request(&mut stream).await else { return };
    let signature = headers
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-hearth-signature").then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    let signed = signature == hearth::testing::creators::billing::signature(SECRET, &body);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key = request["idempotency_key"].as_str().unwrap_or_default().to_owned();
    let mode = mode.lock().unwrap().clone();
    {
        let mut ledger = ledger.lock().unwrap();
        ledger.received.push(Received { body: request, signed });
    }
    let charge = || {
        let mut ledger = ledger.lock().unwrap();
        let next = format!("ch_{}", ledger.charges.len() + 1);
        ledger.charges.entry(key.clone()).or_insert(next).clone()
    };
    let answer = match mode {
        Mode::Approve => json!({"status": "approved", "charge_id": charge()}),
        Mode::Decline(url) => json!({"status": "declined", "billing_url": url}),
        Mode::Stall(delay) => {
            tokio::time::sleep(delay).await;
            json!({"status": "approved", "charge_id": charge()})
        }
        Mode::ChargeThenDrop => {
            charge();
            return;
        }
    };
    let body = answer.to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The head (as text) and the body of one request (`Content-Length` framing, as Hearth sends).
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            let mut body = buffer[end + 4..].to_vec();
            while body.len() < length {
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                body.extend_from_slice(&chunk[..read]);
            }
            return Some((head, body));
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}
