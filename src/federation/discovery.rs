//! Finding where a server name is served (spec: server-server API, "Resolving server names").
//!
//! In the spec's order:
//! 1. an IP literal is used as it is (port 8448 unless given);
//! 2. a host name with an explicit port: its address records, that port;
//! 3. otherwise `https://<hostname>/.well-known/matrix/server` may delegate to another name
//!    (`m.server`), which is then resolved as an IP literal, with its explicit port, through
//!    SRV `_matrix-fed._tcp` then the deprecated `_matrix._tcp`, or on port 8448;
//! 4. without delegation: SRV `_matrix-fed._tcp.<hostname>`, `_matrix._tcp.<hostname>`, then
//!    `<hostname>:8448`.
//!
//! Whatever the route, the certificate must be valid for (and SNI names) the host name the
//! steps stopped at — the delegated one if there was delegation, never an SRV target — and
//! the `Host` header is that name with the port only if one was explicit. [`Destination`]
//! carries exactly that: the name (put in the URL, hence in SNI, the certificate check and
//! `Host`) and the addresses to dial.
//!
//! Every address is checked against `network.allow_private_destinations` before anything is
//! dialled, and the well-known request goes through the same guarded client as push.

use super::client::FederationError;
use crate::net::OutboundClient;
use crate::net::ranges::is_non_public;
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use http::HeaderMap;
use ruma::{OwnedServerName, ServerName};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) const DEFAULT_PORT: u16 = 8448;
/// The spec's recommended default cache time for a well-known answer without cache headers.
const WELL_KNOWN_DEFAULT_CACHE: Duration = Duration::from_secs(24 * 3600);
/// The spec's recommended upper bound on caching a well-known answer.
const WELL_KNOWN_MAX_CACHE: Duration = Duration::from_secs(48 * 3600);
/// How long a failed well-known lookup is remembered (the spec: "up to an hour").
const WELL_KNOWN_ERROR_CACHE: Duration = Duration::from_secs(3600);
/// A well-known document larger than this is not a well-known document.
const WELL_KNOWN_MAX_BYTES: usize = 64 * 1024;
const WELL_KNOWN_MAX_REDIRECTS: usize = 5;

/// Where to send requests for one server name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// `host` or `host:port` (IPv6 in brackets): the URL's authority, and so the `Host`
    /// header; its host part is what SNI names and the certificate must be valid for.
    pub authority: String,
    /// The host part of `authority`, without brackets: the name the addresses stand for.
    pub host: String,
    /// Where to connect, in the order to try.
    pub addresses: Vec<SocketAddr>,
}

impl Destination {
    pub fn base_url(&self) -> String {
        format!("https://{}", self.authority)
    }
}

/// What a server name says by itself, before any lookup.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NameForm {
    /// An IP literal: connect there (the authority keeps the port only if given).
    Literal { address: SocketAddr, authority: String },
    /// A host name with an explicit port: resolve its address records.
    HostWithPort { host: String, port: u16 },
    /// A bare host name: well-known, then SRV, then port 8448.
    Host(String),
}

/// Classifies a server name (steps 1 and 2 of the spec, and the start of 3).
pub(crate) fn name_form(name: &ServerName) -> NameForm {
    let host = name.host();
    let unbracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        // An IP literal without a port is dialled on 8448; the URL then needs the port, or
        // the client would dial 443, so the authority carries it either way.
        let port = name.port().unwrap_or(DEFAULT_PORT);
        let authority = match ip {
            IpAddr::V4(_) => format!("{ip}:{port}"),
            IpAddr::V6(_) => format!("[{ip}]:{port}"),
        };
        return NameForm::Literal { address: SocketAddr::new(ip, port), authority };
    }
    match name.port() {
        Some(port) => NameForm::HostWithPort { host: host.to_ascii_lowercase(), port },
        None => NameForm::Host(host.to_ascii_lowercase()),
    }
}

