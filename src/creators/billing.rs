//! The operator's billing webhook: asked to charge each tip before the tip appears in its room
//! (docs/API.md, "Billing webhook"). The URL is the operator's own configuration, not a
//! user's choice, so it is called with a plain client (private addresses allowed).

use crate::config::TipsConfig;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;

/// What the webhook is sent for one tip. The idempotency key stays the same however often the
/// tip is asked about (retries, restarts), so the billing side charges it at most once.
#[derive(Serialize, Debug)]
pub struct ChargeRequest<'a> {
    pub idempotency_key: &'a str,
    pub tip_id: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub room_id: &'a str,
    pub amount: &'a str,
    pub currency: &'a str,
}

/// The webhook's verdict.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Approved {
        charge_id: String,
    },
    /// `billing_url` is where the member can fix their payment method, if the webhook says.
    Declined {
        billing_url: Option<String>,
    },
    /// No usable answer (down, slow, an error status, an unknown body): whether the charge
    /// happened is unknown, so the tip is asked again later with the same key.
    Failed(String),
}

#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Answer {
    Approved { charge_id: String },
    Declined { billing_url: Option<String> },
}

#[derive(Clone)]
pub struct BillingClient {
    url: String,
    secret: String,
    http: reqwest::Client,
}

impl BillingClient {
    /// The client `config` describes; `None` when tips are off (no `tips.billing_url`).
    pub fn from_config(config: &TipsConfig) -> anyhow::Result<Option<BillingClient>> {
        let Some(url) = config.billing_url.clone() else { return Ok(None) };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            // A redirect would re-send a signed charge somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let secret = config.billing_secret.clone().unwrap_or_default();
        Ok(Some(BillingClient { url, secret, http }))
    }

    /// Asks the webhook to charge one tip.
    pub async fn charge(&self, request: &ChargeRequest<'_>) -> Verdict {
        let body = match serde_json::to_vec(request) {
            Ok(body) => body,
            Err(error) => return Verdict::Failed(format!("cannot serialize the request: {error}")),
        };
        let sent = self
            .http
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("X-Hearth-Signature", signature(&self.secret, &body))
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) if error.is_timeout() => return Verdict::Failed("the billing webhook timed out".to_owned()),
            Err(error) => return Verdict::Failed(format!("the billing webhook cannot be reached: {error}")),
        };
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => return Verdict::Failed(format!("the billing webhook's answer broke off: {error}")),
        };
        if status != reqwest::StatusCode::OK {
            return Verdict::Failed(format!("the billing webhook answered {status}"));
        }
        match serde_json::from_slice::<Answer>(&bytes) {
            Ok(Answer::Approved { charge_id }) => Verdict::Approved { charge_id },
            Ok(Answer::Declined { billing_url }) => Verdict::Declined { billing_url },
            Err(error) => Verdict::Failed(format!("the billing webhook's answer is not understood: {error}")),
        }
    }
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
