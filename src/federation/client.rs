//! The outbound federation client: any ruma federation request, to any server name, found by
//! the spec's discovery ([`super::discovery`]), over TLS (system roots plus
//! `federation.ca_file`), signed with `X-Matrix` (origin, destination, key, signature) when
//! the endpoint is authenticated.
//!
//! Each destination gets a connection pool of its own (a `reqwest::Client` pinned to the
//! addresses discovery found, with the name discovery settled on in the URL, so that SNI, the
//! certificate check and `Host` are what the spec says), kept for [`DESTINATION_TTL`] or until
//! a connection to it fails.

use super::discovery::{Destination, Resolver, read_limited};
use crate::config::Config;
use crate::net::OutboundClient;
use crate::net::ranges::is_non_public;
use crate::signing_key::SigningKey;
use ruma::api::auth_scheme::{AuthScheme, NoAuthentication};
use ruma::api::federation::authentication::{ServerSignatures, XMatrixSigningInput};
use ruma::api::path_builder::SinglePath;
use ruma::api::{IncomingResponseExt, OutgoingRequest, OutgoingRequestExt};
use ruma::signatures::Ed25519KeyPair;
use ruma::{OwnedServerName, ServerName};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a destination's discovery (and its connections) is reused.
const DESTINATION_TTL: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest response accepted from another server (a `send_join` answer of a large room
/// is the biggest thing federation sends).
const MAX_RESPONSE_BYTES: usize = 100 * 1024 * 1024;
/// The most of an error answer read (its errcode and message are all that is used).
const MAX_ERROR_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The destination is at a non-public address and private destinations are not allowed.
    #[error("refused: {0}")]
    Refused(String),
    /// The server name leads nowhere.
    #[error("server discovery failed: {0}")]
    Discovery(String),
    /// Connecting, TLS, sending or receiving failed (including timeouts).
    #[error("request failed: {0}")]
    Transport(String),
    /// The server answered with an error.
    #[error("{destination} answered {status}: {errcode} {message}")]
    Remote { destination: String, status: http::StatusCode, errcode: String, message: String },
    /// The server answered success with something that is not the endpoint's response.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The request could not be built (a bug, or unusable input).
    #[error("cannot build the request: {0}")]
    Request(String),
}

impl From<FederationError> for crate::error::Error {
    /// What a client learns when a federation request made on its behalf fails. The remote
    /// server's own refusals (a 4xx with an errcode of the spec's) keep their errcode and
    /// status: a 403 from the resident server is the client's 403, an unsupported room version
    /// stays one. Everything else — the server cannot be found or reached, fails itself (5xx),
    /// or answers what no Matrix server would (a bare 404, a body that is not the endpoint's
    /// response) — is a bad gateway (502), as for Synapse.
    fn from(error: FederationError) -> Self {
        if let FederationError::Remote { status, errcode, message, .. } = &error
            && status.is_client_error()
            && errcode != "M_UNKNOWN"
            && let Ok(body) = serde_json::from_value::<ruma::api::error::StandardErrorBody>(
                serde_json::json!({ "errcode": errcode, "error": message }),
            )
        {
            return crate::error::Error::new(body.kind, body.message);
        }
        crate::error::Error::bad_gateway(format!("Federation request failed: {error}"))
    }
}

/// The ruma authentication schemes the client can fill in.
pub trait FederationAuth: AuthScheme {
    fn input<'a>(origin: &ServerName, destination: &ServerName, key: &'a Ed25519KeyPair) -> Self::Input<'a>;
}

impl FederationAuth for ServerSignatures {
    fn input<'a>(origin: &ServerName, destination: &ServerName, key: &'a Ed25519KeyPair) -> XMatrixSigningInput<'a> {
        XMatrixSigningInput::new(origin.to_owned(), destination.to_owned(), key)
    }
}

impl FederationAuth for NoAuthentication {
    fn input(_: &ServerName, _: &ServerName, _: &Ed25519KeyPair) {}
}

/// Cheap to clone; clones share their connections.
#[derive(Clone)]
pub struct FederationClient(Arc<Inner>);

struct Inner {
    origin: OwnedServerName,
    key: Arc<SigningKey>,
    tls: rustls::ClientConfig,
    allow_private: bool,
    resolver: Resolver,
    destinations: Mutex<HashMap<OwnedServerName, Pinned>>,
}

/// A destination's discovery and the connection pool pinned to it.
#[derive(Clone)]
struct Pinned {
    destination: Destination,
    http: reqwest::Client,
    expires: Instant,
}

impl FederationClient {
    pub fn new(config: &Config, origin: OwnedServerName, key: Arc<SigningKey>) -> anyhow::Result<FederationClient> {
        let tls = super::tls::client_config(&config.federation)?;
        let well_known_http = OutboundClient::with_tls(&config.network, tls.clone())?;
        Ok(FederationClient(Arc::new(Inner {
            origin,
            key,
            tls,
            allow_private: config.network.allow_private_destinations,
            resolver: Resolver::new(well_known_http),
            destinations: Mutex::default(),
        })))
    }

