//! Configuration: defaults, then a TOML file, then `HEARTH_*` environment variables.
//!
//! Names are part of Hearth's public interface (scripts and test suites set them), so every key
//! here is documented in `config.example.toml` with its default. Validation happens once, at
//! start-up, and every error names the offending key.

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Top-level keys that `HEARTH_*` variables may set. Anything else with the prefix (for
/// example a test harness's own variables) is not configuration and is ignored.
const ENV_KEYS: &[&str] = &[
    "server_name",
    "public_baseurl",
    "data_dir",
    "database",
    "registration",
    "rate_limits",
    "limits",
    "rooms",
    "network",
    "media",
    "federation",
    "metrics",
    "voip",
    "tips",
    "xmpp",
];

/// Nested list keys, read by hand from their comma-separated environment form (below).
const LIST_KEYS: &[&str] = &[
    "federation.listen",
    "federation.trusted_key_servers",
    "metrics.listen",
    "voip.turn_uris",
    "xmpp.listen",
    "xmpp.listen_tls",
];

/// Keys that hold text (or a path). Figment reads an environment value like TOML, so `10`
/// would be a number, `true` a boolean and `0123` the number 123; for these keys the value is
/// the text as written (a value in double quotes still has them removed, as figment does).
const TEXT_KEYS: &[&str] = &[
    "server_name",
    "public_baseurl",
    "data_dir",
    "database.url",
    "database.synchronous_commit",
    "registration.shared_secret",
    "rooms.default_version",
    "media.backend",
    "media.s3.bucket",
    "media.s3.endpoint",
    "media.s3.region",
    "media.s3.access_key_id",
    "media.s3.secret_access_key",
    "federation.tls_cert",
    "federation.tls_key",
    "federation.ca_file",
    "voip.turn_shared_secret",
    "tips.billing_url",
    "tips.billing_secret",
    "xmpp.tls_cert",
    "xmpp.tls_key",
    "xmpp.muc_domain",
];

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server_name: String,
    pub listen: Vec<String>,
    pub public_baseurl: Option<String>,
    pub data_dir: PathBuf,
    pub log: String,
    pub database: DatabaseConfig,
    pub registration: RegistrationConfig,
    pub rate_limits: RateLimitConfig,
    pub limits: LimitsConfig,
    pub rooms: RoomsConfig,
    pub network: NetworkConfig,
    pub media: MediaConfig,
    pub federation: FederationConfig,
    pub metrics: MetricsConfig,
    pub voip: VoipConfig,
    pub tips: TipsConfig,
    pub xmpp: XmppConfig,
}

/// Tips from members to creators (`creators::tips`): the operator's billing webhook that
/// approves or declines each charge. Without `billing_url` tips are off.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TipsConfig {
    /// Where each tip is `POST`ed for approval (see docs/API.md, "Billing webhook").
    pub billing_url: Option<String>,
    /// HMAC-SHA256 key signing each webhook body (`X-Hearth-Signature: sha256=<hex>`).
    pub billing_secret: Option<String>,
    /// How long one webhook call may take before the tip is reported as failed (and asked
    /// again later with the same idempotency key).
    pub timeout_ms: u64,
}

impl Default for TipsConfig {
    fn default() -> Self {
        TipsConfig { billing_url: None, billing_secret: None, timeout_ms: 10_000 }
    }
}

/// XMPP clients (`xmpp/`): accounts are also XMPP addresses (`@alice:example.org` is
/// `alice@example.org`), chatting with Matrix users in the same rooms.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct XmppConfig {
    /// Off by default: the XMPP listeners only open when this is `true`.
    pub enabled: bool,
    /// Client-to-server listeners (`host:port`) that start in plain text and require STARTTLS.
    pub listen: Vec<String>,
    /// Client-to-server listeners that speak TLS from the first byte (XEP-0368).
    pub listen_tls: Vec<String>,
    /// PEM certificate chain and private key; without them a self-signed certificate for the
    /// XMPP domain is generated into `data_dir` (and reused).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The conference (MUC) domain; unset: `conference.<server_name without port>`.
    pub muc_domain: Option<String>,
    /// The largest stanza a client may send, in bytes; a larger one ends the stream with
    /// `policy-violation`.
    pub max_stanza_size: usize,
    /// How long (seconds) a stream-managed session (XEP-0198) whose connection broke waits for
    /// its client to resume it; the messages meanwhile are kept for it. 0: no resumption.
    pub resume_timeout_secs: u64,
}

