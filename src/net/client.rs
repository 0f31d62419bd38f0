//! The one HTTP client for outbound requests whose destination a user can choose (push
//! gateways today; federation and URL previews later). Unless the operator sets
//! `network.allow_private_destinations`, it never connects to a non-public address
//! ([`super::ranges`]):
//!
//! - a URL whose host is an IP literal is judged before anything is sent;
//! - a host name is resolved by [`GuardedResolver`], which hands the connector only public
//!   addresses — the connector dials exactly what it is handed, so a name that resolves to a
//!   public address when checked and a private one when dialled (DNS rebinding) cannot slip
//!   through: there is only one resolution, and it is the checked one;
//! - the peer address of every response is checked again, as a last line should anything
//!   (a future proxy setting, a library change) route around the resolver;
//! - redirects are not followed (each hop would need the same checks, and push gateways and
//!   federation peers have no reason to redirect) and proxies from the environment are
//!   ignored (the proxy, not the destination, would be dialled).

use super::ranges::is_non_public;
use crate::config::NetworkConfig;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, RequestBuilder, Response, Url};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The destination is not a public address and private destinations are not allowed.
    #[error("refused to connect to a non-public address: {0}")]
    Refused(String),
    /// The URL cannot be requested at all.
    #[error("invalid destination URL: {0}")]
    InvalidUrl(String),
    /// Connecting, sending or receiving failed (including timeouts).
    #[error("request failed: {0}")]
    Transport(#[source] reqwest::Error),
}

#[derive(Clone)]
pub struct OutboundClient {
    http: reqwest::Client,
    allow_private: bool,
}

impl OutboundClient {
    pub fn new(config: &NetworkConfig) -> anyhow::Result<OutboundClient> {
        Self::build(config, None)
    }

    /// The same guarded client, verifying servers with `tls` (federation's roots, which may
    /// include `federation.ca_file`).
    pub fn with_tls(config: &NetworkConfig, tls: rustls::ClientConfig) -> anyhow::Result<OutboundClient> {
        Self::build(config, Some(tls))
    }

    fn build(config: &NetworkConfig, tls: Option<rustls::ClientConfig>) -> anyhow::Result<OutboundClient> {
        let allow_private = config.allow_private_destinations;
        let mut builder = reqwest::Client::builder();
        if let Some(tls) = tls {
            builder = builder.tls_backend_preconfigured(tls);
        }
        let http = builder
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("Hearth/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(OutboundClient { http, allow_private })
    }

    /// A request to `url`, once the checks that need no network have passed.
    pub fn request(&self, method: Method, url: &str) -> Result<RequestBuilder, OutboundError> {
        let url = Url::parse(url).map_err(|error| OutboundError::InvalidUrl(format!("{url:?}: {error}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::InvalidUrl(format!("{url}: only http and https can be requested")));
        }
        // Literal addresses never reach the resolver; judge them here. (`Url` has already
        // normalised forms like `0x7f.1` or `[::ffff:7f00:1]` into addresses.)
        let Some(host) = url.host_str() else {
            return Err(OutboundError::InvalidUrl(format!("{url}: no host")));
        };
        let unbracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(address) = unbracketed.parse::<IpAddr>() {
            self.judge(address)?;
        }
        Ok(self.http.request(method, url))
    }

    /// Sends a request made by [`OutboundClient::request`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, OutboundError> {
        let response = request.send().await.map_err(|error| match refusal_in(&error) {
            Some(refused) => OutboundError::Refused(refused),
            None => OutboundError::Transport(error),
        })?;
        if let Some(peer) = response.remote_addr() {
            self.judge(peer.ip())?;
        }
        Ok(response)
    }

    /// Whether requests may reach non-public addresses (`network.allow_private_destinations`).
    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    fn judge(&self, address: IpAddr) -> Result<(), OutboundError> {
        if !self.allow_private && is_non_public(address) {
            return Err(OutboundError::Refused(address.to_string()));
        }
        Ok(())
    }
}

/// The refusal (if any) that made the resolver fail, found in the error's source chain.
fn refusal_in(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<RefusedName>() {
            return Some(refused.to_string());
        }
        source = current.source();
    }
    None
}

/// A name that resolved only to addresses the client may not reach.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves only to non-public addresses ({addresses})")]
struct RefusedName {
    name: String,
    addresses: String,
}

/// The system resolver, with non-public answers removed.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let name = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: the connector puts the URL's port in.
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                resolved.iter().copied().filter(|address| allow_private || !is_non_public(address.ip())).collect();
            if allowed.is_empty() && !resolved.is_empty() {
                let addresses = resolved.iter().map(|address| address.ip().to_string()).collect::<Vec<_>>().join(", ");
                return Err(Box::new(RefusedName { name, addresses }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(allow_private: bool) -> OutboundClient {
        OutboundClient::new(&NetworkConfig { allow_private_destinations: allow_private }).expect("client")
    }

    #[test]
    fn literal_private_addresses_are_refused_before_connecting() {
        let guarded = client(false);
        for url in [
            "http://127.0.0.1:8080/_matrix/push/v1/notify",
            "http://[::1]/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://0x7f.1/x",
            "http://2130706433/x",
            "https://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/x",
            "http://[fd00::1]/x",
            "http://0.0.0.0/x",
        ] {
            assert!(matches!(guarded.request(Method::POST, url), Err(OutboundError::Refused(_))), "{url}");
        }
        assert!(guarded.request(Method::POST, "https://8.8.8.8/x").is_ok());
        assert!(client(true).request(Method::POST, "http://127.0.0.1:8080/x").is_ok());
    }

    #[test]
    fn only_http_urls_are_requested() {
        let guarded = client(true);
        for url in ["ftp://example.org/x", "file:///etc/passwd", "not a url", "unix:/run/socket"] {
            assert!(matches!(guarded.request(Method::GET, url), Err(OutboundError::InvalidUrl(_))), "{url}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_by_the_resolver() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let accepted = tokio::spawn(async move { listener.accept().await.is_ok() });
        let guarded = client(false);
        let request = guarded
            .request(Method::GET, &format!("http://localhost:{port}/"))
            .expect("a name passes the static checks");
        let error = guarded.send(request).await.expect_err("localhost is loopback");
        assert!(matches!(error, OutboundError::Refused(_)), "{error}");
        // Nothing connected: the listener is still waiting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!accepted.is_finished(), "the refused request must not have connected");
        accepted.abort();
    }
}