    /// Sends `request` to `destination` and parses its answer. Requests of authenticated
    /// endpoints are signed (`X-Matrix` with `destination`).
    pub async fn send<R>(&self, destination: &ServerName, request: R) -> Result<R::IncomingResponse, FederationError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
        R::Authentication: FederationAuth,
    {
        let response = self.open(destination, request).await?;
        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let body = read_limited(response, MAX_RESPONSE_BYTES).await.map_err(FederationError::Transport)?;
        R::IncomingResponse::try_from_http_response(builder.body(body.as_slice()).map_err(invalid_response)?)
            .map_err(invalid_response)
    }

    /// Sends `request` to `destination` like [`FederationClient::send`], and hands back a
    /// successful answer with its body unread: for bodies too large to hold at once (media),
    /// which the caller streams and limits itself.
    pub async fn open<R>(&self, destination: &ServerName, request: R) -> Result<reqwest::Response, FederationError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
        R::Authentication: FederationAuth,
    {
        let pinned = self.pinned(destination).await?;
        let auth = <R::Authentication as FederationAuth>::input(&self.0.origin, destination, &self.0.key.key_pair);
        let http_request = request
            .try_into_http_request::<Vec<u8>>(&pinned.destination.base_url(), auth, ())
            .map_err(|error| FederationError::Request(error.to_string()))?;
        let request =
            reqwest::Request::try_from(http_request).map_err(|error| FederationError::Request(error.to_string()))?;
        self.execute(destination, &pinned, request).await
    }

    /// An unsigned `GET` of `path_and_query` on `destination`'s federation address: the
    /// client-server endpoints some servers answer there too (media before authenticated
    /// media), body unread as in [`FederationClient::open`].
    pub async fn open_unsigned_get(
        &self,
        destination: &ServerName,
        path_and_query: &str,
    ) -> Result<reqwest::Response, FederationError> {
        let pinned = self.pinned(destination).await?;
        let url = format!("{}{path_and_query}", pinned.destination.base_url());
        let request = pinned.http.get(url).build().map_err(|error| FederationError::Request(error.to_string()))?;
        self.execute(destination, &pinned, request).await
    }

    /// Sends a built request; an error answer is read (a little of it) into [`FederationError::Remote`].
    async fn execute(
        &self,
        destination: &ServerName,
        pinned: &Pinned,
        request: reqwest::Request,
    ) -> Result<reqwest::Response, FederationError> {
        let response = match pinned.http.execute(request).await {
            Ok(response) => response,
            Err(error) => {
                // The peer may have moved, or its connections gone stale: discover afresh.
                self.forget(destination);
                return Err(FederationError::Transport(describe(&error)));
            }
        };
        // Discovery only handed allowed addresses over; this holds should anything change that.
        if let Some(peer) = response.remote_addr()
            && !self.0.allow_private
            && is_non_public(peer.ip())
        {
            return Err(FederationError::Refused(peer.ip().to_string()));
        }
        let status = response.status();
        if !status.is_success() {
            let body = read_limited(response, MAX_ERROR_BYTES).await.unwrap_or_default();
            return Err(remote_error(destination, status, &body));
        }
        Ok(response)
    }

    /// Where `destination` is, discovered now or remembered.
    async fn pinned(&self, destination: &ServerName) -> Result<Pinned, FederationError> {
        let now = Instant::now();
        if let Some(pinned) = self.destinations().get(destination).filter(|pinned| pinned.expires > now) {
            return Ok(pinned.clone());
        }
        let found = self.0.resolver.resolve(destination).await?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(self.0.tls.clone())
            .resolve_to_addrs(&found.host, &found.addresses)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("Hearth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| FederationError::Request(error.to_string()))?;
        let pinned = Pinned { destination: found, http, expires: now + DESTINATION_TTL };
        let mut destinations = self.destinations();
        destinations.retain(|_, pinned| pinned.expires > now);
        destinations.insert(destination.to_owned(), pinned.clone());
        Ok(pinned)
    }

    fn forget(&self, destination: &ServerName) {
        self.destinations().remove(destination);
    }

    fn destinations(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedServerName, Pinned>> {
        self.0.destinations.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where requests to `destination` go (discovering it if needed); for diagnostics and tests.
    pub async fn discover(&self, destination: &ServerName) -> Result<Destination, FederationError> {
        Ok(self.pinned(destination).await?.destination)
    }

    /// The server name requests are signed as.
    pub fn origin(&self) -> &ServerName {
        &self.0.origin
    }
}

fn invalid_response(error: impl std::fmt::Display) -> FederationError {
    FederationError::InvalidResponse(error.to_string())
}

/// An error answer's errcode and message, if it has the spec's shape.
fn remote_error(destination: &ServerName, status: http::StatusCode, body: &[u8]) -> FederationError {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        errcode: Option<String>,
        error: Option<String>,
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let (errcode, message) = match parsed {
        Some(ErrorBody { errcode, error }) => {
            (errcode.unwrap_or_else(|| "M_UNKNOWN".to_owned()), error.unwrap_or_default())
        }
        None => ("M_UNKNOWN".to_owned(), String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()),
    };
    FederationError::Remote { destination: destination.to_string(), status, errcode, message }
}

/// A reqwest error with its causes (reqwest's own message hides the TLS or DNS reason).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