impl Default for XmppConfig {
    fn default() -> Self {
        XmppConfig {
            enabled: false,
            listen: vec!["127.0.0.1:5222".to_owned()],
            listen_tls: Vec::new(),
            tls_cert: None,
            tls_key: None,
            muc_domain: None,
            max_stanza_size: 256 * 1024,
            resume_timeout_secs: 300,
        }
    }
}

impl XmppConfig {
    /// The XMPP domain of a server name: the name without its port.
    pub fn domain_of(server_name: &str) -> &str {
        match server_name.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => server_name,
        }
    }
}

/// Prometheus metrics (`GET /metrics`, see `telemetry`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Addresses (`host:port`) of the metrics listener; empty (the default): no metrics are
    /// served. Never the public listener: metrics tell an outsider too much.
    pub listen: Vec<String>,
}

/// TURN servers handed to clients for calls (`GET /voip/turnServer`), with credentials made
/// from a secret shared with the TURN server (coturn's `use-auth-secret`), as Synapse does.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoipConfig {
    /// `turn:`/`turns:` URIs; empty (the default): Hearth offers no TURN server.
    pub turn_uris: Vec<String>,
    /// The TURN server's `static-auth-secret`; without it no credentials can be made.
    pub turn_shared_secret: Option<String>,
    /// How long the credentials handed out stay valid, in seconds.
    pub turn_user_lifetime_secs: u64,
}

impl Default for VoipConfig {
    fn default() -> Self {
        VoipConfig { turn_uris: Vec::new(), turn_shared_secret: None, turn_user_lifetime_secs: 86_400 }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// External PostgreSQL; when unset Hearth runs its own cluster under `data_dir`.
    pub url: Option<String>,
    pub max_connections: u32,
    /// PostgreSQL's `synchronous_commit` for Hearth's own connections: `"on"` waits for each
    /// commit's WAL flush; `"off"` acknowledges before it (see config.example.toml).
    pub synchronous_commit: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    pub enabled: bool,
    pub token_required: bool,
    pub shared_secret: Option<String>,
    pub allow_guests: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Login attempts per client address: sustained rate and burst.
    pub login_per_second: f64,
    pub login_burst: u32,
    /// Registration attempts (including username checks) per client address.
    pub registration_per_second: f64,
    pub registration_burst: u32,
    /// Media uploads and `create`s per user.
    pub media_upload_per_second: f64,
    pub media_upload_burst: u32,
    /// Events sent (messages, state, redactions) per user, unless an admin overrides it.
    pub message_per_second: f64,
    pub message_burst: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// The room version of new rooms when the client does not ask for one. A TOML file may
    /// write it as a number (`default_version = 11`), as room versions look like numbers.
    #[serde(deserialize_with = "text_or_integer")]
    pub default_version: String,
}

/// A string, or an integer taken as its decimal text.
fn text_or_integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrInteger {
        Text(String),
        Integer(u64),
    }
    Ok(match TextOrInteger::deserialize(deserializer)? {
        TextOrInteger::Text(text) => text,
        TextOrInteger::Integer(number) => number.to_string(),
    })
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig { default_version: "12".to_owned() }
    }
}

/// Outbound requests whose destination a user can choose (push gateways; later federation
/// and URL previews).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Whether such requests may reach private, loopback, link-local and other non-public
    /// addresses. Off by default: otherwise any user could make the server probe its own
    /// network.
    pub allow_private_destinations: bool,
}