/// The delegated server name of a well-known answer, if it is a valid one.
pub(crate) fn parse_well_known(body: &[u8]) -> Option<OwnedServerName> {
    #[derive(serde::Deserialize)]
    struct WellKnown {
        #[serde(rename = "m.server")]
        server: String,
    }
    let parsed: WellKnown = serde_json::from_slice(body).ok()?;
    OwnedServerName::try_from(parsed.server.as_str()).ok()
}

/// How long a successful well-known answer may be cached, from its headers: `Cache-Control`
/// `max-age` (or `Expires` is not read: `max-age` is what servers send), none at all for
/// `no-store` / `no-cache`, 24 hours without a header, never more than 48 hours.
pub(crate) fn well_known_cache_period(headers: &HeaderMap) -> Duration {
    let directives: Vec<String> = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|directive| directive.trim().to_ascii_lowercase())
        .collect();
    if directives.iter().any(|d| d == "no-store" || d == "no-cache") {
        return Duration::ZERO;
    }
    let max_age = directives
        .iter()
        .filter_map(|d| d.strip_prefix("max-age="))
        .find_map(|seconds| seconds.trim_matches('"').parse::<u64>().ok());
    match max_age {
        Some(seconds) => Duration::from_secs(seconds).min(WELL_KNOWN_MAX_CACHE),
        None => WELL_KNOWN_DEFAULT_CACHE,
    }
}

/// Remembered well-known outcomes per host name: the delegated name, or `None` when the host
/// had no (usable) well-known answer.
#[derive(Default)]
pub(crate) struct WellKnownCache {
    entries: Mutex<HashMap<String, (Option<OwnedServerName>, Instant)>>,
}

impl WellKnownCache {
    /// `Some(outcome)` while a remembered outcome is fresh.
    pub(crate) fn get(&self, host: &str, now: Instant) -> Option<Option<OwnedServerName>> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(host).filter(|(_, expires)| *expires > now).map(|(outcome, _)| outcome.clone())
    }

    pub(crate) fn put(&self, host: &str, outcome: Option<OwnedServerName>, period: Duration, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.retain(|_, (_, expires)| *expires > now);
        if !period.is_zero() {
            entries.insert(host.to_owned(), (outcome, now + period));
        }
    }
}

/// Resolves server names; shared by every federation request.
pub(crate) struct Resolver {
    /// For SRV; `None` when the system has no usable resolver configuration (then SRV steps
    /// find nothing and the port-8448 fallback applies).
    dns: Option<TokioResolver>,
    well_known_http: OutboundClient,
    well_known: WellKnownCache,
}

impl Resolver {
    pub(crate) fn new(well_known_http: OutboundClient) -> Resolver {
        let dns = match TokioResolver::builder_tokio() {
            Ok(builder) => Some(builder.build()),
            Err(error) => {
                tracing::warn!(%error, "no DNS resolver configuration: SRV records will not be used for federation");
                None
            }
        }
        .and_then(|built| match built {
            Ok(resolver) => Some(resolver),
            Err(error) => {
                tracing::warn!(%error, "cannot start the DNS resolver: SRV records will not be used for federation");
                None
            }
        });
        Resolver { dns, well_known_http, well_known: WellKnownCache::default() }
    }

    pub(crate) async fn resolve(&self, name: &ServerName) -> Result<Destination, FederationError> {
        let host = match name_form(name) {
            NameForm::Literal { address, authority } => return self.literal(address, authority),
            NameForm::HostWithPort { host, port } => return self.host_with_port(host, port).await,
            NameForm::Host(host) => host,
        };
        if let Some(delegated) = self.well_known(&host).await {
            return match name_form(&delegated) {
                NameForm::Literal { address, authority } => self.literal(address, authority),
                NameForm::HostWithPort { host, port } => self.host_with_port(host, port).await,
                NameForm::Host(delegated_host) => self.srv_or_default(delegated_host).await,
            };
        }
        self.srv_or_default(host).await
    }

    fn literal(&self, address: SocketAddr, authority: String) -> Result<Destination, FederationError> {
        let addresses = self.allowed(vec![address], &authority)?;
        Ok(Destination { host: address.ip().to_string(), authority, addresses })
    }

