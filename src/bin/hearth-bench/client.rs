//! A minimal client-server API client: JSON requests to one homeserver, where every answer
//! other than 2xx is an error that carries the server's own error body.

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::time::Duration;

/// Error bodies longer than this are cut, so that an HTML error page does not flood the
/// terminal.
const MAX_ERROR_BODY: usize = 2_000;

#[derive(Clone)]
pub struct MatrixClient {
    http: reqwest::Client,
    base: Url,
}

impl MatrixClient {
    pub fn new(base: Url) -> Result<MatrixClient> {
        MatrixClient::with_timeout(base, Duration::from_secs(120))
    }

    /// A client whose requests may take up to `timeout`: long enough for the longest
    /// long-poll a scenario holds. Connections are not pooled per host beyond what is in
    /// flight (reqwest's pool is unbounded), so thousands of concurrent long-polls each get
    /// their own connection, as thousands of real clients would.
    pub fn with_timeout(base: Url, timeout: Duration) -> Result<MatrixClient> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("hearth-bench/", env!("CARGO_PKG_VERSION")))
            // A server that is down answers at once; one that hangs must not hang the run.
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(MatrixClient { http, base })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The URL of `segments` below the base URL, each segment percent-encoded (room ids and
    /// transaction ids go into paths).
    pub fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow!("{} cannot be a base URL", self.base))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Checks that a Matrix server answers at the base URL before anything is measured, so
    /// that a wrong URL fails with a message about the URL rather than about registration.
    pub async fn check_reachable(&self) -> Result<()> {
        let url = self.url(&["_matrix", "client", "versions"])?;
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|error| anyhow!("cannot reach the homeserver at {}: {}", self.base, error_chain(&error)))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("{} does not look like a Matrix homeserver: GET {url} answered {status}: {}", self.base, cut(&body));
        }
        Ok(())
    }

    /// Sends a JSON request and returns the JSON answer; non-2xx answers are errors that name
    /// the request and show the server's body.
    pub async fn request(&self, method: Method, url: Url, token: Option<&str>, body: Option<&Value>) -> Result<Value> {
        let (status, answer) = self.request_status(method.clone(), url.clone(), token, body).await?;
        if !status.is_success() {
            bail!("{method} {} answered {status}: {}{}", url.path(), answer_text(&answer), hint(status));
        }
        Ok(answer)
    }

    /// Like `request`, but hands back any status with its body, for flows that continue after
    /// a non-2xx answer (user-interactive auth answers 401).
    pub async fn request_status(
        &self,
        method: Method,
        url: Url,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let (status, answer, _) = self.exchange(method, url, token, body).await?;
        Ok((status, answer))
    }

    /// Like `request`, also returning the size of the answer's body in bytes.
    pub async fn request_sized(
        &self,
        method: Method,
        url: Url,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(Value, usize)> {
        let (status, answer, size) = self.exchange(method.clone(), url.clone(), token, body).await?;
        if !status.is_success() {
            bail!("{method} {} answered {status}: {}{}", url.path(), answer_text(&answer), hint(status));
        }
        Ok((answer, size))
    }

    async fn exchange(
        &self,
        method: Method,
        url: Url,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value, usize)> {
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response =
            request.send().await.map_err(|error| anyhow!("{method} {} failed: {}", url.path(), error_chain(&error)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| anyhow!("{method} {}: reading the answer failed: {}", url.path(), error_chain(&error)))?;
        // A body that is not JSON (a proxy's HTML page) is kept as a string to be shown.
        let answer = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, answer, bytes.len()))
    }
}

/// The error and its causes on one line: reqwest's own message ("error sending request")
/// hides the reason (connection refused, DNS, TLS) in its sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub fn answer_text(answer: &Value) -> String {
    match answer {
        Value::String(text) if text.is_empty() => "(empty body)".to_owned(),
        Value::String(text) => cut(text),
        other => cut(&other.to_string()),
    }
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_BODY) {
        Some((index, _)) => format!("{}…", &text[..index]),
        None => text.to_owned(),
    }
}

/// What to do about the answers a misconfigured server under test typically gives.
fn hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::TOO_MANY_REQUESTS => " (the server rate-limits the run: disable its rate limits to measure it)",
        _ => "",
    }
}