/// The media repository: where uploads are kept and what may be uploaded and served.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Largest upload, in bytes; larger ones answer 413 `M_TOO_LARGE`.
    pub max_upload_size: u64,
    /// `"local"` (a directory under `data_dir`) or `"s3"` (an S3-compatible object store).
    pub backend: String,
    pub s3: S3Config,
    /// Whether `preview_url` fetches pages users name (off by default, as in Synapse).
    pub url_previews: bool,
    /// Whether media uploaded from now on may also be downloaded through the deprecated
    /// unauthenticated `/_matrix/media/v3/download` and `/thumbnail` endpoints. Off by default:
    /// the spec's freeze (v1.11) — media uploaded while off is served only to authenticated
    /// requests; media uploaded while on stays reachable both ways.
    pub legacy_unauthenticated: bool,
    /// How many `create`d media ids a user may hold without having uploaded to them.
    pub max_pending_uploads: u32,
}

/// An S3-compatible object store, used when `media.backend = "s3"`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    /// The store's URL (`http://127.0.0.1:9000`); unset means AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            max_upload_size: 50 * 1024 * 1024,
            backend: "local".to_owned(),
            s3: S3Config::default(),
            url_previews: false,
            legacy_unauthenticated: false,
            max_pending_uploads: 10,
        }
    }
}