    async fn host_with_port(&self, host: String, port: u16) -> Result<Destination, FederationError> {
        let addresses = lookup(&host, port).await?;
        let authority = format!("{host}:{port}");
        let addresses = self.allowed(addresses, &authority)?;
        Ok(Destination { authority, host, addresses })
    }

    /// SRV `_matrix-fed._tcp`, then `_matrix._tcp`, then port 8448; `Host` is the bare name.
    async fn srv_or_default(&self, host: String) -> Result<Destination, FederationError> {
        let mut targets = Vec::new();
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            targets = self.srv(&format!("{service}.{host}.")).await;
            if !targets.is_empty() {
                break;
            }
        }
        let mut addresses = Vec::new();
        if targets.is_empty() {
            addresses = lookup(&host, DEFAULT_PORT).await?;
        } else {
            for (target, port) in targets {
                match lookup(&target, port).await {
                    Ok(found) => addresses.extend(found),
                    Err(error) => tracing::debug!(%target, %error, "an SRV target does not resolve"),
                }
            }
            if addresses.is_empty() {
                return Err(FederationError::Discovery(format!("no SRV target of {host} resolves")));
            }
        }
        let addresses = self.allowed(addresses, &host)?;
        Ok(Destination { authority: host.clone(), host, addresses })
    }

    /// SRV targets by priority (weights are not randomised: every target is tried in turn).
    async fn srv(&self, query: &str) -> Vec<(String, u16)> {
        let Some(dns) = &self.dns else { return Vec::new() };
        let Ok(lookup) = dns.srv_lookup(query).await else { return Vec::new() };
        let mut records: Vec<(u16, u16, String, u16)> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => {
                    let target = srv.target.to_ascii();
                    let target = target.trim_end_matches('.').to_owned();
                    // "." as the target means the service is decidedly not available.
                    (!target.is_empty()).then_some((srv.priority, u16::MAX - srv.weight, target, srv.port))
                }
                _ => None,
            })
            .collect();
        records.sort();
        records.into_iter().map(|(_, _, target, port)| (target, port)).collect()
    }

    /// The delegated name from `https://<host>/.well-known/matrix/server`, cached as the spec
    /// recommends (failures too, so an unreachable server is not asked on every request).
    async fn well_known(&self, host: &str) -> Option<OwnedServerName> {
        let now = Instant::now();
        if let Some(outcome) = self.well_known.get(host, now) {
            return outcome;
        }
        let (outcome, period) = match self.fetch_well_known(host).await {
            Ok((delegated, period)) => (Some(delegated), period),
            Err(why) => {
                tracing::debug!(%host, %why, "no usable /.well-known/matrix/server");
                (None, WELL_KNOWN_ERROR_CACHE)
            }
        };
        self.well_known.put(host, outcome.clone(), period, now);
        outcome
    }

    async fn fetch_well_known(&self, host: &str) -> Result<(OwnedServerName, Duration), String> {
        let mut url = format!("https://{host}/.well-known/matrix/server");
        for _ in 0..=WELL_KNOWN_MAX_REDIRECTS {
            let request = self.well_known_http.request(reqwest::Method::GET, &url).map_err(|e| e.to_string())?;
            let response = self.well_known_http.send(request).await.map_err(|e| e.to_string())?;
            if response.status().is_redirection() {
                // Each hop goes through the same guarded client, so the checks apply again.
                let location = response
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .ok_or("a redirect without a location")?;
                url = reqwest::Url::parse(&url)
                    .and_then(|base| base.join(location))
                    .map_err(|error| format!("bad redirect: {error}"))?
                    .to_string();
                continue;
            }
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()));
            }
            let period = well_known_cache_period(response.headers());
            let body = read_limited(response, WELL_KNOWN_MAX_BYTES).await?;
            let delegated = parse_well_known(&body).ok_or("not a well-known document")?;
            return Ok((delegated, period));
        }
        Err("too many redirects".to_owned())
    }

    /// Keeps the addresses the configuration allows; none left is a refusal.
    fn allowed(&self, addresses: Vec<SocketAddr>, name: &str) -> Result<Vec<SocketAddr>, FederationError> {
        if self.well_known_http.allows_private() {
            return Ok(addresses);
        }
        let allowed: Vec<SocketAddr> = addresses.iter().copied().filter(|a| !is_non_public(a.ip())).collect();
        if allowed.is_empty() {
            let listed = addresses.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ");
            return Err(FederationError::Refused(format!("{name} is at non-public addresses only ({listed})")));
        }
        Ok(allowed)
    }
}