/// Talking to other homeservers (server-server API).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// Whether Hearth serves the federation API and keys at all.
    pub enabled: bool,
    /// Addresses (`host:port`) of a listener of its own for the federation API; empty: the
    /// federation API is served on `listen`.
    pub listen: Vec<String>,
    /// PEM certificate chain and private key: when both are set, the federation listener
    /// speaks TLS (other servers only talk HTTPS to it).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for outbound federation, beside the system's.
    pub ca_file: Option<PathBuf>,
    /// Notary servers asked for a server's keys when the server itself does not give them.
    pub trusted_key_servers: Vec<String>,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            enabled: true,
            listen: Vec::new(),
            tls_cert: None,
            tls_key: None,
            ca_file: None,
            trusted_key_servers: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body accepted on the JSON APIs, in bytes.
    pub max_request_size: usize,
    /// How long a connection may take to send a request's headers, and may stay idle between
    /// requests, in seconds.
    pub header_timeout_secs: u64,
    /// The longest pause while a request body is sent, in seconds.
    pub body_timeout_secs: u64,
    /// Frames waiting to be written to one WebSocket; a client whose queue is full when a new
    /// sync delta is ready has fallen behind and is closed (it resumes from its last token).
    pub ws_send_queue: usize,
    /// Seconds between the pings a WebSocket is sent; a client silent for two intervals, or a
    /// frame its socket does not take within one, ends the connection.
    pub ws_ping_interval_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: "localhost".to_owned(),
            listen: vec!["127.0.0.1:8008".to_owned()],
            public_baseurl: None,
            data_dir: PathBuf::from("./hearth-data"),
            log: "info".to_owned(),
            database: DatabaseConfig::default(),
            registration: RegistrationConfig::default(),
            rate_limits: RateLimitConfig::default(),
            limits: LimitsConfig::default(),
            rooms: RoomsConfig::default(),
            network: NetworkConfig::default(),
            media: MediaConfig::default(),
            federation: FederationConfig::default(),
            metrics: MetricsConfig::default(),
            voip: VoipConfig::default(),
            tips: TipsConfig::default(),
            xmpp: XmppConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: None, max_connections: 20, synchronous_commit: "on".to_owned() }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            login_per_second: 0.5,
            login_burst: 10,
            registration_per_second: 0.17,
            registration_burst: 5,
            // Synapse's `rc_media_create` defaults.
            media_upload_per_second: 10.0,
            media_upload_burst: 50,
            // Synapse's `rc_message` defaults.
            message_per_second: 0.2,
            message_burst: 10,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_request_size: 4 * 1024 * 1024,
            header_timeout_secs: 30,
            body_timeout_secs: 30,
            ws_send_queue: 16,
            ws_ping_interval_secs: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Loads defaults, the optional TOML file and the environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // The filter sees the key before figment lowercases it (`SERVER_NAME`, `DATABASE.URL`),
        // so the comparison ignores case.
        let env = Env::prefixed("HEARTH_").split("__").filter(|key| {
            let top = key.as_str().split('.').next().unwrap_or_default();
            ENV_KEYS.iter().any(|known| top.eq_ignore_ascii_case(known))
                && !LIST_KEYS.iter().any(|list| key.as_str().eq_ignore_ascii_case(list))
        });
        let is_text = |key: &str| TEXT_KEYS.iter().any(|text| key.eq_ignore_ascii_case(text));
        figment = figment.merge(env.clone().filter(move |key| !is_text(key.as_str())));
        for (key, value) in env.iter().filter(|(key, _)| is_text(key.as_str())) {
            let text = match value.parse::<figment::value::Value>() {
                Ok(figment::value::Value::String(_, quoted)) if value.starts_with('"') => quoted,
                _ => value,
            };
            figment = figment.merge(Serialized::default(key.as_str(), text));
        }
        // Lists do not fit the `KEY=value` shape, so the two list-or-alias variables are
        // read by hand: `HEARTH_LISTEN` is comma-separated, `HEARTH_LOG` beats `RUST_LOG`.
        if let Ok(listen) = std::env::var("HEARTH_LISTEN") {
            figment = figment.merge(Serialized::default("listen", comma_separated(&listen)));
        }
        for key in LIST_KEYS {
            let variable = format!("HEARTH_{}", key.to_ascii_uppercase().replace('.', "__"));
            if let Ok(value) = std::env::var(variable) {
                figment = figment.merge(Serialized::default(key, comma_separated(&value)));
            }
        }
        if let Some(log) = std::env::var("HEARTH_LOG").ok().or_else(|| std::env::var("RUST_LOG").ok()) {
            figment = figment.merge(Serialized::default("log", log));
        }
        let config: Config = figment.extract().map_err(|error| {
            let errors: Vec<String> = error.into_iter().map(describe_figment_error).collect();
            ConfigError(errors.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: String| Err(ConfigError(format!("`{key}`: {why}")));
        if let Err(error) = ruma::ServerName::parse(&self.server_name) {
            return fail("server_name", format!("{:?} is not a valid server name ({error})", self.server_name));
        }
        if self.listen.is_empty() {
            return fail("listen", "at least one `host:port` listener is required".to_owned());
        }
        for address in &self.listen {
            if parse_host_port(address).is_none() {
                return fail("listen", format!("{address:?} is not `host:port`"));
            }
        }
        if let Some(url) = &self.public_baseurl
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return fail("public_baseurl", format!("{url:?} must start with http:// or https://"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return fail("data_dir", "must not be empty".to_owned());
        }
        if let Some(url) = &self.database.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return fail("database.url", "must be a postgres:// or postgresql:// URL".to_owned());
        }
        if self.database.max_connections == 0 {
            return fail("database.max_connections", "must be at least 1".to_owned());
        }
        if !["on", "off"].contains(&self.database.synchronous_commit.as_str()) {
            return fail(
                "database.synchronous_commit",
                format!("{:?} must be \"on\" or \"off\"", self.database.synchronous_commit),
            );
        }
        if let Some(secret) = &self.registration.shared_secret
            && secret.is_empty()
        {
            return fail("registration.shared_secret", "must not be empty when set".to_owned());
        }
        if self.registration.token_required && !self.registration.enabled {
            return fail(
                "registration.token_required",
                "requires `registration.enabled = true` (tokens open registration to their holders)".to_owned(),
            );
        }
        for (key, rate) in [
            ("rate_limits.login_per_second", self.rate_limits.login_per_second),
            ("rate_limits.registration_per_second", self.rate_limits.registration_per_second),
            ("rate_limits.media_upload_per_second", self.rate_limits.media_upload_per_second),
            ("rate_limits.message_per_second", self.rate_limits.message_per_second),
        ] {
            if !(rate.is_finite() && rate > 0.0) {
                return fail(key, "must be a positive number".to_owned());
            }
        }
        if self.rate_limits.login_burst == 0
            || self.rate_limits.registration_burst == 0
            || self.rate_limits.media_upload_burst == 0
            || self.rate_limits.message_burst == 0
        {
            return fail("rate_limits", "burst sizes must be at least 1".to_owned());
        }
        if self.limits.max_request_size < 1024 {
            return fail("limits.max_request_size", "must be at least 1024 bytes".to_owned());
        }
        if self.limits.header_timeout_secs == 0 {
            return fail("limits.header_timeout_secs", "must be at least 1".to_owned());
        }
        if self.limits.body_timeout_secs == 0 {
            return fail("limits.body_timeout_secs", "must be at least 1".to_owned());
        }
        if self.limits.ws_send_queue == 0 {
            return fail("limits.ws_send_queue", "must be at least 1".to_owned());
        }
        if self.limits.ws_ping_interval_secs == 0 {
            return fail("limits.ws_ping_interval_secs", "must be at least 1".to_owned());
        }
        let supported = ["6", "7", "8", "9", "10", "11", "12"];
        if !supported.contains(&self.rooms.default_version.as_str()) {
            return fail(
                "rooms.default_version",
                format!("{:?} is not one of {}", self.rooms.default_version, supported.join(", ")),
            );
        }
        self.validate_media()?;
        self.validate_federation()?;
        self.validate_tips()?;
        self.validate_xmpp()?;
        for address in &self.metrics.listen {
            if parse_host_port(address).is_none() {
                return Err(ConfigError(format!("`metrics.listen`: {address:?} is not `host:port`")));
            }
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return fail("log", format!("{:?} is not a valid log filter ({error})", self.log));
        }
        Ok(())
    }

    fn validate_media(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("`{key}`: {why}")));
        let media = &self.media;
        if media.max_upload_size == 0 {
            return fail("media.max_upload_size", "must be at least 1 byte");
        }
        match media.backend.as_str() {
            "local" => {}
            "s3" => {
                if media.s3.bucket.is_empty() {
                    return fail("media.s3.bucket", "is required when `media.backend = \"s3\"`");
                }
                if let Some(endpoint) = &media.s3.endpoint
                    && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
                {
                    return fail("media.s3.endpoint", "must start with http:// or https://");
                }
            }
            _ => return fail("media.backend", "must be \"local\" or \"s3\""),
        }
        Ok(())
    }

    fn validate_tips(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("`{key}`: {why}")));
        let tips = &self.tips;
        if let Some(url) = &tips.billing_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return fail("tips.billing_url", "must start with http:// or https://");
            }
            // An unsigned webhook would let anyone who can reach it forge approvals' requests.
            if tips.billing_secret.as_deref().is_none_or(str::is_empty) {
                return fail("tips.billing_secret", "is required (and not empty) when `tips.billing_url` is set");
            }
        }
        if tips.timeout_ms == 0 {
            return fail("tips.timeout_ms", "must be at least 1");
        }
        Ok(())
    }

    fn validate_xmpp(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: String| Err(ConfigError(format!("`{key}`: {why}")));
        let xmpp = &self.xmpp;
        for (key, addresses) in [("xmpp.listen", &xmpp.listen), ("xmpp.listen_tls", &xmpp.listen_tls)] {
            for address in addresses {
                if parse_host_port(address).is_none() {
                    return fail(key, format!("{address:?} is not `host:port`"));
                }
            }
        }
        if xmpp.tls_cert.is_some() != xmpp.tls_key.is_some() {
            return fail("xmpp.tls_cert", "`tls_cert` and `tls_key` are set together or not at all".to_owned());
        }
        for (key, path) in [("xmpp.tls_cert", &xmpp.tls_cert), ("xmpp.tls_key", &xmpp.tls_key)] {
            if let Some(path) = path
                && !path.is_file()
            {
                return fail(key, format!("{} is not a readable file", path.display()));
            }
        }
        if let Some(domain) = &xmpp.muc_domain
            && ruma::ServerName::parse(domain).is_err()
        {
            return fail("xmpp.muc_domain", format!("{domain:?} is not a domain name"));
        }
        if xmpp.max_stanza_size < 4096 {
            return fail("xmpp.max_stanza_size", "must be at least 4096 bytes".to_owned());
        }
        Ok(())
    }

    fn validate_federation(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: String| Err(ConfigError(format!("`{key}`: {why}")));
        let federation = &self.federation;
        for address in &federation.listen {
            if parse_host_port(address).is_none() {
                return fail("federation.listen", format!("{address:?} is not `host:port`"));
            }
        }
        if federation.tls_cert.is_some() != federation.tls_key.is_some() {
            return fail("federation.tls_cert", "`tls_cert` and `tls_key` are set together or not at all".to_owned());
        }
        for (key, path) in [
            ("federation.tls_cert", &federation.tls_cert),
            ("federation.tls_key", &federation.tls_key),
            ("federation.ca_file", &federation.ca_file),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return fail(key, format!("{} is not a readable file", path.display()));
            }
        }
        for server in &federation.trusted_key_servers {
            if ruma::ServerName::parse(server).is_err() {
                return fail("federation.trusted_key_servers", format!("{server:?} is not a server name"));
            }
        }
        Ok(())
    }

    /// The base URL clients should use: configured, or derived from the server name and the
    /// first listener's port so that the embedded default (`http://localhost:8008/`) works.
    pub fn public_baseurl(&self) -> String {
        match &self.public_baseurl {
            Some(url) if url.ends_with('/') => url.clone(),
            Some(url) => format!("{url}/"),
            None => {
                let port = self.listen.first().and_then(|l| parse_host_port(l)).map_or(8008, |(_, p)| p);
                format!("http://{}:{port}/", self.server_name)
            }
        }
    }

    /// The effective configuration as TOML, with secrets replaced by a mask.
    pub fn to_masked_toml(&self) -> String {
        let mut masked = self.clone();
        if masked.registration.shared_secret.is_some() {
            masked.registration.shared_secret = Some("********".to_owned());
        }
        masked.database.url = masked.database.url.as_deref().map(mask_url_password);
        if masked.tips.billing_secret.is_some() {
            masked.tips.billing_secret = Some("********".to_owned());
        }
        if masked.media.s3.secret_access_key.is_some() {
            masked.media.s3.secret_access_key = Some("********".to_owned());
        }
        if masked.voip.turn_shared_secret.is_some() {
            masked.voip.turn_shared_secret = Some("********".to_owned());
        }
        toml::to_string_pretty(&masked).unwrap_or_else(|error| format!("# cannot render: {error}"))
    }
}

/// A list key's environment form: comma-separated, blanks ignored.
fn comma_separated(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

/// Splits `host:port` (IPv6 hosts in brackets).
pub fn parse_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), port))
}

fn mask_url_password(url: &str) -> String {
    // postgres://user:password@host/db → postgres://user:********@host/db
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((credentials, host)) = rest.split_once('@') else { return url.to_owned() };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:********@{host}"),
        None => url.to_owned(),
    }
}

fn describe_figment_error(error: figment::Error) -> String {
    let key = error.path.join(".");
    // Name the file too: `(from TOML file hearth.toml)` tells the operator where to look.
    let source = error.metadata.as_ref().map(|m| match &m.source {
        Some(source @ figment::Source::File(_)) => format!("{} {source}", m.name),
        _ => m.name.to_string(),
    });
    let mut text = if key.is_empty() { error.kind.to_string() } else { format!("`{key}`: {}", error.kind) };
    if let Some(source) = source {
        text.push_str(&format!(" (from {source})"));
    }
    text
}