/// A host's address records (the system resolver: `/etc/hosts` counts), with `port`.
async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, FederationError> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|error| FederationError::Discovery(format!("{host} does not resolve: {error}")))?
        .collect();
    if found.is_empty() {
        return Err(FederationError::Discovery(format!("{host} has no addresses")));
    }
    Ok(found)
}

/// A response body of at most `limit` bytes.
pub(crate) async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| error.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the response is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn form(name: &str) -> NameForm {
        name_form(&OwnedServerName::try_from(name).expect("a server name"))
    }

    #[test]
    fn an_ip_literal_is_dialled_directly_on_8448_unless_a_port_is_given() {
        assert_eq!(
            form("1.2.3.4"),
            NameForm::Literal { address: "1.2.3.4:8448".parse().unwrap(), authority: "1.2.3.4:8448".to_owned() }
        );
        assert_eq!(
            form("1.2.3.4:9000"),
            NameForm::Literal { address: "1.2.3.4:9000".parse().unwrap(), authority: "1.2.3.4:9000".to_owned() }
        );
        assert_eq!(
            form("[2001:db8::1]"),
            NameForm::Literal {
                address: "[2001:db8::1]:8448".parse().unwrap(),
                authority: "[2001:db8::1]:8448".to_owned()
            }
        );
        assert_eq!(
            form("[::1]:8449"),
            NameForm::Literal { address: "[::1]:8449".parse().unwrap(), authority: "[::1]:8449".to_owned() }
        );
    }

    #[test]
    fn an_explicit_port_skips_well_known_and_srv() {
        assert_eq!(form("Example.ORG:1234"), NameForm::HostWithPort { host: "example.org".to_owned(), port: 1234 });
        assert_eq!(form("example.org"), NameForm::Host("example.org".to_owned()));
    }

    #[test]
    fn a_well_known_answer_names_a_valid_server() {
        let parsed = parse_well_known(br#"{"m.server": "matrix.example.org:443"}"#);
        assert_eq!(parsed.as_deref().map(|name| name.as_str()), Some("matrix.example.org:443"));
        assert_eq!(
            parse_well_known(br#"{"m.server": "delegated.example", "other": 1}"#).map(|n| n.to_string()),
            Some("delegated.example".to_owned())
        );
        for bad in [&b"{}"[..], b"not json", br#"{"m.server": 42}"#, br#"{"m.server": "bad name!"}"#, b"[]"] {
            assert_eq!(parse_well_known(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn well_known_cache_period_follows_the_headers_within_bounds() {
        let mut headers = HeaderMap::new();
        assert_eq!(well_known_cache_period(&headers), Duration::from_secs(24 * 3600));
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=600"));
        assert_eq!(well_known_cache_period(&headers), Duration::from_secs(600));
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("max-age=31536000"));
        assert_eq!(well_known_cache_period(&headers), Duration::from_secs(48 * 3600));
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert_eq!(well_known_cache_period(&headers), Duration::ZERO);
    }

    #[test]
    fn the_well_known_cache_forgets_expired_answers() {
        let cache = WellKnownCache::default();
        let now = Instant::now();
        let delegated = OwnedServerName::try_from("delegated.example:8448").unwrap();
        cache.put("example.org", Some(delegated.clone()), Duration::from_secs(60), now);
        cache.put("down.example", None, Duration::from_secs(60), now);
        assert_eq!(cache.get("example.org", now + Duration::from_secs(59)), Some(Some(delegated)));
        assert_eq!(cache.get("down.example", now), Some(None), "a failure is remembered too");
        assert_eq!(cache.get("example.org", now + Duration::from_secs(61)), None);
        cache.put("nocache.example", None, Duration::ZERO, now);
        assert_eq!(cache.get("nocache.example", now), None);
    }
}
